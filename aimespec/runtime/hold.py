"""Holding any object against a contract: build it, draw valid inputs, call it, collect violations.

This is the engine behind `aimespec check PATH` and `aimespec.strategies`. It works on
plain PyTorch classes that carry no annotations: everything it knows comes from the
contract, never from the implementation.
"""

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract, resolve
from aimespec.core.dims import DictNode, Leaf, Node, Other, TupleNode, dim_names, evaluate
from aimespec.core.errors import ContractNotFound, ContractViolation, UsageError
from aimespec.core.limits import count, seed_value
from aimespec.core.symbols import symbol_values
from aimespec.core.user_symbols import check_fields
from aimespec.core.validate import CallChecker
from aimespec.core.violation import Violation, ViolationKind, exception_violation

_WATCHERS: list[Callable[[list[Violation]], None]] = []  # told of every hold() that found violations


@contextlib.contextmanager
def watching_holds(watcher: Callable[[list[Violation]], None]) -> Iterator[None]:
    """Call `watcher(violations)` whenever `hold` finds any, inside the block (the pytest plugin's summary)."""
    _WATCHERS.append(watcher)
    try:
        yield
    finally:
        _WATCHERS.remove(watcher)


@dataclass
class CallInputs:
    """Valid positional inputs for one contract call, and how to reproduce them."""

    contract: str
    args: tuple[Any, ...]
    names: tuple[str, ...]
    batch: int
    seq_len: int
    seed: int
    values: dict[str, int]

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(zip(self.names, self.args, strict=True))


def call_values(contract: MethodContract, cfg: AimeConfig, B: int, T: int) -> dict[str, int]:
    """Every symbol's value for a generated call: the config's, B, T and the contract's free dims."""
    values = symbol_values(cfg, B, T)
    values.update(contract.free_dims)
    values.update(contract.default_values())  # n_samples=10: positional calls leave defaults alone
    return values


def bound_checker(contract: MethodContract, cfg: AimeConfig, inputs: CallInputs, *, values: bool = True
                  ) -> CallChecker:
    """A checker for the result of a generated call: B, T, free dims and int defaults bound as drawn.

    A free dim that no argument mentions (the world model's `n_samples`, which only a result
    carries) was not drawn: it stays free, bound by the result itself.
    """
    drawn = {n for leaf in contract.input_leaves() for d in leaf.dims for n in dim_names(d)}
    drawn |= {p.name for p in contract.params}
    free = {k: v for k, v in inputs.values.items() if k in contract.free_symbols() and k in drawn}
    checker = CallChecker(contract, cfg, values=values, initial=free)
    checker.check_inputs(inputs.arguments)  # valid by construction; binds what the arguments say
    return checker


def make_inputs(
    ref: str | MethodContract,
    cfg: AimeConfig,
    B: int,
    T: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    overrides: dict[str, int] | None = None,
) -> CallInputs:
    """Draw valid positional arguments for a contract (optional arguments left at their defaults).

    `overrides` replaces symbol values (e.g. `{"D": 32}` to draw deliberately wrong inputs).
    """
    contract = resolve(ref) if isinstance(ref, str) else ref
    values = {**call_values(contract, cfg, B, T), **(overrides or {})}
    g = torch.Generator().manual_seed(seed)
    args, names = [], []
    for p in contract.params:
        if p.has_default:
            break  # positional call: defaults stay defaults
        args.append(_draw(contract, p.node, values, g, device))
        names.append(p.name)
    return CallInputs(contract.name, tuple(args), tuple(names), B, T, seed, values)


def make_result(
    ref: str | MethodContract,
    cfg: AimeConfig,
    B: int,
    T: int,
    seed: int = 0,
    *,
    overrides: dict[str, int] | None = None,
) -> Any:
    """A valid result for a contract (tuples as tuples, mappings as dicts), e.g. for a fake implementation."""
    contract = resolve(ref) if isinstance(ref, str) else ref
    values = {**call_values(contract, cfg, B, T), **(overrides or {})}
    return _draw(contract, contract.returns, values, torch.Generator().manual_seed(seed), "cpu")


def _draw(contract: MethodContract, node: Node, values: dict[str, int], g: torch.Generator, device: Any) -> Any:
    if isinstance(node, TupleNode):
        return tuple(_draw(contract, item, values, g, device) for item in node.items)
    if isinstance(node, DictNode):
        return {key: _draw(contract, item, values, g, device) for key, item, _required in node.entries}
    if isinstance(node, Leaf):
        shape = tuple(_size(d, values) for d in node.dims)
        for inv in contract.invariants_for(node.path):
            drawn = inv.draw(shape, node.dims, values, g)
            if drawn is not None:
                return drawn.to(device=device, dtype=_dtype(node, drawn))
        if node.dtype == "int":
            return torch.randint(0, 2, shape, generator=g).to(device)
        if node.dtype == "bool":
            return (torch.rand(shape, generator=g) > 0.5).to(device)
        return torch.randn(shape, generator=g).to(device)
    if isinstance(node, Other):
        return None
    raise TypeError(f"cannot draw an input for {node!r}")


def _dtype(node: Leaf, drawn: torch.Tensor) -> torch.dtype:
    if node.dtype == "int":
        return torch.long
    if node.dtype == "float":
        return torch.float32
    return drawn.dtype


def _size(dim: str, values: dict[str, int]) -> int:
    size = evaluate(dim, values)
    if size is None:
        raise KeyError(f"dim {dim!r} has no value: bind it in the contract's free_dims")
    return size


# --- building and holding ----------------------------------------------------------------------
def build(cls: type, cfg: AimeConfig) -> Any:
    """Build a component as users write them: `cls.from_config(cfg)` if present, else `cls(cfg)`."""
    factory = getattr(cls, "from_config", None)
    if callable(factory):
        return factory(cfg)
    return cls(cfg)


def call_method(obj: Any, contract: MethodContract, inputs: CallInputs) -> Any:
    """Call the object's method positionally (an nn.Module's `forward` through `__call__`, so hooks run)."""
    if contract.method == "forward" and callable(obj) and isinstance(obj, torch.nn.Module):
        return obj(*inputs.args)
    method = getattr(obj, contract.method, None)
    if method is None:
        raise AttributeError(f"{type(obj).__name__} has no method {contract.method!r}")
    return method(*inputs.args)


UNKNOWN_CONTRACT = "hold: {ref!r} names no contract method ({reason}); see `aimespec spec` for the contracts"


def _contract(ref: str | MethodContract) -> MethodContract:
    if isinstance(ref, MethodContract):
        return ref
    if not isinstance(ref, str):
        raise UsageError(UNKNOWN_CONTRACT.format(ref=ref, reason=f"a {type(ref).__name__}, not a name"))
    try:
        return resolve(ref)
    except (ContractNotFound, AttributeError, KeyError) as exc:
        method = ref.partition(".")[2]
        reason = f"no method {method!r}" if isinstance(exc, AttributeError) else str(exc).strip("'\"")
        raise UsageError(UNKNOWN_CONTRACT.format(ref=ref, reason=reason)) from None


def hold(
    obj_or_cls: Any,
    ref: str | MethodContract,
    cfg: AimeConfig,
    B: int | None = None,
    T: int | None = None,
    seed: int = 0,
    *,
    values: bool = True,
    device: str | torch.device = "cpu",
) -> list[Violation]:
    """Every violation of one generated call of `ref` on `obj_or_cls` (built from cfg if a class).

    Exceptions raised by the object (constructor or call) are returned as violations of
    kind `constructor` / `exception`, never raised.
    """
    contract = _contract(ref)
    check_fields(contract.symbols(), cfg, where=f"{contract.name} ")  # a user's symbol needs its config field
    B = count(cfg.batch_size if B is None else B, "B")  # B=0 would check nothing, T=0 divide by zero
    T = count(cfg.sequence_length if T is None else T, "T")
    seed = seed_value(seed, "seed")
    if inspect.isclass(obj_or_cls):
        try:
            obj = build(obj_or_cls, cfg)
        except Exception as exc:  # a broken constructor is a finding, not a crash
            return [exception_violation(contract.name, ViolationKind.CONSTRUCTOR, exc).at(B, T, seed)]
    else:
        obj = obj_or_cls
    inputs = make_inputs(contract, cfg, B, T, seed, device)
    checker = bound_checker(contract, cfg, inputs, values=values)
    try:
        result = call_method(obj, contract, inputs)
    except ContractViolation as exc:  # the object checks itself (a reference component)
        found = exc.violations
    except Exception as exc:
        found = [exception_violation(contract.name, ViolationKind.EXCEPTION, exc)]
    else:
        found = checker.check_outputs(result)
    found = [v.at(B, T, seed) for v in found]
    if found:
        for watcher in list(_WATCHERS):
            watcher(found)
    return found
