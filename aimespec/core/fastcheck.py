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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from beartype.door import is_bearable

from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract
from aimespec.core.dims import DictNode, Leaf, Node, Other, TupleNode, dim_names, evaluate, is_plain
from aimespec.core.invariants import Invariant
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

    @property
    def again(self) -> bool:
        """Whether the tensor is looked at again after the walk (its expressions, its invariants)."""
        return bool(self.exprs or self.invariants)


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
    return LeafPlan(leaf, len(leaf.dims), exact, tuple(consts), tuple(symbols), tuple(exprs), dtypes,
                    tuple(contract.invariants_for(leaf.path)))


class _Fails(Exception):
    """The fast path cannot vouch for the call: the full validator takes over."""


Again = list[tuple[LeafPlan, torch.Tensor]]  # the tensors with expressions or invariants, for after the walk
Collect = Callable[[Any, bool, dict[str, int], Again], None]  # (value, present, env, again), or raises _Fails


class CallPlan:
    """A contract compiled for the fast path at one config: each node of its tree as one `Collect`
    closure, the config's sizes written into them (`hidden_dim` is 32 here, not a name to look up).

    `known` is what the config binds (less the call's free symbols); the `env` of a walk holds
    only what the call binds itself: its free symbols (B, T, n_samples, ...) and any symbol the
    config does not have. Without a config (`known` empty) every name is looked up in `env`.
    """

    def __init__(self, contract: MethodContract, known: dict[str, int]) -> None:
        self.contract = contract
        self.known = known
        self.params = tuple((p.name, self._compile(p.node)) for p in contract.params)
        self.int_params = tuple((p.name, p.default) for p in contract.params if isinstance(p.node, Other))
        self.returns = self._compile(contract.returns)

    def _compile(self, node: Node) -> Collect:
        if isinstance(node, Leaf):
            return _leaf_collector(_leaf_plan(node, self.contract, self.known))
        if isinstance(node, TupleNode):
            return _tuple_collector(node, tuple(self._compile(item) for item in node.items))
        if isinstance(node, DictNode):
            return _dict_collector(node, tuple((key, self._compile(item)) for key, item, _ in node.entries))
        return _other_collector(node)

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
        again: Again = []
        size = len(env)
        try:
            for name, collect in self.params:
                if name in arguments:
                    collect(arguments[name], True, env, again)
                else:
                    collect(None, False, env, again)
            if again:
                self._after(again, env, values)
        except Exception:  # _Fails, or a user's odd object (a keys() that raises): the full validator judges
            _forget_from(env, size)
            return False
        return True

    def holds_result(self, result: Any, env: dict[str, int], values: bool) -> bool:
        """Whether the call's result holds; True: `env` carries what it bound, False: `env` as it was."""
        again: Again = []
        size = len(env)
        try:
            self.returns(result, True, env, again)
            if again:
                self._after(again, env, values)
        except Exception:
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


def _leaf_collector(plan: LeafPlan) -> Collect:
    """Rank, dtype, then each axis: a known size compared, a symbol bound by the first tensor that
    has it (any other size is a disagreement the full validator must judge)."""
    optional, rank, dtypes, exact, consts, symbols = (plan.leaf.optional, plan.rank, plan.dtypes, plan.exact,
                                                      plan.consts, plan.symbols)
    again_too, tensor = plan.again, torch.Tensor

    def collect(value: Any, present: bool, env: dict[str, int], again: Again) -> None:
        if not present or value is None:
            if optional:
                return
            raise _Fails
        if not isinstance(value, tensor):
            raise _Fails
        shape = value.shape
        if len(shape) != rank or (dtypes is not None and value.dtype not in dtypes):
            raise _Fails
        if exact is not None:
            if shape != exact:
                raise _Fails
        else:
            for i, want in consts:
                if shape[i] != want:
                    raise _Fails
            for i, name in symbols:
                want = env.get(name)
                if want is None:
                    env[name] = shape[i]
                elif want != shape[i]:
                    raise _Fails
        if again_too:
            again.append((plan, value))

    return collect


def _tuple_collector(node: TupleNode, items: tuple[Collect, ...]) -> Collect:
    optional, size = node.optional, len(items)

    def collect(value: Any, present: bool, env: dict[str, int], again: Again) -> None:
        if not present or value is None:
            if not present or optional:
                return
            raise _Fails
        if not isinstance(value, (tuple, list)) or len(value) != size:
            raise _Fails
        for item, v in zip(items, value, strict=True):
            item(v, True, env, again)

    return collect


def _dict_collector(node: DictNode, entries: tuple[tuple[str, Collect], ...]) -> Collect:
    optional = node.optional

    def collect(value: Any, present: bool, env: dict[str, int], again: Again) -> None:
        if not present or value is None:
            if not present or optional:
                return
            raise _Fails
        if type(value) is dict or isinstance(value, Mapping):  # the exact type first: no ABC check
            keys: Any = value
        elif hasattr(value, "__getitem__") and hasattr(value, "keys"):  # a record answering the keys
            keys = value.keys()
        else:
            raise _Fails
        for key, item in entries:
            has = key in keys
            item(value[key] if has else None, has, env, again)

    return collect


def _other_collector(node: Other) -> Collect:
    optional, hint = node.optional, node.hint

    def collect(value: Any, present: bool, env: dict[str, int], again: Again) -> None:
        if not present or hint is Any or (value is None and optional):
            return
        if not (isinstance(value, hint) if isinstance(hint, type) else is_bearable(value, hint)):
            raise _Fails

    return collect


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
