"""Contracts: a component's signature written once, read by every engine.

A contract is a class deriving from `Contract` whose methods carry jaxtyping annotations
and, with `@invariants(...)`, value invariants. `MethodContract` is the parsed form that
the validator, the input generator, `spec`, `check` and `trace` all read.
"""

import difflib
import functools
import importlib
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aimespec.core.dims import Leaf, Node, Other, dim_names, evaluate, leaves, parse
from aimespec.core.errors import ContractError, ContractNotFound
from aimespec.core.invariants import Declaration, Invariant
from aimespec.core.paths import USER_MODULE_PREFIX
from aimespec.core.symbols import FREE, all_symbols, known_names

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
_version = 0  # bumped on every change of _REGISTRY
_names: tuple[int, tuple[str, ...]] | None = None  # contract_names() at a _version

REDEFINED = ("a contract named {name!r} already exists (in {where}): to replace it on purpose write "
             "class {cls}(aimespec.Contract, replace=True); to extend it, subclass it under another name "
             "(class My{name}({name}))")
UNKNOWN_SYMBOL = ("{contract}: unknown symbol {symbol!r} in {role} {shape}; {hint} "
                  "(declare a new size with aimespec.symbol(\"{symbol}\", \"<config field>\"), "
                  "or a per-call one in the contract's free_dims)")
CLOSEST = "closest known symbols: {names}"
NOTHING_CLOSE = "no known symbol is close (see `aimespec spec` for the table)"
BAD_DIM = ("{contract}: {role} {tensor} has the dim {dim!r}, which is neither a symbol nor an expression of "
           "symbols (+, -, *, // and integers, written without spaces: \"hidden_dim+context_dim\")")
BAD_INVARIANT = "{contract}: the invariant {inv} names no tensor of the contract (its tensors: {paths})"
BAD_AXIS = "{contract}: the invariant {inv} names the axis {axis!r}, which {tensor} {shape} does not have"


class Contract:
    """Base of every contract class (those in `contracts/` and a user's own): subclasses register by name.

    `free_dims` names the symbols (besides B and T) that are free per call, with the
    value the input generator uses for them. The name registered is the class name, or
    `name=` (`class RewardHeadContract(aimespec.Contract, name="RewardHead")`); taking a
    name that is already registered is an error unless `replace=True` is said.
    """

    free_dims: typing.ClassVar[dict[str, int]] = {}
    pillar: typing.ClassVar[str] = ""
    contract_name: typing.ClassVar[str] = ""

    def __init_subclass__(cls, *, name: str | None = None, replace: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls, name or cls.__name__, replace)


def _register(cls: type[Contract], name: str, replace: bool) -> None:
    """Parse and validate every method now (a typo fails at definition), then take the name."""
    if cls.__module__ not in CONTRACT_MODULES:
        _load()  # the seed's names are taken first, whatever the import order
    cls.contract_name = name
    parsed = {m: _parse_method(cls, m) for m in _method_names(cls)}
    for mc in parsed.values():
        _validate(mc)
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        if _structure(existing) == list(parsed.values()):
            if not _checked_file(existing) or _checked_file(cls):
                return  # the same contract again (a reloaded file, a twin): nothing is redefined
            # else: a module imported for good takes it over from a file `check` loaded (and will forget)
        if not replace:
            raise ContractError(REDEFINED.format(name=name, where=existing.__module__, cls=cls.__name__))
    global _version
    _REGISTRY[name] = cls
    _version += 1
    for key in [k for k in _CACHE if k[0] == name]:
        del _CACHE[key]
    _CACHE.update({(name, m): mc for m, mc in parsed.items()})


def _checked_file(cls: type) -> bool:
    return cls.__module__.startswith(USER_MODULE_PREFIX)


def _method_names(cls: type) -> list[str]:
    """Public methods along the contract MRO, base first (a subclass extends its contract)."""
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        if klass is Contract or not (isinstance(klass, type) and issubclass(klass, Contract)):
            continue
        names.update((n, None) for n, v in vars(klass).items() if inspect.isfunction(v) and not n.startswith("_"))
    return list(names)


def _structure(cls: type[Contract]) -> list["MethodContract"]:
    return [method_contract(cls.contract_name, m) for m in _method_names(cls)]


def forget_contracts(module_prefix: str) -> None:
    """Drop the contracts defined in modules whose name starts with `module_prefix`."""
    global _version
    for name in [n for n, c in _REGISTRY.items() if c.__module__.startswith(module_prefix)]:
        del _REGISTRY[name]
        _version += 1
        for key in [k for k in _CACHE if k[0] == name]:
            del _CACHE[key]


def is_contract_class(obj: Any) -> bool:
    """A contract class (never an implementation, wherever it is defined)."""
    return isinstance(obj, type) and issubclass(obj, Contract)


def contract_module(name: str) -> str:
    """The module that defined the contract `name` (`contracts.prior`, or a user's module)."""
    return component_contract(name).__module__


def is_seed_contract(name: str) -> bool:
    return contract_module(name) in CONTRACT_MODULES


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
        return FREE | frozenset(self.free_dims) | frozenset(p.name for p in self.params if isinstance(p.node, Other))

    def free_symbols(self) -> frozenset[str]:
        """B, T, the contract's free dims and its integer arguments (n_samples)."""
        return self._free

    def default_values(self) -> dict[str, int]:
        """Integer defaults of non-tensor arguments (`n_samples=10`): they bind their symbol."""
        return {p.name: p.default for p in self.params
                if isinstance(p.node, Other) and isinstance(p.default, int) and not isinstance(p.default, bool)}

    @functools.cached_property
    def _symbols(self) -> frozenset[str]:
        return frozenset(n for leaf in self.input_leaves() + self.output_leaves() for d in leaf.dims
                         for n in dim_names(d))

    def symbols(self) -> frozenset[str]:
        """Every symbol name the contract's tensors mention."""
        return self._symbols

    def input_leaves(self) -> list[Leaf]:
        return [leaf for p in self.params for leaf in leaves(p.node)]

    def output_leaves(self) -> list[Leaf]:
        return leaves(self.returns)

    def invariants_for(self, path: str) -> list[Invariant]:
        return [inv for inv in self.invariants if inv.path == path]


def _load() -> None:
    for module in CONTRACT_MODULES:
        if module not in sys.modules:  # what import_module would do, without its cost per call
            importlib.import_module(module)


def contract_names() -> list[str]:
    """Every contract's component name, in pillar order (CONTRACT_MODULES), then definition order.

    The registry fills in import order, which depends on who imported what first: sort it.
    (Computed again only when the registry changed: discovery asks for every class it meets.)
    """
    global _names
    _load()
    if _names is None or _names[0] != _version:
        rank = {m: i for i, m in enumerate(CONTRACT_MODULES)}
        ordered = sorted(_REGISTRY.items(), key=lambda kv: rank.get(kv[1].__module__, len(rank)))  # stable
        _names = (_version, tuple(name for name, _cls in ordered))
    return list(_names[1])


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
    return [method_contract(component, n) for n in _method_names(cls)]


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
        component=cls.contract_name or cls.__name__,
        method=method,
        params=tuple(params),
        returns=returns,
        invariants=tuple(getattr(fn, "__aimespec_invariants__", ())),
        free_dims=dict(cls.free_dims),
        pillar=cls.pillar,
        doc=inspect.getdoc(fn) or "",
    )


def _validate(mc: MethodContract) -> None:
    """Every name in every annotation is a known or declared symbol; every invariant names a tensor."""
    known = known_names() | mc.free_symbols()
    roles = [("the input", leaf) for leaf in mc.input_leaves()] + [("the output", leaf) for leaf in mc.output_leaves()]
    for role, leaf in roles:
        for dim in leaf.dims:
            names = _names_in(mc, role, leaf, dim)
            for symbol in names:
                if symbol not in known:
                    close = closest_symbols(symbol, known)
                    hint = CLOSEST.format(names=", ".join(close)) if close else NOTHING_CLOSE
                    what = role if leaf.path == "return" else f"{role} {leaf.path}"
                    error = ContractError(UNKNOWN_SYMBOL.format(contract=mc.name, symbol=symbol, role=what,
                                                                shape=leaf.symbolic, hint=hint))
                    error.symbol = symbol  # where it is written is found by the loader (the annotation's line)
                    raise error
    by_path = {leaf.path: leaf for _, leaf in roles}
    for inv in mc.invariants:
        if isinstance(inv, Declaration):  # a behaviour (Causal): the tensors it names must exist
            for path in (*getattr(inv, "inputs", ()), *getattr(inv, "outputs", ())):
                if path not in by_path:
                    raise ContractError(BAD_INVARIANT.format(contract=mc.name, inv=inv, paths=", ".join(by_path)))
            continue
        leaf = by_path.get(inv.path)
        if leaf is None:
            raise ContractError(BAD_INVARIANT.format(contract=mc.name, inv=inv, paths=", ".join(by_path) or "none"))
        for axis in getattr(inv, "over", ()):
            if isinstance(axis, str) and axis not in leaf.dims:
                raise ContractError(BAD_AXIS.format(contract=mc.name, inv=inv, axis=axis, tensor=leaf.path,
                                                    shape=leaf.symbolic))


def closest_symbols(typo: str, known: frozenset[str], n: int = 3) -> list[str]:
    """The known symbols nearest to `typo`, by name or by the config field they read (`D (latent_dim)`)."""
    shown = {name: name for name in known}
    for sym in all_symbols():
        if sym.source.isidentifier() and sym.source != sym.name and sym.name in known:
            shown.setdefault(sym.source, f"{sym.name} ({sym.source})")
    close = difflib.get_close_matches(typo, sorted(shown), n=n, cutoff=0.6)
    return list(dict.fromkeys(shown[c] for c in close))


def _names_in(mc: MethodContract, role: str, leaf: Leaf, dim: str) -> tuple[str, ...]:
    bad = ContractError(BAD_DIM.format(contract=mc.name, role=role, tensor=leaf.path, dim=dim))
    try:
        names = dim_names(dim)
        evaluate(dim, dict.fromkeys(names, 1))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError):
        raise bad from None
    return names
