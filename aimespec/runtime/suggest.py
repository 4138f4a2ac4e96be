"""Which contract a class that implements none probably means: by its name, or by its signature.

`DPGMMPiror`, `MySlotAttention` or `LstmLayer` read like a contract's name; a class whose
`extract_context(self, video)` has the parameters of exactly one contract method reads like
that contract. Either way the class is not checked until it says so; the hint says how.
"""

import difflib
import inspect
from dataclasses import dataclass

from aimespec.core.contract import contract_names, is_contract_class, methods_of

HINT = '{cls} looks like the contract {contract} ({why}): decorate it with @aimespec.implements("{contract}")'
LIBRARIES = frozenset({"torch", "builtins", "typing", "collections"})  # their classes mean no contract
GENERIC = frozenset({"x", "input", "inputs", "data"})  # argument names that point at no contract
NAME_RATIO = 0.75  # difflib ratio of the lower-cased names
MIN_CONTAINED = 6  # a contract name inside a class name (PatchDiscriminator) counts from this length


@dataclass(frozen=True)
class Suggestion:
    cls: type
    contract: str
    why: str  # "its name" | "its signature"

    @property
    def text(self) -> str:
        return HINT.format(cls=self.cls.__name__, contract=self.contract, why=self.why)

    def to_json(self) -> dict[str, str]:
        return {"class": self.cls.__name__, "contract": self.contract, "why": self.why, "hint": self.text}


def suggest(cls: type) -> Suggestion | None:
    """The contract `cls` probably means, or None (contract classes and builtins never get one)."""
    if not inspect.isclass(cls) or is_contract_class(cls) or cls.__module__.split(".")[0] in LIBRARIES:
        return None
    by_name = _by_name(cls.__name__)
    if by_name is not None:
        return Suggestion(cls, by_name, "its name")
    by_signature = _by_signature(cls)
    return Suggestion(cls, by_signature, "its signature") if by_signature else None


def suggestions(classes: list[type]) -> list[Suggestion]:
    found = (suggest(c) for c in dict.fromkeys(classes))
    return [s for s in found if s is not None]


def suggestion_text(classes: list[type]) -> str:
    """The hints for `classes`, joined into one clause ("" when none is close)."""
    return "; ".join(s.text for s in suggestions(classes))


def _by_name(name: str) -> str | None:
    lowered = name.lower()
    best, score = None, 0.0
    for contract in contract_names():
        target = contract.lower()
        ratio = difflib.SequenceMatcher(None, lowered, target).ratio()
        if len(target) >= MIN_CONTAINED and target in lowered:
            ratio = max(ratio, 0.9)
        if ratio > score:
            best, score = contract, ratio
    return best if score >= NAME_RATIO else None


def _required(fn: object) -> tuple[str, ...] | None:
    try:
        params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def _by_signature(cls: type) -> str | None:
    """The one contract whose methods `cls` all has, taking as many arguments.

    A distinctive method name (`extract_context`, `balance`, `encode` + `decode`) suffices
    with the same arity; a bare `forward` must also name its arguments as the contract does,
    and a single generic one (`x`, `input`) says nothing.
    """
    hits = []
    for contract in contract_names():
        methods = methods_of(contract)
        if methods and all(_fits(cls, mc.method, tuple(p.name for p in mc.params if not p.has_default))
                           for mc in methods):
            hits.append(contract)
    return hits[0] if len(hits) == 1 else None


def _fits(cls: type, method: str, want: tuple[str, ...]) -> bool:
    fn = inspect.getattr_static(cls, method, None)
    got = _required(fn) if inspect.isfunction(fn) else None
    if got is None or len(got) != len(want) + 1:
        return False
    if method != "forward":
        return True
    return got[1:] == want and not (len(want) == 1 and want[0] in GENERIC)
