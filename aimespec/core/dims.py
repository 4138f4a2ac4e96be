"""Reading jaxtyping annotations into a tree of tensor specs, and evaluating their dims.

A contract's signature is written with jaxtyping (`Float[Tensor, "B hidden_dim+context_dim"]`),
`NamedTuple` / `TypedDict` records for tuple and dict returns, and `Annotated[..., "name"]`
to name a bare tensor return. This module turns those annotations into `Leaf`, `TupleNode`
and `DictNode` trees that the validator walks entry by entry.
"""

import ast
import functools
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Union

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
        return "[" + ", ".join(self.dims) + "]"

    def accepts_dtype(self, dtype: torch.dtype) -> bool:
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
            parse(hints[f], f"{path}.{f}" if nested_paths else f, nested_paths=nested_paths) for f in hint._fields
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


@functools.cache
def dim_names(dim: str) -> tuple[str, ...]:
    """The symbol names a dim mentions (`hidden_dim+context_dim` -> both)."""
    if dim.isdigit():
        return ()
    tree = ast.parse(dim, mode="eval")
    return tuple(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)))


@functools.cache
def _compiled(dim: str) -> Any:
    tree = ast.parse(dim, mode="eval")
    for node in ast.walk(tree):
        allowed = (ast.Expression, ast.BinOp, ast.Name, ast.Load, ast.Constant, *_OPS)
        if not isinstance(node, allowed):
            raise ValueError(f"unsupported dim expression {dim!r}")
    return compile(tree, f"<dim {dim}>", "eval")


def evaluate(dim: str, values: dict[str, int]) -> int | None:
    """The dim's value under `values`, or None when a name in it is not bound yet."""
    if dim.isdigit():
        return int(dim)
    if dim in values:
        return values[dim]
    names = dim_names(dim)
    if any(n not in values for n in names):
        return None
    return int(eval(_compiled(dim), {"__builtins__": {}}, {n: values[n] for n in names}))


def is_plain(dim: str) -> bool:
    return dim.isidentifier()
