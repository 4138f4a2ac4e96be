"""Contracts: a component's signature written once, read by every engine.

A contract is a class deriving from `Contract` whose methods carry jaxtyping annotations
and, with `@invariants(...)`, value invariants. `MethodContract` is the parsed form that
the validator, the input generator, `spec`, `check` and `trace` all read.
"""

import functools
import importlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aimespec.core.dims import Leaf, Node, Other, leaves, parse
from aimespec.core.errors import ContractNotFound
from aimespec.core.invariants import Invariant

CONTRACT_MODULES = (
    "contracts.perceiver",
    "contracts.prior",
    "contracts.dynamics",
    "contracts.attention",
    "contracts.vae",
    "contracts.adversarial",
    "contracts.balancing",
    "contracts.world",
)

_REGISTRY: dict[str, type["Contract"]] = {}


class Contract:
    """Base of the contract classes in `contracts/`: subclasses register by class name.

    `free_dims` names the symbols (besides B and T) that are free per call, with the
    value the input generator uses for them.
    """

    free_dims: typing.ClassVar[dict[str, int]] = {}
    pillar: typing.ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls


def invariants(*items: Invariant) -> Callable[[Callable], Callable]:
    """Attach value invariants to a contract method."""

    def deco(fn: Callable) -> Callable:
        fn.__aimespec_invariants__ = items  # type: ignore[attr-defined]
        return fn

    return deco


@dataclass(frozen=True)
class Param:
    name: str
    node: Node
    has_default: bool
    default: Any


@dataclass(frozen=True)
class MethodContract:
    component: str
    method: str
    params: tuple[Param, ...]
    returns: Node
    invariants: tuple[Invariant, ...]
    free_dims: dict[str, int] = field(default_factory=dict)
    pillar: str = ""
    doc: str = ""

    @property
    def name(self) -> str:
        return f"{self.component}.{self.method}"

    @functools.cached_property
    def _free(self) -> frozenset[str]:
        from aimespec.core.symbols import FREE

        return FREE | frozenset(self.free_dims) | frozenset(p.name for p in self.params if isinstance(p.node, Other))

    def free_symbols(self) -> frozenset[str]:
        """B, T, the contract's free dims and its integer arguments (n_samples)."""
        return self._free

    def default_values(self) -> dict[str, int]:
        """Integer defaults of non-tensor arguments (`n_samples=10`): they bind their symbol."""
        return {p.name: p.default for p in self.params
                if isinstance(p.node, Other) and isinstance(p.default, int) and not isinstance(p.default, bool)}

    def input_leaves(self) -> list[Leaf]:
        return [leaf for p in self.params for leaf in leaves(p.node)]

    def output_leaves(self) -> list[Leaf]:
        return leaves(self.returns)

    def invariants_for(self, path: str) -> list[Invariant]:
        return [inv for inv in self.invariants if inv.path == path]


def _load() -> None:
    for module in CONTRACT_MODULES:
        importlib.import_module(module)


def contract_names() -> list[str]:
    """Every contract's component name, in pillar order (CONTRACT_MODULES), then definition order.

    The registry fills in import order, which depends on who imported what first: sort it.
    """
    _load()
    rank = {m: i for i, m in enumerate(CONTRACT_MODULES)}
    ordered = sorted(_REGISTRY.values(), key=lambda cls: rank.get(cls.__module__, len(rank)))  # stable
    return [cls.__name__ for cls in ordered]


def component_contract(name: str) -> type[Contract]:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ContractNotFound(f"no contract named {name!r}; known: {', '.join(contract_names())}") from None


_CACHE: dict[tuple[str, str], MethodContract] = {}


def method_contract(component: str, method: str) -> MethodContract:
    key = (component, method)
    if key not in _CACHE:
        cls = component_contract(component)
        _CACHE[key] = _parse_method(cls, method)
    return _CACHE[key]


def methods_of(component: str) -> list[MethodContract]:
    cls = component_contract(component)
    names = [n for n, v in vars(cls).items() if inspect.isfunction(v) and not n.startswith("_")]
    return [method_contract(component, n) for n in names]


def all_methods() -> list[MethodContract]:
    return [m for name in contract_names() for m in methods_of(name)]


def resolve(ref: str) -> MethodContract:
    """`"DPGMMPrior.forward"` (or just `"DPGMMPrior"` for its single method)."""
    component, _, method = ref.partition(".")
    if method:
        return method_contract(component, method)
    methods = methods_of(component)
    if len(methods) != 1:
        raise ContractNotFound(
            f"{component} has several methods; name one: {', '.join(m.name for m in methods)}")
    return methods[0]


def _parse_method(cls: type[Contract], method: str) -> MethodContract:
    fn = getattr(cls, method)
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    params = []
    for pname, p in list(sig.parameters.items())[1:]:  # skip self
        hint = hints.get(pname, Any)
        has_default = p.default is not inspect.Parameter.empty
        node = parse(hint, pname, optional=has_default and p.default is None, nested_paths=True)
        params.append(Param(pname, node, has_default, p.default))
    returns = parse(hints.get("return", Any), "return")
    return MethodContract(
        component=cls.__name__,
        method=method,
        params=tuple(params),
        returns=returns,
        invariants=tuple(getattr(fn, "__aimespec_invariants__", ())),
        free_dims=dict(cls.free_dims),
        pillar=cls.pillar,
        doc=inspect.getdoc(fn) or "",
    )
