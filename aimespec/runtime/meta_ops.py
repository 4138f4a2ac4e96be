"""Each distinct torch operation of a meta pass computed once: `OpMemo`.

On the meta device an operation's result is a function of its inputs' metadata alone (shape,
strides, dtype) and of its other arguments, yet torch computes many of them in Python
(`torch._refs`, `torch._decomp`: a group norm is some forty elementwise references, a clamp
0.75 ms). A world model repeats the same operations at every step of its unroll, so the
memo, a torch-function layer under `meta_device(ops=...)`, answers a repeat with a fresh
`torch.empty_strided` of the metadata the first call produced, without running it.

Only what is exactly reproducible is answered from the memo, and everything else simply runs:
- grad mode off (a result that requires grad carries an autograd graph the memo cannot rebuild);
- the key holds the default dtype (`torch.set_default_dtype` changes what a factory call makes);
- every tensor argument a plain meta tensor (or Parameter), every other argument a scalar, a
  dtype or device, or a short tuple or list of those (a Generator, a callable, a module: it runs);
- a result that is a fresh plain meta tensor, or a short tuple or list of them, none of them a
  view, an input, or sharing an input's storage (in-place operations, views and aliases run
  every time); no `out=`.
An operation whose first run took less than `CHEAP` (a C++ meta kernel: `meta_kernels`) is not
looked up again: its key would cost about what running it does.
A meta result carries no data, so a fresh tensor of the same metadata is indistinguishable from
the one the operation would have made (tests/test_meta_ops.py compares both on the reference
model and on random operations).
"""

import time
from collections.abc import Callable, Hashable
from typing import Any

import torch

MAX_DEPTH = 3  # nesting of tuples and lists described (an LSTM returns (out, (h, c)))
CHEAP = 25e-6  # seconds: an operation whose first run took less runs every time after (a key costs about that)
_SCALARS = (int, float, bool, complex, str, type(None), torch.dtype, torch.device, torch.memory_format,
            torch.layout)
_TENSORS = (torch.Tensor, torch.nn.Parameter)


class _Opaque(Exception):
    """An argument or result the memo does not describe: the operation runs."""


def _arg(value: Any, storages: list[int], depth: int = 0) -> Hashable:
    kind = type(value)
    if kind in _TENSORS:
        if value.device.type != "meta":
            raise _Opaque
        storages.append(value.untyped_storage()._cdata)
        return (value.shape, value.stride(), value.dtype, value.requires_grad)
    if isinstance(value, _SCALARS):
        return (kind, value)
    if (kind is tuple or kind is list or kind is torch.Size) and depth < MAX_DEPTH:
        return (kind, tuple(_arg(v, storages, depth + 1) for v in value))
    raise _Opaque


def _result(value: Any, storages: set[int], depth: int = 0) -> Hashable:
    kind = type(value)
    if kind is torch.Tensor:
        if (value.device.type != "meta" or value.requires_grad or value._is_view()
                or value.untyped_storage()._cdata in storages):
            raise _Opaque
        return (value.shape, value.stride(), value.dtype)
    if (kind is tuple or kind is list) and depth < MAX_DEPTH:
        return (kind, tuple(_result(v, storages, depth + 1) for v in value))
    raise _Opaque


def _rebuild(described: Any) -> Any:
    head = described[0]
    if isinstance(head, torch.Size):
        shape, stride, dtype = described
        return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    return head(_rebuild(v) for v in described[1])


class OpMemo:
    """The results of one check's meta passes, keyed by operation and metadata."""

    def __init__(self, cheap: float = CHEAP) -> None:
        self.cheap_below = cheap  # seconds
        self.results: dict[Hashable, Any] = {}
        self.hits = 0
        self.runs = 0
        self.cheap: set[Any] = set()  # operations cheaper to run than to look up (a C++ meta kernel)

    def call(self, func: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        """`func(*args, **kwargs)`, from the memo when the same operation on the same metadata ran before."""
        if torch.is_grad_enabled() or "out" in kwargs or func in self.cheap:
            return func(*args, **kwargs)
        storages: list[int] = []
        try:  # the default dtype decides what factory calls and Python scalars make
            key = (func, torch.get_default_dtype(), _arg(args, storages),
                   _arg(tuple(kwargs.items()), storages) if kwargs else None)
            known = self.results.get(key)
        except Exception:  # _Opaque, an unhashable scalar, a tensor without storage (a functorch wrapper)
            return func(*args, **kwargs)
        if known is not None:
            self.hits += 1
            return _rebuild(known)
        started = time.perf_counter()
        out = func(*args, **kwargs)
        self.runs += 1
        if time.perf_counter() - started < self.cheap_below:
            self.cheap.add(func)
            return out
        try:
            self.results[key] = _result(out, set(storages))
        except Exception:  # _Opaque, or a result whose metadata cannot be read: it runs every time
            pass
        return out


__all__ = ["OpMemo"]
