"""Dims: reading jaxtyping annotations into a tree of tensor specs, evaluating dims, writing shapes.

The one place for each: `parse` (annotations -> `Leaf`/`TupleNode`/`DictNode` trees),
`evaluate` (a contract dim such as `hidden_dim+context_dim` at the symbols' values),
`axis_value` (an axis as a message writes it: `D=36`, `#B`, `H/8`) and `format_shape`
(`[B, T, 64]`, `[8, ?, 64]`).

A contract's signature is written with jaxtyping (`Float[Tensor, "B hidden_dim+context_dim"]`),
`NamedTuple` / `TypedDict` records for tuple and dict returns, and `Annotated[..., "name"]`
to name a bare tensor return. This module turns those annotations into `Leaf`, `TupleNode`
and `DictNode` trees that the validator walks entry by entry.
"""

import ast
import functools
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union

from aimespec.core.errors import InputError

if TYPE_CHECKING:
    import torch

_FLOAT = frozenset({"float16", "bfloat16", "float32", "float64"})


@dataclass(frozen=True)
class Leaf:
    """One tensor: its path (`h`, `pi`, `hx.h0`), dims as written, and its dtype family."""

    path: str
    dims: tuple[str, ...]
    dtype: str  # "float" | "int" | "bool" | "any"
    dtypes: frozenset[str]
    optional: bool = False

    @property
    def symbolic(self) -> str:
        return format_shape(self.dims)

    def accepts_dtype(self, dtype: "torch.dtype") -> bool:
        return self.dtype == "any" or str(dtype).removeprefix("torch.") in self.dtypes


@dataclass(frozen=True)
class TupleNode:
    path: str
    items: tuple["Node", ...]
    optional: bool = False


@dataclass(frozen=True)
class DictNode:
    path: str
    entries: tuple[tuple[str, "Node", bool], ...]  # (key, node, required)
    optional: bool = False


@dataclass(frozen=True)
class Other:
    """A non-tensor value (an int, a bool): checked with beartype's `is_bearable`."""

    path: str
    hint: Any
    optional: bool = False


Node = Leaf | TupleNode | DictNode | Other


def _dtype_family(array_type: Any) -> tuple[str, frozenset[str]]:
    dtypes = frozenset(getattr(array_type, "dtypes", ()) or ())
    if not dtypes or len(dtypes) > 40:  # Shaped[...]: any dtype
        return "any", dtypes
    if dtypes & _FLOAT:
        return "float", dtypes
    if "bool" in dtypes and len(dtypes) == 1:
        return "bool", dtypes
    return "int", dtypes


def is_array_type(hint: Any) -> bool:
    return hasattr(hint, "dim_str") and hasattr(hint, "dtypes")


def parse(hint: Any, path: str, optional: bool = False, *, nested_paths: bool = False) -> Node:
    """Turn one annotation into a node; `path` names it in messages.

    Fields of a returned record are named by themselves (`tokens`, `h_n`); with
    `nested_paths` (arguments) they keep their parent's name (`hx.h0`).
    """
    origin = typing.get_origin(hint)
    if origin in (typing.NotRequired, typing.Required):
        return parse(typing.get_args(hint)[0], path, optional, nested_paths=nested_paths)
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        names = [m for m in meta if isinstance(m, str)]
        return parse(base, names[0] if names else path, optional, nested_paths=nested_paths)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return parse(args[0], path, optional=True, nested_paths=nested_paths)
        return Other(path, hint, optional)
    if is_array_type(hint):
        dims = tuple(hint.dim_str.split()) if hint.dim_str else ()
        family, dtypes = _dtype_family(hint)
        return Leaf(path, dims, family, dtypes, optional)
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        hints = typing.get_type_hints(hint, include_extras=True)
        items = tuple(
            parse(hints[f], f"{path}.{f}" if nested_paths else f, nested_paths=nested_paths)
            for f in typing.cast(Any, hint)._fields  # a NamedTuple: its fields in order
        )
        return TupleNode(path, items, optional)
    if origin is tuple:
        args = typing.get_args(hint)
        items = tuple(parse(a, f"{path}[{i}]", nested_paths=nested_paths) for i, a in enumerate(args))
        return TupleNode(path, items, optional)
    if typing.is_typeddict(hint):
        hints = typing.get_type_hints(hint, include_extras=True)
        required = getattr(hint, "__required_keys__", frozenset(hints))
        entries = tuple((k, parse(h, k, optional=k not in required), k in required) for k, h in hints.items())
        return DictNode(path, entries, optional)
    return Other(path, hint, optional)


def leaves(node: Node) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, TupleNode):
        return [leaf for item in node.items for leaf in leaves(item)]
    if isinstance(node, DictNode):
        return [leaf for _, item, _ in node.entries for leaf in leaves(item)]
    return []


# --- dims -----------------------------------------------------------------------------------
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)
_AXIS_OPS = (*_OPS, ast.Div, ast.UnaryOp, ast.USub, ast.UAdd)  # what a message's axis may also write
_NODES = (ast.Expression, ast.BinOp, ast.Name, ast.Load, ast.Constant)


class DimError(InputError):
    """A dim expression aimespec cannot evaluate (only + - * // of names and integers): a ValueError too."""


@functools.cache
def dim_names(dim: str) -> tuple[str, ...]:
    """The symbol names a dim mentions (`hidden_dim+context_dim` -> both)."""
    if dim.isdigit():
        return ()
    try:
        tree = ast.parse(dim, mode="eval")
    except SyntaxError as exc:
        raise DimError(f"unsupported dim expression {dim!r}") from exc
    return tuple(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)))


@functools.cache
def _compiled(dim: str, axis: bool = False) -> Any:
    try:
        tree = ast.parse(dim, mode="eval")
    except SyntaxError as exc:
        raise DimError(f"unsupported dim expression {dim!r}") from exc
    allowed = (*_NODES, *(_AXIS_OPS if axis else _OPS))
    for node in ast.walk(tree):
        if not isinstance(node, allowed) or (isinstance(node, ast.Constant) and type(node.value) is not int):
            raise DimError(f"unsupported dim expression {dim!r}")
    return compile(tree, f"<dim {dim}>", "eval")


def _value(dim: str, values: dict[str, int], axis: bool) -> int | None:
    if dim.isdigit():
        return int(dim)
    if dim in values:
        return values[dim]
    code = _compiled(dim, axis)  # unsupported syntax raises, bound or not
    names = dim_names(dim)
    if any(n not in values for n in names):
        return None
    value = eval(code, {"__builtins__": {}}, {n: values[n] for n in names})
    if isinstance(value, float):  # `/` in a message's axis: a size only when it divides evenly
        return int(value) if value.is_integer() else None
    return int(value)


def evaluate(dim: str, values: dict[str, int]) -> int | None:
    """A contract dim's value under `values`, or None when a name in it is not bound yet.

    Raises `DimError` (a ValueError) for anything but + - * // of names and integers.
    """
    return _value(dim, values, axis=False)


def axis_value(axis: str, values: dict[str, int]) -> int | None:
    """The size an axis in a message stands for (`768`, `D=36`, `#B`, `hidden_dim+context_dim`, `H/8`).

    None when it names an unknown symbol or is no integer expression: a message is read, never trusted.
    """
    axis = axis.lstrip("#_?")
    if "=" in axis:
        axis = axis.split("=", 1)[1]
    try:
        return _value(axis.strip(), values, axis=True)
    except (DimError, ZeroDivisionError, SyntaxError):
        return None


def is_plain(dim: str) -> bool:
    return dim.isidentifier()


def substitute(expr: str, values: dict[str, int]) -> str:
    """The expression with each symbol written as its value, spacing kept (`D + A` -> `36 + 6`)."""
    return _NAME.sub(lambda m: str(values[m.group(0)]) if m.group(0) in values else m.group(0), expr)


def format_shape(shape: Iterable[int | str | None]) -> str:
    """A shape as messages write it: `[B, T, 64]`, `[8, ?, 64]` (None: not known)."""
    return "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
