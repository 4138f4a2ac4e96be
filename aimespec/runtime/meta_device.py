"""Running a call on the meta device: factory calls land there too, repeated operations are computed
once (`meta_ops.OpMemo`), and torch._dynamo stays unimported.

Most of torch's meta kernels are Python functions wrapped by `torch._disable_dynamo`, whose
first call imports all of `torch._dynamo` (sympy and the compiler stack: about a second,
as long as `import torch` itself) only to mark the function as one torch.compile must not
trace. Inside `meta_device()` nothing is being compiled unless the code under check does
it, and then it has imported torch._dynamo itself: while torch._dynamo is not imported, the
mark is resolved in advance to the function itself, and every mark set here is removed on
the way out, so that outside the block torch behaves exactly as before.
"""

import contextlib
import gc
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import _compile as torch_compile

from aimespec.runtime.meta_kernels import native_meta_kernels
from aimespec.runtime.meta_ops import OpMemo

try:  # torch.device("meta") as a context is this mode; ours adds the operation memo to it
    from torch.utils._device import DeviceContext, _device_constructors
except ImportError:  # pragma: no cover - a torch without it: plain torch.device("meta"), no memo
    DeviceContext = None  # type: ignore[assignment,misc]

_MARK = "__dynamo_disable"  # the attribute torch._compile._disable_dynamo caches its wrapper in
_wrapped: list[Any] | None = None  # the functions torch wrapped with _disable_dynamo, found once


def _disable_dynamo_targets() -> list[Any]:
    """Every function torch wrapped with `_disable_dynamo` so far (an empty list if torch changed)."""
    global _wrapped
    if _wrapped is None:
        _wrapped = []
        try:
            code = torch_compile._disable_dynamo(lambda: None).__code__  # the wrapper's code object
            slot = code.co_freevars.index("fn")
        except (AttributeError, ValueError, TypeError):
            return _wrapped
        for obj in gc.get_objects():
            if type(obj) is types.FunctionType and obj.__code__ is code and obj.__closure__:
                _wrapped.append(obj.__closure__[slot].cell_contents)
    return _wrapped


@contextlib.contextmanager
def _without_dynamo_import() -> Iterator[None]:
    if "torch._dynamo" in sys.modules:  # already paid for: nothing to save
        yield
        return
    marked = []
    for fn in _disable_dynamo_targets():
        if getattr(fn, _MARK, None) is None:
            try:
                setattr(fn, _MARK, fn)
            except (AttributeError, TypeError):
                continue
            marked.append(fn)
    try:
        yield
    finally:
        for fn in marked:
            if getattr(fn, _MARK, None) is fn:
                delattr(fn, _MARK)


if DeviceContext is not None:
    class _MetaContext(DeviceContext):  # type: ignore[misc,valid-type]
        """`torch.device("meta")` as a context (factory calls without `device=` land on meta), whose
        operations go through an `OpMemo`."""

        def __init__(self, ops: OpMemo) -> None:
            super().__init__("meta")
            self.ops = ops
            self.constructors = _device_constructors()

        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if func in self.constructors:
                if kwargs.get("device") is None:
                    kwargs["device"] = self.device
            elif getattr(func, "__name__", None) in NEVER_FRESH:  # two thirds of all calls: not worth a key
                return func(*args, **kwargs)
            return self.ops.call(func, args, kwargs)


# Tensor attributes and methods that never make a fresh tensor (a property such as `.shape` is a
# `__get__`; the others return sizes, flags or views): they run at once, without a memo key.
NEVER_FRESH = frozenset({"__get__", "size", "stride", "dim", "numel", "is_contiguous", "_set_grad_enabled",
                         "view", "view_as", "permute", "transpose", "unsqueeze", "squeeze", "expand", "expand_as",
                         "__getitem__", "__setitem__", "__len__", "__iter__", "unbind", "split", "chunk"})


def _device(ops: OpMemo | None) -> Any:
    if ops is None or DeviceContext is None:
        return torch.device("meta")
    return _MetaContext(ops)


@contextlib.contextmanager
def meta_device(ops: OpMemo | None = None) -> Iterator[None]:
    """`with torch.device("meta")`, without importing torch._dynamo on the first meta kernel.

    With `ops`, each distinct operation (under `torch.no_grad()`) is computed once and answered
    from the memo after (`meta_ops`). In aimespec's worker process, operations with a C++ meta
    kernel run it (`meta_kernels`).
    """
    native_meta_kernels()
    with _device(ops), _without_dynamo_import():
        yield
