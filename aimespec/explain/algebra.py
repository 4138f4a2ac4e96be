"""The number algebra behind `--explain`: every size as sums and products of the config's symbols.

`768 = hidden_dim + context_dim = 512 + 256`, `128 = B*T`, `1080 = 2*K*D`: up to three symbols or
derived sizes, small integer factors allowed, ranked by plausibility and by the role a message
gives the number.
"""

from dataclasses import dataclass

from aimespec.core.config import AimeConfig
from aimespec.core.symbols import Kind, in_written_order


# --- the number algebra: sums and products of up to three symbols or derived sizes ------------------
@dataclass(frozen=True)
class _Atom:
    name: str  # as written: "hidden_dim", "H_t*W_t", "K-1", "H/8"
    value: int
    kind: str  # batch | time | width | spatial | count
    cost: float  # 0 for the seed's own symbols; more for derived sizes and the W-aliases of H
    shown: str  # its value as written in a decomposition ("8*8" for H_t*W_t)
    uses: frozenset[str]  # the symbols it is made of (never repeated within one expression)
    order: int  # position in a product (batch first, then counts, widths, space)
    grouped: bool = False  # needs parentheses inside a product ("(K-1)")


# How the algebra reads each kind of the symbol table: image channels as a width, a code book as a count.
_READ_AS: dict[Kind, str] = {Kind.CHANNEL: "width", Kind.CODEBOOK: "count"}


def read_kind(kind: Kind) -> str:
    """The algebra's kind of a symbol kind: batch | time | width | spatial | count."""
    return _READ_AS.get(kind, kind.value)


# sums read in the seed's order: hidden_dim + context_dim, D + context_dim + A
_SUM_ORDER = {"hidden_dim": 0, "D": 1, "context_dim": 2, "A": 3}
_ROLE_KINDS = {"features": {"width"}, "out": {"width", "count"}, "spatial": {"spatial"}, "time": {"time"}}


def _atoms(cfg: AimeConfig, v: dict[str, int]) -> list[_Atom]:
    atoms = [_Atom(s.name, v[s.name], read_kind(s.kind), s.rarity, str(v[s.name]), frozenset(s.factors), s.written)
             for s in in_written_order() if v.get(s.name, 0) >= 1]
    order = {a.name: a.order for a in atoms}
    K, D, Ht, H = v["K"], v["D"], v["H_t"], v["H"]
    atoms += [
        _Atom("2*K*D", 2 * K * D, "width", 0.5, f"2*{K}*{D}", frozenset({"K", "D"}), order["K"]),
        _Atom("K-1", K - 1, "count", 0.3, f"{K}-1", frozenset({"K"}), order["K"], grouped=True),
        _Atom("H_t*W_t", Ht * v["W_t"], "spatial", 0.4, f"{Ht}*{v['W_t']}", frozenset({"H_t", "W_t"}), order["H_t"]),
    ]
    for k in range(1, len(cfg.vae_channels) + 1):  # the VAE's feature-map sizes H / 2^k
        if H % 2**k == 0 and H // 2**k > 1:
            atoms.append(_Atom(f"H/{2**k}", H // 2**k, "spatial", 0.5, f"{H}/{2**k}", frozenset({"H"}),
                               order["H"], grouped=True))
    return [a for a in atoms if a.value >= 1]


@dataclass(frozen=True)
class _Expr:
    terms: tuple[tuple[int, tuple[_Atom, ...]], ...]  # a sum of (factor, product of atoms)

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
        cost = len(atoms) + sum(a.cost for a in atoms) + (1.5 if any(f > 1 for f, _ in self.terms) else 0)
        if len(self.terms) > 1:
            kinds = {atoms_[0].kind if len(atoms_) == 1 else "product" for _, atoms_ in self.terms}
            cost += 0.8 * (len(kinds) > 1) + 0.6 * sum(len(t) > 1 for _, t in self.terms)
        else:
            cost += 0.8 * (sum(a.kind == "width" for a in atoms) > 1)
        return cost

    def bonus(self, role: str, prefer: frozenset[str]) -> float:
        atoms, names = self.atoms, {a.name for a in self.atoms}
        bonus = 0.75 * sum(a.name in prefer for a in atoms)
        if role == "batch" and len(self.terms) == 1:
            bonus += (1.0 if "B" in names else 0) + 0.3 * all(a.kind != "width" for a in atoms)
        elif role == "numel" and len(self.terms) == 1 and len(atoms) > 1:
            bonus += 0.5 + 0.5 * all(a.kind != "width" for a in atoms)
        elif role in _ROLE_KINDS:
            bonus += sum(a.kind in _ROLE_KINDS[role] for a in atoms) / len(atoms)
        return bonus


def _product(f: int, atoms: list[_Atom]) -> tuple[int, tuple[_Atom, ...]] | None:
    uses = [u for a in atoms for u in a.uses]
    if len(uses) != len(set(uses)):
        return None
    return f, tuple(sorted(atoms, key=lambda a: a.order))


class Algebra:
    """Decomposes sizes into the config's symbols, ranked by plausibility and by the roles observed."""

    def __init__(self, cfg: AimeConfig, values: dict[str, int]) -> None:
        self.atoms = _atoms(cfg, values)
        self.multi = [a for a in self.atoms if a.value > 1]
        self.by_value: dict[int, list[_Atom]] = {}
        for a in self.multi:
            self.by_value.setdefault(a.value, []).append(a)
        self.pairs: dict[int, list[tuple[_Atom, _Atom]]] = {}
        for i, a in enumerate(self.multi):
            for b in self.multi[i + 1:]:
                if not a.uses & b.uses:
                    self.pairs.setdefault(a.value * b.value, []).append((a, b))
        self.roles: dict[int, list[tuple[str, frozenset[str]]]] = {}
        self.extra: frozenset[str] = frozenset()
        self.pins: dict[int, str] = {}
        self._cache: dict[int, list[_Expr]] = {}

    def observe(self, n: int, role: str, prefer: frozenset[str] = frozenset()) -> None:
        self.roles.setdefault(n, [])
        if (role, prefer) not in self.roles[n]:
            self.roles[n].append((role, prefer))

    def observed(self) -> list[int]:
        return list(self.roles)

    def prefer(self, names: frozenset[str], pins: dict[int, str] | None = None) -> None:
        """Read numbers in these symbols from now on; a pinned number's named expression comes first."""
        self.extra = names
        self.pins = dict(pins or {})

    def expressions(self, n: int) -> list[_Expr]:
        if n not in self._cache:
            self._cache[n] = self._generate(n)
        return self._cache[n]

    def _generate(self, n: int) -> list[_Expr]:
        terms: list[tuple[tuple[int, tuple[_Atom, ...]], ...]] = []
        for f in (1, 2, 3, 4):
            if n % f:
                continue
            m = n // f
            terms += [((f, (a,)),) for a in (self.atoms if f == 1 else self.multi) if a.value == m]
            for a in self.multi:  # products of two and three
                if m % a.value == 0:
                    for b in self.by_value.get(m // a.value, []):
                        if a.order < b.order or (a.order == b.order and a.name < b.name):
                            terms.append(((f, (a, b)),))
                    for b, c in self.pairs.get(m // a.value, []) if f == 1 else ():
                        trio = [a, b, c]
                        if a.name < min(b.name, c.name):
                            terms.append(((f, tuple(trio)),))
        for a in self.multi:  # sums
            rest = n - a.value
            for b in self.by_value.get(rest, []):
                if a.name < b.name:
                    terms.append(((1, (a,)), (1, (b,))))
            for b, c in self.pairs.get(rest, []):
                terms.append(((1, (a,)), (1, (b, c))))
            for b in self.multi:
                if a.name < b.name and rest - b.value > 1:
                    for c in self.by_value.get(rest - b.value, []):
                        if b.name < c.name:
                            terms.append(((1, (a,)), (1, (b,)), (1, (c,))))
        found: dict[str, _Expr] = {}
        for t in terms:
            built = [_product(f, list(atoms)) for f, atoms in t]
            if any(p is None for p in built):
                continue
            uses = [u for p in built if p for a in p[1] for u in a.uses]
            if len(uses) != len(set(uses)):
                continue
            ordered = sorted((p for p in built if p), key=lambda p: min(
                _SUM_ORDER.get(a.name, 10 + a.order) for a in p[1]))
            e = _Expr(tuple(ordered))
            if e.text not in found or e.cost() < found[e.text].cost():
                found[e.text] = e
        return list(found.values())

    def ranked(self, n: int, role: str | None = None) -> list[_Expr]:
        roles = [(role, frozenset())] if role else self.roles.get(n, [("any", frozenset())])

        pinned = self.pins.get(n)

        def key(e: _Expr) -> tuple[bool, float, int, str]:
            best = max(e.bonus(r, p | self.extra) for r, p in roles)
            return (e.text != pinned, round(e.cost() - best, 6), len(e.text), e.text)

        return sorted(self.expressions(n), key=key)

    def decompose(self, n: int) -> list[str]:
        return [e.entry() for e in self.ranked(n)]

    def best_name(self, n: int, role: str = "any") -> str:
        ranked = self.ranked(n, None if role == "any" else role)
        return ranked[0].text if ranked else str(n)
