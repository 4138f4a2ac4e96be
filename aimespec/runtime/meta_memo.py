"""Component calls on the meta device, computed once per distinct call in a pass.

A meta tensor has a shape, strides and a dtype and no values, so what a component returns
on the meta device, and what it leaves behind in its own attributes (`self.last = ...`),
can depend only on the metadata of its arguments and of the state of its module tree.
A world model's per-step components are called T times with the same metadata: the
recorder runs the first such call, and answers the others from a `MetaMemo` with fresh
tensors of the same metadata, re-applying the state the call wrote. The 16-step default
config pays for about two steps instead of sixteen.

The key of a call is the metadata of its arguments *and* of every attribute of the
component's module tree (a growing memory changes the key at every step and is never
answered from the memo). Anything the memo cannot describe exactly (a tensor subclass,
an object of unknown type in the arguments, the result or a written attribute) makes the
call run as usual.
"""

import collections
import dataclasses
import enum
import functools
import types
import weakref
from collections.abc import Hashable
from typing import Any

import torch

MAX_DEPTH = 4  # containers nested deeper than this are not described: the call simply runs
_SCALARS = (int, float, bool, str, bytes, complex, type(None), torch.dtype, torch.device, torch.Size)
_SKIP_ATTRS = frozenset({"_parameters", "_buffers", "_modules"})  # described separately, by metadata
_PLAIN = frozenset({int, float, bool, str, type(None)})  # described by value
_CONTAINERS = frozenset({dict, list, tuple, set, frozenset, collections.OrderedDict})  # an empty one: by type


class Opaque(Exception):
    """A value the memo cannot describe exactly: the call runs as usual."""


def _tensor_sig(t: torch.Tensor) -> tuple:
    """(torch.Tensor, shape, strides, dtype, requires_grad, is a Parameter): torch.Tensor tags it.

    The storage offset is left out: `observations[:, t]` differs from `observations[:, 0]`
    only there, and no shape depends on it.
    """
    if type(t) not in (torch.Tensor, torch.nn.Parameter) or t.device.type != "meta":
        raise Opaque
    return (torch.Tensor, tuple(t.shape), t.stride(), t.dtype, t.requires_grad, type(t) is torch.nn.Parameter)


def signature(value: Any, depth: int = 0) -> Hashable:
    """A hashable description of an argument or result: its structure and its tensors' metadata."""
    if isinstance(value, torch.Tensor):
        return _tensor_sig(value)
    if isinstance(value, _SCALARS):
        return (type(value), value)
    if depth >= MAX_DEPTH:
        raise Opaque
    kind = type(value)
    if kind in (tuple, list) or (issubclass(kind, tuple) and hasattr(kind, "_fields")):  # NamedTuples too
        return (kind, tuple(signature(v, depth + 1) for v in value))
    if kind is dict:
        return (dict, tuple((k, signature(v, depth + 1)) for k, v in value.items()))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (kind, tuple((f.name, signature(getattr(value, f.name), depth + 1))
                            for f in dataclasses.fields(value)))
    raise Opaque


def state_signature(obj: Any, refs: list[Any]) -> Hashable:
    """The metadata of every attribute of `obj` and, for a module, of its whole tree.

    Tensors, scalars and containers of them are described by value and metadata; other
    objects (configs, functions, helper objects) by identity, and collected in `refs` so
    that the memo keeps them alive (an identity is never reused while the key exists).
    """
    modules = list(obj.modules()) if isinstance(obj, torch.nn.Module) else [obj]
    out = []
    for module in modules:
        attrs = getattr(module, "__dict__", {})
        items = []
        for name, value in attrs.items():
            kind = type(value)
            if kind in _PLAIN:  # the common cases first: a module's flags and its (empty) hook dicts
                items.append((name, (kind, value)))
            elif kind in _CONTAINERS and not value:
                items.append((name, (kind,)))
            elif name not in _SKIP_ATTRS:
                items.append((name, _state_value(value, refs)))
        if isinstance(module, torch.nn.Module):
            items.append(("_parameters", tuple((n, None if p is None else _tensor_sig(p))
                                               for n, p in module._parameters.items())))
            items.append(("_buffers", tuple((n, None if b is None else _tensor_sig(b))
                                            for n, b in module._buffers.items())))
            items.append(("_modules", tuple((n, id(m)) for n, m in module._modules.items())))
        out.append((id(module), tuple(items)))
    return tuple(out)


_BY_IDENTITY = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType, type,
                functools.partial, enum.Enum, weakref.ref, torch.nn.Module)


def _state_value(value: Any, refs: list[Any], depth: int = 0) -> Hashable:
    """One attribute: tensors by metadata, scalars by value, containers and plain objects by content.

    Code, classes, enums, frozen dataclasses (a config) and modules (each registered one is
    described on its own) by identity: a call that replaces one changes the identity.
    """
    if isinstance(value, torch.Tensor):
        return _tensor_sig(value)  # a real tensor or a subclass held as state: Opaque
    if isinstance(value, _SCALARS):
        return (type(value), value)
    if isinstance(value, _BY_IDENTITY) or (dataclasses.is_dataclass(value)
                                          and type(value).__dataclass_params__.frozen):  # type: ignore[attr-defined]
        refs.append(value)
        return (object, id(value))
    if depth >= MAX_DEPTH:
        raise Opaque
    kind = type(value)
    if isinstance(value, (tuple, list)):
        return (kind, tuple(_state_value(v, refs, depth + 1) for v in value))
    if isinstance(value, dict):
        return (kind, tuple((k, _state_value(v, refs, depth + 1)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        if not all(isinstance(v, _SCALARS) for v in value):
            raise Opaque
        return (kind, frozenset(value))
    if hasattr(value, "__dict__"):  # a plain helper object: its own attributes, by content
        refs.append(value)
        return (kind, id(value), tuple((n, _state_value(v, refs, depth + 1)) for n, v in vars(value).items()))
    raise Opaque  # __slots__, C objects (a torch.Generator): not described, the call simply runs


def rebuild(sig: Hashable) -> Any:
    """A fresh value with the structure and metadata `signature` described."""
    kind = sig[0]  # type: ignore[index]
    if kind is torch.Tensor:
        _, shape, stride, dtype, grad, is_param = sig  # type: ignore[misc]
        t = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        if is_param:
            return torch.nn.Parameter(t, requires_grad=grad)
        return t.requires_grad_(grad) if grad else t
    cls, body = sig  # type: ignore[misc]
    if cls in _SCALARS or (isinstance(cls, type) and issubclass(cls, _SCALARS)):
        return body
    if cls is dict:
        return {k: rebuild(v) for k, v in body}
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        return cls(**{name: rebuild(v) for name, v in body})
    items = [rebuild(v) for v in body]
    if cls in (tuple, list):
        return cls(items)
    return cls(*items)  # a NamedTuple


@dataclasses.dataclass
class Entry:
    """One computed call: its result, the attributes it wrote, the records made inside it."""

    result: Hashable
    writes: list[tuple[Any, str, Hashable]]
    inner: list[Any]
    refs: list[Any]  # the objects the key names by identity, kept alive


class MetaMemo:
    """The calls of one pass on the meta device, keyed by component, method and metadata."""

    def __init__(self) -> None:
        self.entries: dict[Hashable, Entry] = {}
        self.hits = 0

    def key(self, obj: Any, method: str, args: tuple, kwargs: dict) -> tuple[Hashable, list[Any]] | None:
        """The call's key and the objects it names by identity; None when the memo cannot answer it."""
        refs: list[Any] = [obj]
        try:
            sig = signature((args, kwargs))
            if not _any_meta(sig):
                return None
            return (id(obj), method, sig, state_signature(obj, refs)), refs
        except Opaque:
            return None

    def get(self, key: Hashable) -> Entry | None:
        return self.entries.get(key)

    def replay(self, entry: Entry) -> Any:
        """The call's result, fresh, with the attributes it wrote written again."""
        self.hits += 1
        for target, name, value in entry.writes:
            object.__setattr__(target, name, rebuild(value))
        return rebuild(entry.result)

    def store(self, key: Hashable, refs: list[Any], obj: Any, result: Any, before: dict[int, dict[str, Any]],
              inner: list[Any]) -> None:
        """Remember a call that ran: what it returned and which attributes it wrote."""
        try:
            result_sig = signature(result)
            writes = [(target, name, signature(value)) for target, name, value in _written(obj, before)]
        except Opaque:
            return
        self.entries[key] = Entry(result_sig, writes, inner, refs)


def attributes(obj: Any) -> dict[int, dict[str, Any]]:
    """The attributes of `obj`'s module tree by identity (to see, after a call, which were written)."""
    modules = list(obj.modules()) if isinstance(obj, torch.nn.Module) else [obj]
    return {id(m): dict(getattr(m, "__dict__", {})) for m in modules}


def _written(obj: Any, before: dict[int, dict[str, Any]]) -> list[tuple[Any, str, Any]]:
    modules = list(obj.modules()) if isinstance(obj, torch.nn.Module) else [obj]
    out = []
    for module in modules:
        old = before.get(id(module))
        if old is None:
            raise Opaque  # a submodule created by the call
        for name, value in getattr(module, "__dict__", {}).items():
            if name in _SKIP_ATTRS:
                continue
            if name not in old or old[name] is not value:
                out.append((module, name, value))
        if set(old) - set(getattr(module, "__dict__", {})):
            raise Opaque  # an attribute deleted by the call
    return out


def _any_meta(sig: Hashable) -> bool:
    if isinstance(sig, tuple):
        if sig and sig[0] is torch.Tensor:
            return True
        return any(_any_meta(s) for s in sig)
    return False
