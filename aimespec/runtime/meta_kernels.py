"""torch's C++ meta kernels where they exist, in aimespec's own worker process: `native_meta_kernels()`.

At import, torch registers a Python meta kernel (`torch._meta_registrations.activate_meta`, from
its decomposition tables) for some 1,300 operations, and that registration hides the C++ meta
kernel that about half of them also have: the shape functions of the structured kernels, which
the CPU kernels run too. An `addmm` on the meta device then costs some 60 µs of Python instead of
2 µs of C++. The Python kernels are there for symbolic shapes (torch.compile's fake tensors); a
check's meta passes have concrete ones.

In the isolating worker (`aimespec.runtime.worker`: a process of aimespec's own, which ends with
the check) the first meta pass drops those registrations and makes them again only for the
operations without a C++ meta kernel, so that every operation keeps a meta kernel and the ones
with two use torch's native one (the same shapes; where strides differ, the C++ ones are the CPU
kernels'). Outside a worker (`check(..., isolate=False)`, a test, the user's own process) torch is
left exactly as it is. If torch's internals have changed, nothing is dropped.

One difference is visible to a model's own code, in the worker only: fake tensors with symbolic
sizes driven by hand (a `FakeTensorMode` with a `ShapeEnv` inside a forward) get concrete sizes
from an operation's C++ kernel where its Python one kept them symbolic. torch.compile and
torch.export are not affected: they go through torch's Python dispatcher, whose table is left alone.
"""

from typing import Any

import torch

from aimespec.runtime import worker

_state: dict[str, Any] = {}  # "library": the registrations made again (kept alive), once switched


def _registered() -> tuple[Any, list[tuple[Any, Any]]] | None:
    """torch's library of Python meta kernels and each (operation, kernel) in it, as activate_meta chose them."""
    try:
        from torch import _meta_registrations as registrations
        from torch._decomp import global_decomposition_table

        library = registrations._meta_lib_dont_use_me_use_register_meta
        names = set(library._op_impls)
        if library.m is None or not names:
            return None
        chosen: dict[Any, Any] = {}
        for kind in ("meta", "post_autograd", "pre_autograd"):  # activate_meta's order of precedence
            for op, fn in global_decomposition_table[kind].items():
                chosen.setdefault(op, fn)
        pairs = [(op, fn) for op, fn in chosen.items()
                 if isinstance(op, torch._ops.OpOverload) and f"aten/{_name(op)}/Meta" in names]
    except Exception:  # a torch whose internals differ: leave it as it is
        return None
    return (library, pairs) if len(pairs) == len(names) else None  # every registration accounted for


def _name(op: Any) -> str:
    overload = op._schema.overload_name
    return op._schema.name.split("::")[-1] + (f".{overload}" if overload else "")


def native_meta_kernels() -> bool:
    """In the worker, once: the C++ meta kernel wherever torch has one. True when they are in use."""
    if "library" in _state:
        return True
    if not worker.in_worker() or "tried" in _state:
        return False
    _state["tried"] = True
    found = _registered()
    if found is None:
        return False
    library, pairs = found
    library.m.reset()  # every Python meta kernel of that library gone: the C++ ones show through
    library.m = None  # as torch's own Library._destroy leaves it: a later registration there raises
    again = torch.library.Library("aten", "IMPL", "Meta")
    for op, fn in pairs:
        if not torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "Meta"):
            try:
                again.impl(op, fn)
            except Exception:  # pragma: no cover - registered before, so it registers again
                pass
    _state["library"] = again
    return True


__all__ = ["native_meta_kernels"]
