"""The number algebra behind `--explain`: every size written soundly in the config's symbols.

A decomposition is only ever built the way sizes really arise in a model (SPEC's soundness
rule), from the symbol table's kinds:

- a *product* of axes one tensor flattens together: at most one batch, time, count and
  width/channel axis each, and space as one axis or one grid's two axes (`H*W`, `H_t*W_t`,
  never `H*H_t`), times a small integer factor (`2*K*D`: means and log-variances);
- a *sum* only of feature widths the model concatenates (`hidden_dim + context_dim`,
  `D + context_dim + A`, `C + context_dim`, or part of one: a forgotten input);
- `K-1` (the sticks), and the encoder's strides (`H/2`, ..., the token stride is `H_t`).

Nothing else: never a sum of a batch, time or spatial size with anything. A number that has
no such reading has none (the explanation then says it is no size of this config). Readings
are ranked by cost (how many parts, how rare) less a bonus for fitting the role the message
gives the number (a view's first axis is batch-like, a Linear's in_features is a width).
"""

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from aimespec.core.config import AimeConfig
from aimespec.core.symbols import Kind, in_written_order

# How the algebra reads each kind of the symbol table (a code book counts entries).
_READ_AS: dict[Kind, str] = {Kind.CODEBOOK: "count"}

# The feature widths the model concatenates (SPEC's soundness rule): a sum is one of these
# or part of one (two or more of its widths: an input forgotten or added twice is a real bug).
CONCATENATED: tuple[tuple[str, ...], ...] = (
    ("hidden_dim", "context_dim"),  # the prior's and the attention schema's input h_t || c_t
    ("D", "context_dim", "A"),  # the LSTM's input z_t || c_t || a_t
    ("C", "context_dim"),  # an image with the context broadcast over it
)
MAP_CHANNELS = frozenset({"C", "attention_dim", "code_dim"})  # the widths a spatial map has as channels
FACTORS = (2,)  # the small integer factor a product may carry (2*K*D: means and log-variances)
_PARTIAL_COST = 0.6  # a sum that is part of a concatenation (a forgotten width) is less likely
_LONE_SPACE_COST = 0.7  # one spatial axis flattened with others (`B*attention_dim*H_att`)
_FACTOR_COST = 1.5
MAX_SIZE = 10**12  # larger numbers are no tensor size: not decomposed (a huge number stays cheap)
# role -> the kinds of atom that fit it
_ROLE_KINDS = {"features": {"width", "channel"}, "out": {"width", "count"}, "spatial": {"spatial"},
               "time": {"time"}, "channel": {"channel", "width"}, "count": {"count"}}


def read_kind(kind: Kind) -> str:
    """The algebra's kind of a symbol kind: batch | time | count | width | channel | spatial."""
    return _READ_AS.get(kind, kind.value)


@dataclass(frozen=True)
class _Atom:
    name: str  # as written: "hidden_dim", "K-1", "H/8"
    value: int
    kind: str  # batch | time | count | width | channel | spatial
    cost: float  # the symbol's rarity; more for derived sizes
    shown: str  # its value as written in a decomposition
    uses: frozenset[str]  # the symbols it is made of (never repeated within one expression)
    order: int  # position in a product (batch first, then time, counts, widths, space)
    grouped: bool = False  # needs parentheses inside a product ("(K-1)")
    grid: str = ""  # spatial atoms: the grid it is an axis of ("H", "H_att", "H_t", "H/2")
    axis: str = ""  # "h" | "w" | "hw" (a flattened grid, N)


def _atoms(cfg: AimeConfig, v: dict[str, int]) -> list[_Atom]:
    atoms: list[_Atom] = []
    grids = {"H": ("H", "h"), "W": ("H", "w"), "H_att": ("H_att", "h"), "W_att": ("H_att", "w"),
             "H_t": ("H_t", "h"), "W_t": ("H_t", "w"), "N": ("H_att", "hw")}
    for s in in_written_order():
        if v.get(s.name, 0) >= 1:
            grid, axis = grids.get(s.name, ("", ""))
            atoms.append(_Atom(s.name, v[s.name], read_kind(s.kind), s.rarity, str(v[s.name]), frozenset(s.factors),
                               s.written, grid=grid, axis=axis))
    order = {a.name: a.order for a in atoms}
    if v["K"] > 2:
        atoms.append(_Atom("K-1", v["K"] - 1, "count", 0.3, f"{v['K']}-1", frozenset({"K"}), order["K"], grouped=True))
    H = v["H"]
    for k in range(1, len(cfg.vae_channels) + 1):  # the encoder's / decoder's feature maps H / 2^k
        s = 2**k
        if H % s == 0 and H // s > 1 and H // s != v["H_t"]:
            for name, axis, extra in (("H", "h", 0.0), ("W", "w", 0.05)):
                atoms.append(_Atom(f"{name}/{s}", H // s, "spatial", 0.5 + extra, f"{H}/{s}", frozenset({name}),
                                   order[name], grouped=True, grid=f"H/{s}", axis=axis))
    return atoms


@dataclass(frozen=True)
class _Expr:
    terms: tuple[tuple[int, tuple[_Atom, ...]], ...]  # a sum of (factor, product of atoms)
    extra: float = 0.0  # cost beyond the parts (a partial concatenation, a lone spatial axis)

    @property
    def atoms(self) -> list[_Atom]:
        return [a for _, atoms in self.terms for a in atoms]

    def _write(self, what: str) -> str:
        def term(f: int, atoms: tuple[_Atom, ...]) -> str:
            parts = [str(f)] if f > 1 else []
            many = len(atoms) + len(parts) > 1
            parts += [f"({getattr(a, what)})" if a.grouped and many else getattr(a, what) for a in atoms]
            return "*".join(parts)

        return " + ".join(term(f, atoms) for f, atoms in self.terms)

    @property
    def text(self) -> str:
        return self._write("name")

    def entry(self) -> str:
        shown, text = self._write("shown"), self.text
        return text if shown.isdigit() else f"{text} = {shown}"

    def cost(self) -> float:
        atoms = self.atoms
        factor = max(f for f, _ in self.terms)
        return (len(atoms) + sum(a.cost for a in atoms) + self.extra
                + (0 if factor == 1 else _FACTOR_COST if factor == 2 else _FACTOR_COST + 1))

    def bonus(self, role: str, prefer: frozenset[str]) -> float:
        atoms, kinds = self.atoms, {a.kind for a in self.atoms}
        bonus = 0.75 * sum(a.name in prefer for a in atoms)
        product = len(self.terms) == 1
        if role == "batch" and product:
            bonus += (1.0 if kinds & {"batch"} else 0) + 0.3 * (not kinds & {"width", "channel"})
        elif role == "numel" and product and len(atoms) > 1:
            bonus += 0.5 + 0.5 * (not kinds & {"width", "channel"}) + 0.75 * ("batch" in kinds)
        elif role in ("features", "out") and not product:
            bonus += 1.0  # a concatenation is a width
        elif role in _ROLE_KINDS:
            bonus += sum(a.kind in _ROLE_KINDS[role] for a in atoms) / len(atoms)
        return bonus


def _sound_product(atoms: tuple[_Atom, ...], factor: int = 1) -> float | None:
    """The extra cost of a product of these atoms, or None when it is no flattening of one tensor.

    A flattening either starts at the batch axis (`B*T`, `B*K_slots`, `B*attention_dim*H_att`:
    the leading axes before a Linear's last one) or gathers trailing axes (`K*D`, `C*H*W`,
    `T_enc*H_t*W_t`). One spatial axis alone only closes a leading run over a width; time
    without batch only precedes a grid; a width beside space is a map's channels. A grid's two
    axes count as one part, and a product has at most three parts (SPEC: up to three symbols or
    derived sizes); a factor goes with two, or three from the batch axis on (`2*B*K*D`), and
    never with space.
    """
    kinds = [("width" if a.kind == "channel" else a.kind) for a in atoms]
    if any(kinds.count(k) > 1 for k in _SLOTS):
        return None
    space = [a for a in atoms if a.kind == "spatial"]
    if len(space) > 2 or (len(space) == 2 and (space[0].grid != space[1].grid
                                               or {space[0].axis, space[1].axis} != {"h", "w"})):
        return None
    uses = [u for a in atoms for u in a.uses]
    if len(uses) != len(set(uses)):
        return None
    parts = len(atoms) - (len(space) == 2)
    lone = len(space) == 1 and space[0].axis != "hw" and len(atoms) > 1
    grid = len(space) == 2 or (len(space) == 1 and space[0].axis == "hw")
    if parts > 3 or (factor > 1 and (lone or (parts > 2 and "batch" not in kinds))):
        return None
    if lone and not ("batch" in kinds and "width" in kinds):
        return None
    if space and any(k == "width" and a.name not in MAP_CHANNELS for k, a in zip(kinds, atoms, strict=True)):
        return None  # a width beside space is a map's channels: C, attention_dim, code_dim (never D*H*W)
    if "time" in kinds and "batch" not in kinds and (not grid or len(atoms) - len(space) > 1):
        return None  # a run without the batch that starts at time is [T, h, w] (T_enc*H_t*W_t), nothing more
    if factor > 1 and space:
        return None  # a factor multiplies features (2*K*D, 2*context_dim), never space
    return _LONE_SPACE_COST if lone else 0.0


_SLOTS = ("batch", "time", "count", "width")  # a product takes at most one atom of each, then space


def _options(atoms: list[_Atom]) -> list[list[tuple[_Atom, ...]]]:
    """Per slot of a product, the atoms (or spatial pairs) it may take; value-1 atoms never multiply."""
    multi = [a for a in atoms if a.value > 1]
    slots: list[list[tuple[_Atom, ...]]] = [
        [(a,) for a in multi if ("width" if a.kind == "channel" else a.kind) == kind] for kind in _SLOTS]
    space = [a for a in multi if a.kind == "spatial"]
    pairs = [(h, w) for h in space for w in space if h.grid == w.grid and (h.axis, w.axis) == ("h", "w")]
    slots.append([(a,) for a in space] + pairs)
    return slots


def _products(slots: list[list[tuple[_Atom, ...]]], n: int) -> list[tuple[_Atom, ...]]:
    """Every product of at most one option per slot that makes n."""
    out: list[tuple[_Atom, ...]] = []

    def search(i: int, rest: int, chosen: tuple[_Atom, ...]) -> None:
        if rest == 1 and len(chosen) > 1:
            out.append(chosen)
        if i == len(slots) or rest == 1:
            return
        search(i + 1, rest, chosen)
        for option in slots[i]:
            value = _prod(a.value for a in option)
            if rest % value == 0:
                search(i + 1, rest // value, chosen + option)

    search(0, n, ())
    return out


def _generate(atoms: list[_Atom], slots: list[list[tuple[_Atom, ...]]], n: int) -> list[_Expr]:
    found: list[_Expr] = [_Expr(((1, (a,)),)) for a in atoms if a.value == n]
    for f in (1, *FACTORS):
        if n % f or n // f < 2:
            continue
        if f > 1:
            found += [_Expr(((f, (a,)),)) for a in atoms if a.value == n // f and a.value > 1]
        for combo in _products(slots, n // f):
            extra = _sound_product(combo, f)
            if extra is not None:
                found.append(_Expr(((f, combo),), extra))
    named = {a.name: a for a in atoms}
    sums: set[tuple[str, ...]] = set()
    for group in CONCATENATED:
        for size in range(2, len(group) + 1):
            for part in itertools.combinations(group, size):
                if part in sums or not all(p in named for p in part):
                    continue
                sums.add(part)
                if sum(named[p].value for p in part) == n:
                    # a concatenation the model makes is one width: cheaper than its parts
                    extra = (0.0 if part == group else _PARTIAL_COST) - (size - 1)
                    found.append(_Expr(tuple((1, (named[p],)) for p in part), extra))
    return found


def _prod(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


class Algebra:
    """Decomposes sizes into the config's symbols, soundly, ranked by plausibility and by the roles observed."""

    def __init__(self, cfg: AimeConfig, values: dict[str, int]) -> None:
        self.atoms = _atoms(cfg, values)
        self._slots = _options(self.atoms)
        self._cache: dict[int, list[_Expr]] = {}
        self.roles: dict[int, list[tuple[str, frozenset[str]]]] = {}
        self.extra: frozenset[str] = frozenset()
        self.pins: dict[int, str] = {}
        self.own: dict[int, list[str]] = {}  # readings the message itself prints (`b*t = 8*5`)
        self.written: dict[int, str] = {}  # numbers the failing code line writes as literals: their labels

    def observe(self, n: int, role: str, prefer: frozenset[str] = frozenset()) -> None:
        self.roles.setdefault(n, [])
        if (role, prefer) not in self.roles[n]:
            self.roles[n].append((role, prefer))

    def observed(self) -> list[int]:
        return list(self.roles)

    def state(self, n: int, reading: str) -> None:
        """A reading the message itself gives (einops' `{'b': 8, 't': 5}` for 40): listed first."""
        self.own.setdefault(n, [])
        if reading not in self.own[n]:
            self.own[n].append(reading)

    def prefer(self, names: frozenset[str], pins: dict[int, str] | None = None) -> None:
        """Read numbers in these symbols from now on; a pinned number's named expression comes first."""
        self.extra = names
        self.pins = dict(pins or {})

    def expressions(self, n: int) -> list[_Expr]:
        if n not in self._cache:
            self._cache[n] = _generate(self.atoms, self._slots, n) if 0 < n <= MAX_SIZE else []
        return self._cache[n]

    def ranked(self, n: int, role: str | None = None) -> list[_Expr]:
        roles = [(role, frozenset())] if role else self.roles.get(n, [("any", frozenset())])
        pinned = self.pins.get(n)

        def key(e: _Expr) -> tuple[bool, float, int, str]:
            best = max(e.bonus(r, p | self.extra) for r, p in roles)
            return (e.text != pinned, round(e.cost() - best, 6), len(e.text), e.text)

        return sorted(self.expressions(n), key=key)

    def decompose(self, n: int) -> list[str]:
        return self.own.get(n, []) + [e.entry() for e in self.ranked(n)]

    def best_name(self, n: int, role: str = "any") -> str:
        if n in self.own:
            return self.own[n][0].split(" = ")[0]
        ranked = self.ranked(n, None if role == "any" else role)
        return ranked[0].text if ranked else str(n)


@dataclass(frozen=True)
class Reading:
    """One reading of a number in the config's symbols, and what the same expression is at another config."""

    text: str  # "D + context_dim + A"
    shown: str  # "36 + 256 + 6"
    symbols: frozenset[str]  # the symbols it is made of
    kinds: frozenset[str]  # batch | time | width | spatial | count
    expr: _Expr

    def value_in(self, algebra: "Algebra") -> tuple[int, str] | None:
        """(value, shown) of the same expression in another algebra (another config), None when it cannot say."""
        by_name = {a.name: a for a in algebra.atoms}
        total, shown = 0, []
        for f, atoms in self.expr.terms:
            if any(a.name not in by_name for a in atoms):
                return None
            other = _Expr(((f, tuple(by_name[a.name] for a in atoms)),))
            value = f
            for a in atoms:
                value *= by_name[a.name].value
            total += value
            shown.append(other._write("shown"))
        return total, " + ".join(shown)


def readings(algebra: Algebra, n: int) -> list[Reading]:
    """Every reading of `n`, most plausible first, with its symbols and kinds."""
    out = []
    for e in algebra.ranked(n):
        atoms = e.atoms
        symbols = frozenset(u for a in atoms for u in a.uses)
        out.append(Reading(e.text, e._write("shown"), symbols, frozenset(a.kind for a in atoms), e))
    return out


__all__ = ["CONCATENATED", "Algebra", "Reading", "read_kind", "readings"]
