"""`aimespec.symbol(...)`: a user's own dimension symbol, bound to a field of their config.

    class RewardConfig(aimespec.AimeConfig):
        n_bins: int = 51

    aimespec.symbol("n_bins", meaning="Reward bins")                 # reads cfg.n_bins
    aimespec.symbol("n_edges", "n_bins + 1", meaning="Bin edges")      # an expression of fields

A declared symbol is checked like `D`: every tensor axis written with it must equal the
config's value, even when all the tensors of a call agree with each other.
"""

import sys

from aimespec.core.config import AimeConfig
from aimespec.core.dims import dim_names, evaluate
from aimespec.core.errors import ContractError, UsageError
from aimespec.core.symbols import Kind, Symbol, add_user_symbol, lookup, user_symbol

SEED_NAME = "{name!r} is one of aimespec's own symbols ({source}): give your size another name"
BAD_NAME = "symbol names are Python identifiers such as n_bins, got {name!r}"
BAD_SOURCE = ("symbol {name!r}: {source!r} is not a config field or an expression of fields "
              "(+, -, *, // and integers), e.g. \"n_bins\" or \"2 * n_bins + 1\"")
BAD_KIND = "symbol {name!r}: kind {kind!r} is none of {kinds}"
TAKEN = "symbol {name!r} is already declared as {old!r} (in {origin}): give the new size another name"
MISSING = ("{where}uses the symbol {name!r}, which reads the config field {field!r}, but {config} has no such "
           "field: add it to your AimeConfig subclass (class MyConfig(aimespec.AimeConfig): {field}: int = ...)")


def symbol(name: str, source: str | None = None, *, meaning: str = "", description: str = "",
           kind: str = "width") -> Symbol:
    """Declare the dimension symbol `name`, bound to the config field `source` (default: `name`).

    `source` may be an expression of config fields (`"2 * n_bins + 1"`); `kind` says what the
    axis measures (`width`, `count`, `spatial`, ...: `aimespec.core.symbols.Kind`). Returns the
    symbol. Declaring the same symbol again the same way is harmless; another meaning is an error.
    """
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ContractError(BAD_NAME.format(name=name))
    seed = lookup(name)
    if seed is not None and not seed.origin:
        raise ContractError(SEED_NAME.format(name=name, source=seed.source))
    source = name if source is None else source
    fields = _fields_of(name, source)
    try:
        axis = Kind(kind)
    except ValueError:
        raise ContractError(BAD_KIND.format(name=name, kind=kind, kinds=", ".join(k.value for k in Kind))) from None
    origin = sys._getframe(1).f_globals.get("__name__", "")
    old = user_symbol(name)
    if old is not None and old.source != source:
        raise ContractError(TAKEN.format(name=name, old=old.source, origin=old.origin or "an earlier module"))
    sym = Symbol(name, meaning or name, source, _reader(source, fields), axis, seed=False,
                 description=description or meaning, origin=origin, fields=fields)
    add_user_symbol(sym, origin)
    return user_symbol(name) or sym


def _fields_of(name: str, source: str) -> tuple[str, ...]:
    if not isinstance(source, str) or not source.strip():
        raise ContractError(BAD_SOURCE.format(name=name, source=source))
    try:
        names = dim_names(source.replace(" ", ""))
        evaluate(source.replace(" ", ""), dict.fromkeys(names, 1))  # only + - * // and integers
        if not names:
            raise ValueError(source)
    except (SyntaxError, ValueError, ZeroDivisionError):
        raise ContractError(BAD_SOURCE.format(name=name, source=source)) from None
    return names


def _reader(source: str, fields: tuple[str, ...]):
    expr = source.replace(" ", "")

    def value(cfg: AimeConfig) -> int:
        result = evaluate(expr, {f: getattr(cfg, f) for f in fields})
        return int(result) if result is not None else 0

    return value


def check_fields(names: set[str] | frozenset[str], cfg: AimeConfig, where: str = "") -> None:
    """Raise a UsageError when a user symbol among `names` reads a field `cfg` lacks."""
    for name in sorted(names):
        sym = lookup(name)
        if sym is None or sym.available(cfg):
            continue
        field = next(f for f in sym.fields if not hasattr(cfg, f))
        raise UsageError(MISSING.format(where=where, name=name, field=field, config=type(cfg).__name__))

