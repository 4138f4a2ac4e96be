"""The validator's fast path: does a call hold? Answered without building a single message.

Almost every checked call holds. `CallPlan` compiles a contract once (each tensor's dims
as constants, symbols or expressions, its dtypes as `torch.dtype`s, its invariants) and
`CallPlan.holds` walks a call's arguments or result with it: True means the call holds
and the symbols it binds are in `env`, exactly as the full validator would bind them.
Anything else (a wrong rank, a disagreement between two tensors about `B`, a failing
invariant, an unusual value) answers False, and the full validator in validate.py runs
again from the start to say what is wrong: messages are built only on failure.
"""

import ast
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from beartype.door import is_bearable

from aimespec.core.contract import MethodContract
from aimespec.core.dims import DictNode, Leaf, Node, Other, TupleNode, dim_names, evaluate, is_plain
from aimespec.core.invariants import Invariant, check_value

CONST, SYMBOL, EXPR = 0, 1, 2


@dataclass(frozen=True)
class LeafPlan:
    leaf: Leaf
    dims: tuple[tuple[int, Any], ...]  # (CONST, 64) | (SYMBOL, "B") | (EXPR, the compiled hidden_dim+context_dim)
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
    dims = tuple((CONST, int(d)) if d.isdigit() else (SYMBOL, d) if is_plain(d) else (EXPR, _expression(d))
                 for d in leaf.dims)
    dtypes = None
    if leaf.dtype != "any":
        found = {_dtype(name) for name in leaf.dtypes}
        dtypes = frozenset(d for d in found if d is not None)
    return LeafPlan(leaf, dims, dtypes, tuple(contract.invariants_for(leaf.path)))


class _Fails(Exception):
    """The fast path cannot vouch for the call: the full validator takes over."""


class CallPlan:
    """A contract compiled for the fast path."""

    def __init__(self, contract: MethodContract) -> None:
        self.contract = contract
        self.leaves: dict[int, LeafPlan] = {}
        for p in contract.params:
            self._compile(p.node)
        self._compile(contract.returns)

    def _compile(self, node: Node) -> None:
        if isinstance(node, Leaf):
            self.leaves[id(node)] = _leaf_plan(node, self.contract)
        elif isinstance(node, TupleNode):
            for item in node.items:
                self._compile(item)
        elif isinstance(node, DictNode):
            for _, item, _ in node.entries:
                self._compile(item)

    # --- the walk ---------------------------------------------------------------------------
    def holds(self, roots: list[tuple[Node, Any, bool]], env: dict[str, int], free: frozenset[str],
              values: bool) -> bool:
        """Whether these (node, value, present) hold; on True, `env` carries what they bound."""
        found: list[tuple[LeafPlan, torch.Tensor]] = []
        try:
            for node, value, present in roots:
                self._collect(node, value, present, found)
            work = {**env, **self._bind(found, env, free)}
            self._check(found, work, values)
        except _Fails:
            return False
        except Exception:  # a user's odd object (a keys() that raises): let the full validator judge it
            return False
        env.update(work)
        return True

    def _collect(self, node: Node, value: Any, present: bool, found: list[tuple[LeafPlan, torch.Tensor]]) -> None:
        if isinstance(node, Leaf):
            if not present or value is None:
                if node.optional:
                    return
                raise _Fails
            plan = self.leaves[id(node)]
            if not isinstance(value, torch.Tensor) or value.dim() != len(plan.dims):
                raise _Fails
            if plan.dtypes is not None and value.dtype not in plan.dtypes:
                raise _Fails
            found.append((plan, value))
        elif isinstance(node, TupleNode):
            if not present or value is None:
                if not present or node.optional:
                    return
                raise _Fails
            if not isinstance(value, (tuple, list)) or len(value) != len(node.items):
                raise _Fails
            for item, v in zip(node.items, value, strict=True):
                self._collect(item, v, True, found)
        elif isinstance(node, DictNode):
            if not present or value is None:
                if not present or node.optional:
                    return
                raise _Fails
            if isinstance(value, Mapping):
                keys: Any = value
            elif hasattr(value, "__getitem__") and hasattr(value, "keys"):  # a record answering the keys
                keys = value.keys()
            else:
                raise _Fails
            for key, item, _required in node.entries:
                has = key in keys
                self._collect(item, value[key] if has else None, has, found)
        elif isinstance(node, Other):
            if not present or node.hint is Any or (value is None and node.optional):
                return
            hint = node.hint
            if not (isinstance(value, hint) if isinstance(hint, type) else is_bearable(value, hint)):
                raise _Fails

    @staticmethod
    def _bind(found: list[tuple[LeafPlan, torch.Tensor]], env: dict[str, int], free: frozenset[str]
              ) -> dict[str, int]:
        """The free symbols these tensors bind: all of them must agree (else the majority vote decides)."""
        bound: dict[str, int] = {}
        for plan, value in found:
            shape = value.shape
            for i, (kind, dim) in enumerate(plan.dims):
                if kind == SYMBOL and dim in free and dim not in env:
                    size = int(shape[i])
                    if bound.setdefault(dim, size) != size:
                        raise _Fails
        return bound

    @staticmethod
    def _check(found: list[tuple[LeafPlan, torch.Tensor]], env: dict[str, int], values: bool) -> None:
        for plan, value in found:
            shape = value.shape
            for i, (kind, dim) in enumerate(plan.dims):
                size = shape[i]
                if kind == CONST:
                    want = dim
                elif kind == SYMBOL:
                    want = env.get(dim)
                    if want is None:  # a symbol nothing bound yet: the first tensor that has it binds it
                        env[dim] = int(size)
                        continue
                else:
                    try:
                        want = dim(env)
                    except KeyError:  # a name not bound yet: as dims.evaluate, nothing to compare
                        continue
                if want != size:
                    raise _Fails
        if values:
            for plan, value in found:
                for inv in plan.invariants:
                    if check_value(inv, value, plan.leaf.dims, env) is not None:
                        raise _Fails


_PLANS: dict[int, tuple[MethodContract, CallPlan]] = {}  # id -> (the contract, kept alive; its plan)


def plan_of(contract: MethodContract) -> CallPlan:
    """The contract's plan, compiled at its first check."""
    hit = _PLANS.get(id(contract))
    if hit is None or hit[0] is not contract:
        hit = (contract, CallPlan(contract))
        _PLANS[id(contract)] = hit
    return hit[1]
