"""The validator's fast path: does a call hold? Answered without building a single message.

Almost every checked call holds. `CallPlan` compiles a contract once per config: each tensor's
rank, its dtypes as `torch.dtype`s, its axes as known sizes (literals and the config's),
symbols and compiled expressions, its invariants; the walk of its arguments and of its result
written out as Python (fastcheck_code.py). `CallPlan.holds_inputs` / `holds_result` run them:
True means the call holds and the symbols it binds are in `env`, exactly as the full validator
would bind them. Anything else (a wrong rank, a disagreement between two tensors about `B`, a
failing invariant, an unusual value) answers False with `env` as it was, and the full
validator in validate.py runs again from the start to say what is wrong: messages are built
only on failure.

A checked forward makes ~50 such calls between the model's own operations, which leave the
checker's objects out of the CPU's caches: what counts is how little a call touches (no copy
of the symbol table, one code object per walk, one pass over the tensors), not only how few
instructions it runs."""

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract
from aimespec.core.dims import Leaf, Other, dim_names, evaluate, is_plain
from aimespec.core.fastcheck_code import Walk, inputs_walk, result_walk
from aimespec.core.invariants import Invariant, holds_test
from aimespec.core.symbols import config_values, symbol_generation


@dataclass(frozen=True)
class LeafPlan:
    leaf: Leaf
    rank: int
    exact: tuple[int, ...] | None  # every axis a known size: the whole shape, compared at once
    consts: tuple[tuple[int, int], ...]  # (axis, 64): a literal or a config-bound size
    symbols: tuple[tuple[int, str], ...]  # (axis, "B"): bound by the first tensor that has it, then compared
    exprs: tuple[tuple[int, Callable[[dict[str, int]], int]], ...]  # (axis, the compiled T*n_heads)
    dtypes: frozenset[torch.dtype] | None  # None: any dtype
    invariants: tuple[Invariant, ...]
    test: Callable[[torch.Tensor], bool] | None  # every invariant at once (invariants.holds_test); None: one by one

    @property
    def again(self) -> bool:
        """Whether the tensor is looked at again after the walk: its expressions (every symbol bound
        first), its invariants when they have no compiled test or it has expressions."""
        return bool(self.exprs or (self.invariants and self.test is None))

    @property
    def inline(self) -> bool:
        """Whether the walk itself runs the tensor's compiled value test (fastcheck_code.py)."""
        return self.test is not None and not self.again


def _dtype(name: str) -> torch.dtype | None:
    value = getattr(torch, name, None)
    return value if isinstance(value, torch.dtype) else None


class _Names(ast.NodeTransformer):
    """Names as `e["T"]`, or as their value where it is known (the config's sizes)."""

    def __init__(self, known: dict[str, int]) -> None:
        self.known = known

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.known:
            return ast.copy_location(ast.Constant(self.known[node.id]), node)
        return ast.copy_location(ast.Subscript(ast.Name("e", ast.Load()), ast.Constant(node.id), ast.Load()), node)


def _expression(dim: str, known: dict[str, int]) -> Callable[[dict[str, int]], int]:
    """`T*n_heads` as `lambda e: e["T"] * 4` (KeyError: a name unbound) where `known` = {"n_heads": 4}.

    Only what `dims.evaluate` accepts gets here (+ - * // of names and integers): it is asked first.
    """
    evaluate(dim, {n: 1 for n in dim_names(dim)})  # raises DimError for anything else
    body = _Names(known).visit(ast.parse(dim, mode="eval")).body
    tree = ast.Expression(ast.Lambda(ast.arguments([], [ast.arg("e")], None, [], [], None, []), body))
    return eval(compile(ast.fix_missing_locations(tree), f"<dim {dim}>", "eval"), {"__builtins__": {}})


def _leaf_plan(leaf: Leaf, contract: MethodContract, known: dict[str, int]) -> LeafPlan:
    consts, symbols, exprs = [], [], []
    for i, d in enumerate(leaf.dims):
        if d.isdigit():
            consts.append((i, int(d)))
        elif is_plain(d):
            if d in known:
                consts.append((i, known[d]))
            else:
                symbols.append((i, d))
        elif all(n in known for n in dim_names(d)) and (size := evaluate(d, known)) is not None:
            consts.append((i, size))
        else:
            exprs.append((i, _expression(d, known)))
    dtypes = None
    if leaf.dtype != "any":
        found = {_dtype(name) for name in leaf.dtypes}
        dtypes = frozenset(d for d in found if d is not None)
    exact = tuple(size for _, size in consts) if len(consts) == len(leaf.dims) else None
    invariants = tuple(contract.invariants_for(leaf.path))
    return LeafPlan(leaf, len(leaf.dims), exact, tuple(consts), tuple(symbols), tuple(exprs), dtypes,
                    invariants, holds_test(invariants, leaf.dims))


class _Fails(Exception):
    """The fast path cannot vouch for the call: the full validator takes over."""


# the tensors with expressions, or with invariants but no compiled test: looked at after the walk
Again = list[tuple[LeafPlan, torch.Tensor]]


class CallPlan:
    """A contract compiled for the fast path at one config: its arguments' walk and its result's,
    written out as Python (fastcheck_code.py) with the config's sizes in them (`hidden_dim` is 32
    here, not a name to look up).

    `known` is what the config binds (less the call's free symbols); the `env` of a walk holds
    only what the call binds itself: its free symbols (B, T, n_samples, ...) and any symbol the
    config does not have. Without a config (`known` empty) every name is looked up in `env`.
    """

    def __init__(self, contract: MethodContract, known: dict[str, int]) -> None:
        self.contract = contract
        self.known = known
        self.int_params = tuple((p.name, p.default) for p in contract.params if isinstance(p.node, Other))
        plans: dict[int, LeafPlan] = {}

        def plan_for(leaf: Leaf) -> LeafPlan:
            return plans.setdefault(id(leaf), _leaf_plan(leaf, contract, known))

        self._inputs = inputs_walk([(p.name, p.node) for p in contract.params], plan_for, _Fails, contract.name)
        self._result = result_walk(contract.returns, plan_for, _Fails, contract.name)

    # --- the walk ---------------------------------------------------------------------------
    def bind_ints(self, arguments: Mapping[str, Any], env: dict[str, int]) -> None:
        """Integer arguments (n_samples) bind their symbol, given or by their default."""
        for name, default in self.int_params:
            v = arguments.get(name, default)
            if isinstance(v, int) and not isinstance(v, bool):
                env[name] = v

    def holds_inputs(self, arguments: Mapping[str, Any], env: dict[str, int], values: bool) -> bool:
        """Whether the call's arguments hold; True: `env` carries what they bound, False: `env` as it
        was, with the integer arguments bound (the full validator binds them too)."""
        if self.int_params:
            self.bind_ints(arguments, env)
        return self._holds(self._inputs, arguments, env, values)

    def holds_result(self, result: Any, env: dict[str, int], values: bool) -> bool:
        """Whether the call's result holds; True: `env` carries what it bound, False: `env` as it was."""
        return self._holds(self._result, result, env, values)

    def _holds(self, walk: Walk, value: Any, env: dict[str, int], values: bool) -> bool:
        again: Again = []
        size = len(env)
        try:
            walk(value, env, again, values)
            if again:
                self._after(again, env, values)
        except Exception:  # _Fails, or a user's odd object (a keys() that raises): the full validator judges
            _forget_from(env, size)
            return False
        return True

    def _after(self, again: Again, env: dict[str, int], values: bool) -> None:
        """The expressions, once every plain symbol is bound (a name still unbound: nothing to
        compare, as dims.evaluate), then the invariants, with every symbol's value."""
        for plan, value in again:
            shape = value.shape
            for i, expression in plan.exprs:
                try:
                    want = expression(env)
                except KeyError:
                    continue
                if want != shape[i]:
                    raise _Fails
        if values:
            every: dict[str, int] | None = None  # the config's values and the call's, built when one reads them
            for plan, value in again:
                if plan.invariants and not value.is_meta:  # meta tensors carry no values (check_value)
                    if plan.test is not None:
                        if not plan.test(value):
                            raise _Fails
                        continue
                    dims = plan.leaf.dims
                    for inv in plan.invariants:
                        symbols = env
                        if inv.reads_symbols:
                            symbols = every = {**self.known, **env} if every is None else every
                        if inv.violation(value, dims, symbols) is not None:
                            raise _Fails


def _forget_from(env: dict[str, int], size: int) -> None:
    """Undo the walk's bindings: it only adds names (never changes one), so they are the last ones."""
    for name in list(env)[size:]:
        del env[name]


_PLANS: dict[tuple[int, int], tuple[MethodContract, AimeConfig | None, int, CallPlan]] = {}
_PLANS_MAX = 512  # (contract, config) pairs kept; a test drawing many configs starts over


def plan_of(contract: MethodContract, cfg: AimeConfig | None) -> CallPlan:
    """The contract's plan at `cfg` (None: no config sizes written in), compiled at its first check.

    Kept by identity of the contract and the config, and for the symbol table it was compiled
    under: a redefined contract, another config or a user's symbol declared or forgotten since
    compile it again."""
    key = (id(contract), id(cfg))
    generation = symbol_generation()
    hit = _PLANS.get(key)
    if hit is None or hit[0] is not contract or hit[1] is not cfg or hit[2] != generation:
        known = {} if cfg is None else config_values(cfg, contract.free_symbols())
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        hit = _PLANS[key] = (contract, cfg, generation, CallPlan(contract, known))
    return hit[3]
