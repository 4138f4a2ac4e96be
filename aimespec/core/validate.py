"""The validator: hold one call's arguments and result against a method contract.

Walks every entry (every dict key, every tuple element, not only the first as beartype
does), binds the free symbols (B, T, ...) once per call by majority, checks config-bound
symbols against the config, then the value invariants, and returns *all* violations.
"""

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from beartype.door import is_bearable

from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract
from aimespec.core.dims import DictNode, Leaf, Node, Other, TupleNode, dim_names, evaluate, format_shape, is_plain
from aimespec.core.fastcheck import plan_of
from aimespec.core.invariants import check_value
from aimespec.core.symbols import config_values
from aimespec.core.violation import Violation, ViolationKind


class Bindings:
    """Symbol values for one call: the config's bound symbols plus the free ones seen."""

    def __init__(self, cfg: AimeConfig, free: frozenset[str], initial: Mapping[str, int] | None = None):
        self.values: dict[str, int] = config_values(cfg, free).copy()
        self.free = free
        if initial:
            self.values.update(initial)

    def bind_majority(self, pairs: list[tuple[Leaf, Any]]) -> None:
        """Bind each still-free plain symbol to the value most tensors of the call agree on."""
        votes: dict[str, Counter] = {}
        for leaf, value in pairs:
            if not isinstance(value, torch.Tensor) or value.dim() != len(leaf.dims):
                continue
            for dim, size in zip(leaf.dims, value.shape, strict=True):
                if is_plain(dim) and dim in self.free and dim not in self.values:
                    votes.setdefault(dim, Counter())[int(size)] += 1
        for name, counter in votes.items():
            self.values[name] = counter.most_common(1)[0][0]

    def concrete(self, leaf: Leaf) -> list[int | None]:
        return [evaluate(d, self.values) for d in leaf.dims]

    def mentioned(self, leaf: Leaf) -> dict[str, int]:
        names = [n for d in leaf.dims for n in dim_names(d)]
        return {n: self.values[n] for n in dict.fromkeys(names) if n in self.values}


def _expected_text(leaf: Leaf, shape: list[int | None]) -> str:
    return f"{leaf.symbolic} = {format_shape(shape)}" if leaf.dims else "a 0-dim tensor (scalar)"


def _or_minus_one(shape: list[int | None]) -> list[int]:
    return [s if s is not None else -1 for s in shape]


def _fmt_bindings(values: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def _walk(node: Node, value: Any, present: bool = True) -> Iterator[tuple[Node, Any, bool]]:
    """Yield (node, value, present) for every node, descending into tuples and mappings."""
    yield node, value, present
    if not present or value is None:
        return
    if isinstance(node, TupleNode) and isinstance(value, (tuple, list)) and len(value) == len(node.items):
        for item, v in zip(node.items, value, strict=True):
            yield from _walk(item, v)
    elif isinstance(node, DictNode) and _is_mapping(value):
        for key, item, _required in node.entries:
            has = _has_key(value, key)
            yield from _walk(item, _get(value, key) if has else None, has)


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) or (hasattr(value, "__getitem__") and hasattr(value, "keys"))


def _has_key(value: Any, key: str) -> bool:
    try:
        return key in value.keys()
    except Exception:  # the user's own object: whatever its keys() raises must not crash the checker
        return False


def _get(value: Any, key: str) -> Any:
    return value[key]


class CallChecker:
    """Checks one call; `check_inputs` before it runs, `check_outputs` after."""

    def __init__(self, contract: MethodContract, cfg: AimeConfig, *, values: bool = True,
                 initial: Mapping[str, int] | None = None):
        self.contract = contract
        self.cfg = cfg
        self.values = values
        self._initial = initial
        self._vouched: Mapping[str, Any] | None = None  # arguments the fast path found to hold
        self._bindings: Bindings | None = None
        free = contract.free_symbols()
        if initial and not initial.keys().isdisjoint(config_values(cfg, free)):  # a config symbol given a value
            self._plan = plan_of(contract, None)
            self._bindings = Bindings(cfg, free, initial)
            self._env = self._bindings.values
        else:  # the usual case: the plan knows the config's values, the call binds only its own symbols
            self._plan = plan_of(contract, cfg)
            self._env: dict[str, int] = dict(initial) if initial else {}

    @property
    def bindings(self) -> Bindings:
        """Every symbol's value so far: the config's, then the call's (built when first asked for)."""
        if self._bindings is None:
            self._bindings = Bindings(self.cfg, self.contract.free_symbols())
            self._bindings.values.update(self._env)
            self._env = self._bindings.values
        return self._bindings

    # --- public steps -------------------------------------------------------------------
    def check_inputs(self, arguments: Mapping[str, Any]) -> list[Violation]:
        self._bind_int_arguments(arguments)
        if self._plan.holds_inputs(arguments, self._env, self.values):
            self._vouched = arguments  # they hold: no message to build (fastcheck.py)
            return []
        return self._inputs_in_full(arguments)

    def check_outputs(self, result: Any) -> list[Violation]:
        if self._plan.holds_result(result, self._env, self.values):
            return []
        if self._vouched is not None:  # the inputs took the fast path: bind them as the full validator does
            arguments, self._vouched = self._vouched, None
            self._bindings = Bindings(self.cfg, self.contract.free_symbols(), self._initial)
            self._env = self._bindings.values
            self._bind_int_arguments(arguments)
            self._inputs_in_full(arguments)
        return self._check_nodes(list(_walk(self.contract.returns, result)))

    def _bind_int_arguments(self, arguments: Mapping[str, Any]) -> None:
        self._plan.bind_ints(arguments, self._env)

    def _inputs_in_full(self, arguments: Mapping[str, Any]) -> list[Violation]:
        pairs: list[tuple[Node, Any, bool]] = []
        for p in self.contract.params:
            present = p.name in arguments
            pairs.extend(_walk(p.node, arguments.get(p.name), present))
        return self._check_nodes(pairs)

    # --- internals ------------------------------------------------------------------------
    def _check_nodes(self, nodes: list[tuple[Node, Any, bool]]) -> list[Violation]:
        found: list[Violation] = []
        tensor_pairs = [(n, v) for n, v, present in nodes if isinstance(n, Leaf) and present]
        self.bindings.bind_majority(tensor_pairs)
        for node, value, present in nodes:
            if isinstance(node, Leaf):
                v = self._check_leaf(node, value, present)
            elif isinstance(node, TupleNode):
                v = self._check_tuple(node, value, present)
            elif isinstance(node, DictNode):
                v = self._check_dict(node, value, present)
            else:
                v = self._check_other(node, value, present)
            if v is not None:
                found.append(v)
        if self.values:
            failed = {v.tensor for v in found}
            found += self._check_invariants([n for n in nodes if n[0].path not in failed])
        return found

    def _violation(self, leaf: Leaf | None, path: str, kind: ViolationKind, got: list[int] | None, text: str,
                   expected_shape: list[int] | None = None) -> Violation:
        return Violation(
            contract=self.contract.name, tensor=path, kind=kind, message=f"{self.contract.name}: {text}",
            expected=leaf.symbolic if leaf is not None else "",
            expected_shape=expected_shape, got=got, dims=leaf.dims if leaf is not None else (),
            bindings=self.bindings.mentioned(leaf) if leaf is not None else {},
        )

    def _check_leaf(self, leaf: Leaf, value: Any, present: bool) -> Violation | None:
        if (not present or value is None) and leaf.optional:
            return None
        expected_shape = self.bindings.concrete(leaf)
        if not present:
            return self._violation(leaf, leaf.path, ViolationKind.MISSING, None,
                                   f"{leaf.path} is missing from the returned mapping "
                                   f"(expected {_expected_text(leaf, expected_shape)})",
                                   _or_minus_one(expected_shape))
        if not isinstance(value, torch.Tensor):
            return self._violation(leaf, leaf.path, ViolationKind.TYPE, None,
                                   f"{leaf.path} expected a tensor {_expected_text(leaf, expected_shape)}, "
                                   f"got {type(value).__name__}", _or_minus_one(expected_shape))
        got = list(value.shape)
        if value.dim() != len(leaf.dims):
            lead = leaf.dims[0] if leaf.dims else ""
            if lead in self.bindings.free and lead not in self.bindings.values and value.dim():
                self.bindings.values[lead] = int(value.shape[0])  # a leading batch axis usually survives
                expected_shape = self.bindings.concrete(leaf)
            bound = _fmt_bindings(self.bindings.mentioned(leaf))
            text = (f"{leaf.path} expected {len(leaf.dims)} dims {_expected_text(leaf, expected_shape)}, "
                    f"got {value.dim()} dims {format_shape(got)}" + (f" ({bound})" if bound else ""))
            return self._violation(leaf, leaf.path, ViolationKind.RANK, got, text, _or_minus_one(expected_shape))
        if not leaf.accepts_dtype(value.dtype):
            family = {"float": "a floating-point", "int": "an integer", "bool": "a boolean"}[leaf.dtype]
            return self._violation(leaf, leaf.path, ViolationKind.DTYPE, got,
                                   f"{leaf.path} expected {family} tensor {leaf.symbolic}, got {value.dtype}",
                                   _or_minus_one(expected_shape))
        mismatched = False
        for i, (dim, size) in enumerate(zip(leaf.dims, got, strict=True)):
            want = expected_shape[i]
            if want is None:  # a free symbol first seen here, or an expression of one
                if is_plain(dim):
                    self.bindings.values[dim] = size
                    want = size
                else:
                    continue
            if want != size:
                mismatched = True
        if mismatched:
            final = [e if e is not None else g for e, g in zip(self.bindings.concrete(leaf), got, strict=True)]
            bound = _fmt_bindings(self.bindings.mentioned(leaf))
            text = (f"{leaf.path} expected {leaf.symbolic} = {format_shape(final)}, got {format_shape(got)}"
                    + (f" ({bound})" if bound else ""))
            return self._violation(leaf, leaf.path, ViolationKind.SHAPE, got, text, final)
        return None

    def _check_tuple(self, node: TupleNode, value: Any, present: bool) -> Violation | None:
        if not present or (value is None and node.optional):
            return None
        if not isinstance(value, (tuple, list)) or len(value) != len(node.items):
            what = f"a {type(value).__name__} of {len(value)}" if isinstance(value, (tuple, list)) else type(
                value).__name__
            names = ", ".join(i.path for i in node.items)
            return self._violation(None, node.path, ViolationKind.TYPE, None,
                                   f"{node.path} expected a tuple of {len(node.items)} ({names}), got {what}")
        return None

    def _check_dict(self, node: DictNode, value: Any, present: bool) -> Violation | None:
        if not present or (value is None and node.optional):
            return None
        if not _is_mapping(value):
            keys = ", ".join(k for k, _, _ in node.entries)
            return self._violation(None, node.path, ViolationKind.TYPE, None,
                                   f"{node.path} expected a mapping with keys {keys}, got {type(value).__name__}")
        return None

    def _check_other(self, node: Other, value: Any, present: bool) -> Violation | None:
        if not present or node.hint is Any or (value is None and node.optional):
            return None
        if not is_bearable(value, node.hint):
            return self._violation(None, node.path, ViolationKind.TYPE, None,
                                   f"{node.path} expected {getattr(node.hint, '__name__', node.hint)}, "
                                   f"got {type(value).__name__}")
        return None

    def _check_invariants(self, nodes: list[tuple[Node, Any, bool]]) -> list[Violation]:
        found = []
        for node, value, present in nodes:
            if not isinstance(node, Leaf) or not present or not isinstance(value, torch.Tensor):
                continue
            for inv in self.contract.invariants_for(node.path):
                problem = check_value(inv, value, node.dims, self.bindings.values)
                if problem:
                    shape = list(value.shape)
                    found.append(self._violation(node, node.path, ViolationKind.VALUE, shape, f"{node.path} {problem}",
                                                 shape))
        return found
