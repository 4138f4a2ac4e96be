"""Running a call on the meta device: factory calls land there too, and torch._dynamo stays unimported.

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


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """`with torch.device("meta")`, without importing torch._dynamo on the first meta kernel."""
    with torch.device("meta"), _without_dynamo_import():
        yield
