"""The validator's fast path: does a call hold? Answered without building a single message.

Almost every checked call holds. `CallPlan` compiles a contract once: each node of its tree
becomes a closure (a tensor's rank, its dtypes as `torch.dtype`s, its axes split into literals,
symbols and compiled expressions, its invariants). `CallPlan.holds_inputs` / `holds_result`
walk a call's arguments or result with them: True means the call holds and the symbols it
binds are in `env`, exactly as the full validator would bind them. Anything else (a wrong
rank, a disagreement between two tensors about `B`, a failing invariant, an unusual value)
answers False with `env` as it was, and the full validator in validate.py runs again from
the start to say what is wrong: messages are built only on failure.

A checked forward makes ~50 such calls between the model's own operations, which leave the
checker's objects out of the CPU's caches: what counts is how little a call touches (no
copy of the symbol table, one closure per node, one pass over the tensors), not only how
few instructions it runs."""

import ast
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from beartype.door import is_bearable

from aimespec.core.contract import MethodContract
from aimespec.core.dims import DictNode, Leaf, Node, Other, TupleNode, dim_names, evaluate, is_plain
from aimespec.core.invariants import Invariant


@dataclass(frozen=True)
class LeafPlan:
    leaf: Leaf
    rank: int
    consts: tuple[tuple[int, int], ...]  # (axis, 64): a literal size
    symbols: tuple[tuple[int, str], ...]  # (axis, "B"): bound by the first tensor that has it, then compared
    exprs: tuple[tuple[int, Callable[[dict[str, int]], int]], ...]  # (axis, the compiled hidden_dim+context_dim)
    dtypes: frozenset[torch.dtype] | None  # None: any dtype
    invariants: tuple[Invariant, ...]


def _dtype(name: str) -> torch.dtype | None:
    value = getattr(torch, name, None)
    return value if isinstance(value, torch.dtype) else None


class _Names(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Subscript(ast.Name("e", ast.Load()), ast.Constant(node.id), ast.Load()), node)


@functools.cache
def _expression(dim: str) -> Callable[[dict[str, int]], int]:
    """`D+context_dim+A` as `lambda e: e["D"] + e["context_dim"] + e["A"]` (KeyError: a name unbound).

    Only what `dims.evaluate` accepts gets here (+ - * // of names and integers): it is asked first.
    """
    evaluate(dim, {n: 1 for n in dim_names(dim)})  # raises DimError for anything else
    body = _Names().visit(ast.parse(dim, mode="eval")).body
    tree = ast.Expression(ast.Lambda(ast.arguments([], [ast.arg("e")], None, [], [], None, []), body))
    return eval(compile(ast.fix_missing_locations(tree), f"<dim {dim}>", "eval"), {"__builtins__": {}})


def _leaf_plan(leaf: Leaf, contract: MethodContract) -> LeafPlan:
    axes = list(enumerate(leaf.dims))
    dtypes = None
    if leaf.dtype != "any":
        found = {_dtype(name) for name in leaf.dtypes}
        dtypes = frozenset(d for d in found if d is not None)
    return LeafPlan(leaf, len(leaf.dims),
                    consts=tuple((i, int(d)) for i, d in axes if d.isdigit()),
                    symbols=tuple((i, d) for i, d in axes if not d.isdigit() and is_plain(d)),
                    exprs=tuple((i, _expression(d)) for i, d in axes if not d.isdigit() and not is_plain(d)),
                    dtypes=dtypes, invariants=tuple(contract.invariants_for(leaf.path)))


class _Fails(Exception):
    """The fast path cannot vouch for the call: the full validator takes over."""


Found = list[tuple[LeafPlan, torch.Tensor, torch.Size]]
Collect = Callable[[Any, bool, Found], None]  # (value, present, found): appends its tensors or raises _Fails


class CallPlan:
    """A contract compiled for the fast path: each node of its tree as one `Collect` closure."""

    def __init__(self, contract: MethodContract) -> None:
        self.contract = contract
        self.free = contract.free_symbols()
        self.params = tuple((p.name, self._compile(p.node)) for p in contract.params)
        self.int_params = tuple((p.name, p.default) for p in contract.params if isinstance(p.node, Other))
        self.returns = self._compile(contract.returns)

    def _compile(self, node: Node) -> Collect:
        if isinstance(node, Leaf):
            return _leaf_collector(_leaf_plan(node, self.contract))
        if isinstance(node, TupleNode):
            return _tuple_collector(node, tuple(self._compile(item) for item in node.items))
        if isinstance(node, DictNode):
            return _dict_collector(node, tuple((key, self._compile(item)) for key, item, _ in node.entries))
        return _other_collector(node)

    # --- the walk ---------------------------------------------------------------------------
    def holds_inputs(self, arguments: Mapping[str, Any], env: dict[str, int], values: bool) -> bool:
        """Whether the call's arguments hold; True: `env` carries what they bound, False: `env` as it was."""
        found: Found = []
        size = len(env)
        try:
            for name, collect in self.params:
                if name in arguments:
                    collect(arguments[name], True, found)
                else:
                    collect(None, False, found)
            _check(found, env, values)
        except Exception:  # _Fails, or a user's odd object (a keys() that raises): the full validator judges
            _forget_from(env, size)
            return False
        return True

    def holds_result(self, result: Any, env: dict[str, int], values: bool) -> bool:
        """Whether the call's result holds; True: `env` carries what it bound, False: `env` as it was."""
        found: Found = []
        size = len(env)
        try:
            self.returns(result, True, found)
            _check(found, env, values)
        except Exception:
            _forget_from(env, size)
            return False
        return True


def _forget_from(env: dict[str, int], size: int) -> None:
    """Undo the walk's bindings: it only adds names (never changes one), so they are the last ones."""
    for name in list(env)[size:]:
        del env[name]


def _check(found: Found, env: dict[str, int], values: bool) -> None:
    _check_shapes(found, env)
    if values:
        _check_values(found, env)


def _leaf_collector(plan: LeafPlan) -> Collect:
    optional, rank, dtypes, tensor = plan.leaf.optional, plan.rank, plan.dtypes, torch.Tensor

    def collect(value: Any, present: bool, found: Found) -> None:
        if not present or value is None:
            if optional:
                return
            raise _Fails
        if not isinstance(value, tensor):
            raise _Fails
        shape = value.shape
        if len(shape) != rank or (dtypes is not None and value.dtype not in dtypes):
            raise _Fails
        found.append((plan, value, shape))

    return collect


def _tuple_collector(node: TupleNode, items: tuple[Collect, ...]) -> Collect:
    optional, size = node.optional, len(items)

    def collect(value: Any, present: bool, found: Found) -> None:
        if not present or value is None:
            if not present or optional:
                return
            raise _Fails
        if not isinstance(value, (tuple, list)) or len(value) != size:
            raise _Fails
        for item, v in zip(items, value, strict=True):
            item(v, True, found)

    return collect


def _dict_collector(node: DictNode, entries: tuple[tuple[str, Collect], ...]) -> Collect:
    optional = node.optional

    def collect(value: Any, present: bool, found: Found) -> None:
        if not present or value is None:
            if not present or optional:
                return
            raise _Fails
        if isinstance(value, Mapping):
            keys: Any = value
        elif hasattr(value, "__getitem__") and hasattr(value, "keys"):  # a record answering the keys
            keys = value.keys()
        else:
            raise _Fails
        for key, item in entries:
            has = key in keys
            item(value[key] if has else None, has, found)

    return collect


def _other_collector(node: Other) -> Collect:
    optional, hint = node.optional, node.hint

    def collect(value: Any, present: bool, found: Found) -> None:
        if not present or hint is Any or (value is None and optional):
            return
        if not (isinstance(value, hint) if isinstance(hint, type) else is_bearable(value, hint)):
            raise _Fails

    return collect


def _check_shapes(found: Found, env: dict[str, int]) -> None:
    """Every axis against its literal, its symbol (the first tensor having an unbound one binds it:
    any other size is a disagreement the full validator must judge) and, once every plain symbol is
    bound, its expression (a name still unbound: nothing to compare, as dims.evaluate)."""
    later = []
    for plan, _value, shape in found:
        for i, want in plan.consts:
            if shape[i] != want:
                raise _Fails
        for i, name in plan.symbols:
            want = env.get(name)
            if want is None:
                env[name] = shape[i]
            elif want != shape[i]:
                raise _Fails
        if plan.exprs:
            later.append((plan.exprs, shape))
    for exprs, shape in later:
        for i, expression in exprs:
            try:
                want = expression(env)
            except KeyError:
                continue
            if want != shape[i]:
                raise _Fails


def _check_values(found: Found, env: dict[str, int]) -> None:
    for plan, value, _shape in found:
        if plan.invariants and not value.is_meta:  # meta tensors carry no values (check_value)
            dims = plan.leaf.dims
            for inv in plan.invariants:
                if inv.violation(value, dims, env) is not None:
                    raise _Fails


_PLANS: dict[int, tuple[MethodContract, CallPlan]] = {}  # id -> (the contract, kept alive; its plan)


def plan_of(contract: MethodContract) -> CallPlan:
    """The contract's plan, compiled at its first check."""
    hit = _PLANS.get(id(contract))
    if hit is None or hit[0] is not contract:
        hit = (contract, CallPlan(contract))
        _PLANS[id(contract)] = hit
    return hit[1]
