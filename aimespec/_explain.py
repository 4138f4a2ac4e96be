"""`diagnose --explain`: read a PyTorch shape error (or a whole traceback) in the config's symbols.

Three steps. `_parse` finds every shape message it knows in the text and turns it into
evidence: clashes (two sizes that should have agreed, with the role each plays), rank
mismatches and invalid views. `_algebra` writes every number as sums and products of the
config's symbols (`768 = hidden_dim + context_dim = 512 + 256`), ranked by plausibility and by
the role the message gives the number. `_score` then matches the documented errors by those
roles (B*T against B, H_att against a feature-map size, ...), never by the default numbers,
so it works at any config.
"""

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aimespec._config import AimeConfig
from aimespec._documented import documented_error
from aimespec._symbols import symbol_values


@dataclass(frozen=True)
class Match:
    error: int
    title: str
    score: float  # 0..1, higher is more likely
    reason: str = ""  # the evidence, in symbols
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "title": self.title, "score": self.score, "reason": self.reason,
                "fix": self.fix}


@dataclass
class Explanation:
    text: str
    numbers: dict[str, list[str]]  # "768" -> ["hidden_dim + context_dim = 512 + 256", ...], best first
    matches: list[Match]  # best first; empty when no documented error fits
    explanation: str
    findings: list[dict[str, Any]] = field(default_factory=list)  # the messages recognised
    batch: int = 0
    seq_len: int = 0

    def to_json(self) -> dict[str, Any]:
        from aimespec import __version__

        return {"version": __version__, "numbers": self.numbers, "matches": [m.to_json() for m in self.matches],
                "explanation": self.explanation, "findings": self.findings, "batch": self.batch,
                "seq_len": self.seq_len}


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


# (symbol, kind, cost): every symbol of `aimespec._symbols`, in the order products are written
_BASE: tuple[tuple[str, str, float], ...] = (
    ("B", "batch", 0), ("T", "time", 0), ("T_enc", "time", 0.1), ("K", "count", 0), ("K_slots", "count", 0.1),
    ("num_latents", "count", 0.3), ("num_codes", "count", 0.3), ("num_layers", "count", 0.3), ("C", "width", 0.2),
    ("attention_dim", "width", 0.1), ("hidden_dim", "width", 0), ("D", "width", 0), ("context_dim", "width", 0),
    ("A", "width", 0), ("code_dim", "width", 0.3), ("H", "spatial", 0), ("W", "spatial", 0.05),
    ("H_att", "spatial", 0), ("W_att", "spatial", 0.05), ("N", "spatial", 0.1), ("H_t", "spatial", 0),
    ("W_t", "spatial", 0.05),
)
_USES = {"N": frozenset({"H_att", "W_att"})}
# sums read in the seed's order: hidden_dim + context_dim, D + context_dim + A
_SUM_ORDER = {"hidden_dim": 0, "D": 1, "context_dim": 2, "A": 3}
_ROLE_KINDS = {"features": {"width"}, "out": {"width", "count"}, "spatial": {"spatial"}, "time": {"time"}}


def _atoms(cfg: AimeConfig, v: dict[str, int]) -> list[_Atom]:
    atoms = [_Atom(n, v[n], kind, cost, str(v[n]), _USES.get(n, frozenset({n})), i)
             for i, (n, kind, cost) in enumerate(_BASE) if v.get(n, 0) >= 1]
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

# --- evidence: what a message says about which sizes should have agreed ----------------------------
@dataclass(frozen=True)
class Clash:
    expected: int  # the size the code was built for / the other operand has
    got: int  # the size that arrived
    role: str  # batch | features | spatial | time | numel | any
    prefer: frozenset[str] = frozenset()  # symbols the message itself writes the expected size in


@dataclass
class Finding:
    kind: str  # matmul | broadcast | view | cat | rnn | loss | rank | einsum | layernorm | size | contract | jaxtyping
    excerpt: str
    sizes: list[tuple[int, str, frozenset[str]]] = field(default_factory=list)  # (number, role, prefer)
    clashes: list[Clash] = field(default_factory=list)
    rank: tuple[int, int] | None = None  # (expected, got) number of axes
    got_shape: list[int] | None = None
    target: list[int] | None = None  # a view's target
    numel: int | None = None
    symbolic_rank: bool = False  # the seed's "Expected 3D tensor [B, N, D], got 4D [B, C, H, W]"
    bindings: dict[str, int] = field(default_factory=dict)  # B, T as the message states them
    dims: list[str] | None = None  # an annotation's axes, resolved against the config by `resolve`
    own: dict[str, int] = field(default_factory=dict)  # the message's own axis values (jaxtyping)

    def resolve(self, values: dict[str, int]) -> None:
        """Evaluate annotation axes (`B hidden_dim+context_dim`, `B 768`) and record the clashes."""
        if self.dims is None or self.got_shape is None:
            return
        scope = {**values, **self.own}
        _clashes_by_axis(self, [_evaluate(d, scope) for d in self.dims], self.got_shape, self.dims)
        self.dims = None

    def numbers(self) -> Iterator[tuple[int, str, frozenset[str]]]:
        yield from self.sizes

    def add(self, n: int, role: str = "any", prefer: frozenset[str] = frozenset()) -> None:
        self.sizes.append((n, role, prefer))

    def shape(self, shape: list[int], role0: str = "batch") -> None:
        for i, n in enumerate(shape):
            self.add(n, role0 if i == 0 else "spatial" if i >= len(shape) - 2 and len(shape) >= 3 else "any")

    def clash(self, expected: int, got: int, role: str, prefer: frozenset[str] = frozenset()) -> None:
        self.clashes.append(Clash(expected, got, role, prefer))
        self.add(got, role)
        self.add(expected, role, prefer)

    def describe(self, alg: "Algebra") -> str:
        def sym(n: int, role: str = "any") -> str:
            name = alg.best_name(n, role)
            return str(n) if name == str(n) else f"{n} = {name}"

        head = f"[{self.kind}] {self.excerpt.strip()[:160]}"
        if self.kind == "matmul":
            (a, _, _), (b, _, _), (c, _, _), (d, _, _) = self.sizes
            return (f"{head}\n  mat1 [{a}, {b}] = [{alg.best_name(a, 'batch')}, {alg.best_name(b, 'features')}] "
                    f"met a Linear weight [in, out] = [{c}, {d}] = [{alg.best_name(c, 'features')}, "
                    f"{alg.best_name(d, 'out')}]: the layer takes {sym(c, 'features')} inputs but got "
                    f"{sym(b, 'features')}")
        parts = [f"got {sym(c.got, c.role)} where {sym(c.expected, c.role)} was expected" for c in self.clashes]
        if self.target is not None and self.numel is not None:
            names = [alg.best_name(t, _view_role(i, len(self.target))) for i, t in enumerate(self.target)]
            for i in range(1, len(names)):  # [.., H_t, W_t], not [.., H_t, H_t]
                twin = "W" + names[i][1:]
                if names[i] == names[i - 1] and names[i].startswith("H") and twin in {
                        e.text for e in alg.expressions(self.target[i])}:
                    names[i] = twin
            parts.append(f"view to {self.target} = [{', '.join(names)}] needs {math.prod(self.target)} entries, "
                         f"the input has {sym(self.numel, 'numel')}")
        if self.rank is not None:
            shape = f" {self.got_shape}" if self.got_shape else ""
            parts.append(f"{self.rank[1]} axes{shape} where {self.rank[0]} were expected")
        return head + "".join(f"\n  {p}" for p in parts)

    def to_json(self, alg: "Algebra") -> dict[str, Any]:
        return {"kind": self.kind, "excerpt": self.excerpt.strip(),
                "clashes": [{"expected": c.expected, "got": c.got, "role": c.role} for c in self.clashes],
                "rank": list(self.rank) if self.rank else None, "got_shape": self.got_shape,
                "target": self.target, "numel": self.numel}


_INT = r"(\d+)"
_LIST = r"\[([-\d,\s]*)\]"


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def _symbols_in(dim: str) -> frozenset[str]:
    return frozenset(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", dim))


def _evaluate(dim: str, scope: dict[str, int]) -> int | None:
    """The size a jaxtyping axis stands for: `768`, `D=36`, `hidden_dim+context_dim`, `K-1`."""
    dim = dim.lstrip("#_?")
    if "=" in dim:
        dim = dim.split("=", 1)[1]
    names = re.findall(r"[A-Za-z_][A-Za-z_0-9]*", dim)
    if any(n not in scope for n in names):
        return None
    arithmetic = re.sub(r"[A-Za-z_][A-Za-z_0-9]*", lambda m: str(scope[m.group(0)]), dim)
    if not re.fullmatch(r"[\d+\-*/() ]+", arithmetic) or "**" in arithmetic or len(arithmetic) > 64:
        return None
    try:
        value = eval(arithmetic, {"__builtins__": {}}, {})  # digits, + - * / and brackets only (checked above)
    except (SyntaxError, ZeroDivisionError):
        return None
    return int(value) if float(value).is_integer() else None


def _role_of(dim: str) -> str:
    names = _symbols_in(dim)
    if names == {"B"}:
        return "batch"
    if names & {"T", "T_enc"}:
        return "time"
    kinds = {k for n, k, _ in _BASE if n in names}
    return "features" if kinds == {"width"} else "spatial" if kinds == {"spatial"} else "any"


def _clashes_by_axis(f: Finding, expected: list[int | None], got: list[int], dims: list[str] | None = None) -> None:
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        if e is None or e == g or e < 0:
            continue
        dim = dims[i] if dims and i < len(dims) else ""
        role = _role_of(dim) if dim else ("batch" if i == 0 else "any")
        if dim.isdigit() and i == len(got) - 1 and i > 0:  # `B 768`: a trailing fixed width is a feature axis
            role = "features"
        f.clash(e, g, role, _symbols_in(dim) if dim else frozenset())


def _p_matmul(m: re.Match[str]) -> Finding:
    a, b, c, d = (int(x) for x in m.groups())
    f = Finding("matmul", m.group(0))
    f.add(a, "batch")
    f.add(b, "features")
    f.add(c, "features")
    f.add(d, "out")
    f.clashes.append(Clash(c, b, "features"))
    return f


def _p_broadcast(m: re.Match[str]) -> Finding:
    a, b, dim = (int(x) for x in m.groups())
    f = Finding("broadcast", m.group(0))
    f.clash(b, a, "spatial" if dim >= 2 else "batch" if dim == 0 else "any")
    return f


def _view_role(i: int, rank: int) -> str:
    """A view target reads like [B, T, H_t, W_t]: batch first, then time, then space."""
    return "batch" if i == 0 else "time" if i == 1 and rank >= 4 else "spatial" if i >= 2 else "any"


def _p_view(m: re.Match[str]) -> Finding:
    target, numel = _ints(m.group(1)), int(m.group(2))
    f = Finding("view", m.group(0), target=target, numel=numel)
    for i, t in enumerate(target):
        if t > 0:
            f.add(t, _view_role(i, len(target)))
    f.add(numel, "numel")
    return f


def _p_pair(kind: str, role: str, got_first: bool) -> Any:
    def parse(m: re.Match[str]) -> Finding:
        x, y = int(m.group("x")), int(m.group("y"))
        f = Finding(kind, m.group(0))
        got, expected = (x, y) if got_first else (y, x)
        f.clash(expected, got, role)
        return f

    return parse


def _p_hidden(m: re.Match[str]) -> Finding:
    f = Finding("rnn", m.group(0))
    _clashes_by_axis(f, list(_ints(m.group(2))), _ints(m.group(3)), ["num_layers", "B", "hidden_dim"])
    return f


def _p_conv(m: re.Match[str]) -> Finding:
    shape = _ints(m.group(4))
    f = Finding("rank", m.group(0), rank=(int(m.group(2)), len(shape)), got_shape=shape)
    f.shape(shape)
    return f


def _p_einsum_rank(m: re.Match[str]) -> Finding:
    return Finding("einsum", m.group(0), rank=(int(m.group(1)), int(m.group(2))))


def _p_einsum_size(m: re.Match[str]) -> Finding:
    f = Finding("einsum", m.group(0))
    f.clash(int(m.group("prev")), int(m.group("size")), "any")
    return f


def _p_einsum_remap(m: re.Match[str]) -> Finding:
    f = Finding("einsum", m.group(0))
    shapes = [(_ints(a), _ints(b)) for a, b in re.findall(r"\[([\d,\s]*)\]->\[([\d,\s]*)\]", m.group(1))]
    remapped = [b for _, b in shapes]
    for later in remapped[1:]:
        for e, g in zip(remapped[0], later, strict=False):
            if e != g and 1 not in (e, g):
                f.clash(e, g, "any")
    originals = [a for a, _ in shapes]
    if len({len(a) for a in originals}) > 1:
        big = max(originals, key=len)
        f.rank, f.got_shape = (min(len(a) for a in originals), len(big)), big
        f.shape(big)
    return f


def _p_seed_rank(m: re.Match[str]) -> Finding:
    want, got = int(m.group(1)), int(m.group(3))
    f = Finding("rank", m.group(0), rank=(want, got))
    nums = _ints(m.group(4))
    if len(nums) == got:
        f.got_shape = nums
        f.shape(nums)
    else:
        f.symbolic_rank = want == 3 and got == 4
    return f


def _p_layernorm(m: re.Match[str]) -> Finding:
    norm, shape = _ints(m.group(1)), _ints(m.group(3))
    f = Finding("layernorm", m.group(0), got_shape=shape)
    f.shape(shape)
    _clashes_by_axis(f, list(norm), shape[len(shape) - len(norm):], ["attention_dim"] * len(norm))
    return f


def _p_channels(m: re.Match[str]) -> Finding:
    shape = _ints(m.group(1))
    f = Finding("rank", m.group(0), got_shape=shape)
    f.clash(int(m.group(2)), int(m.group(3)), "features")
    return f


def _p_input_size(m: re.Match[str]) -> Finding:
    f = Finding("rnn", m.group(0))
    f.clash(int(m.group(1)), int(m.group(2)), "features")
    return f


def _p_einops(m: re.Match[str]) -> Finding:
    f = Finding("view", m.group(0))
    f.clash(int(m.group(2)), int(m.group(1)), "numel")
    return f


def _p_target_size(m: re.Match[str]) -> Finding:
    target, got = _ints(m.group(1)), _ints(m.group(2))
    f = Finding("loss", m.group(0))
    if len(target) == len(got):
        _clashes_by_axis(f, list(target), got)
    return f


def _p_contract(m: re.Match[str]) -> Finding:
    dims = [d.strip() for d in m.group("sym").split(",")]
    expected = [None if x.strip() == "?" else int(x) for x in m.group("exp").split(",") if x.strip()]
    got = _ints(m.group("got"))
    f = Finding("contract", m.group(0), got_shape=got)
    f.bindings = {k: int(v) for k, v in re.findall(r"\b(B|T)=(\d+)", m.group("bind") or "")}
    if m.group("grank"):
        f.rank = (int(m.group("erank")), int(m.group("grank")))
        f.shape(got)
    else:
        _clashes_by_axis(f, expected, got, dims)
    return f


def _p_torch_size(m: re.Match[str]) -> Finding:
    shape = _ints(m.group(1))
    f = Finding("size", m.group(0), got_shape=shape)
    f.shape(shape)
    return f


_PATTERNS: tuple[tuple[str, Any], ...] = (
    (rf"mat1 and mat2 shapes cannot be multiplied \({_INT}x{_INT} and {_INT}x{_INT}\)", _p_matmul),
    (rf"size of tensor a \({_INT}\) must match the size of tensor b \({_INT}\) at non-singleton dimension {_INT}",
     _p_broadcast),
    (rf"shape '{_LIST}' is invalid for input of size {_INT}", _p_view),
    (r"Sizes of tensors must match except in dimension \d+\. Expected size (?P<y>\d+) but got size (?P<x>\d+)",
     _p_pair("cat", "any", got_first=True)),
    (r"Input batch size (?P<x>\d+) doesn't match [\w\[\]]+ batch size (?P<y>\d+)", _p_pair("rnn", "batch", True)),
    (r"Expected (hidden|hx|cx|hidden\[\d\])\s*size \(([\d,\s]+)\), got \[([\d,\s]+)\]", _p_hidden),
    (r"Expected input batch_size \((?P<x>\d+)\) to match target batch_size \((?P<y>\d+)\)",
     _p_pair("loss", "batch", True)),
    (rf"Expected (\d)D \(unbatched\) or (\d)D \(batched\) input to (\w+), but got input of size: {_LIST}", _p_conv),
    (r"einsum\(\): the number of subscripts in the equation \((\d+)\) does not match the number of dimensions "
     r"\((\d+)\)", _p_einsum_rank),
    (r"einsum\(\): subscript \w has size (?P<size>\d+) for operand \d+ which does not broadcast with previously "
     r"seen size (?P<prev>\d+)", _p_einsum_size),
    (r"einsum\(\): dimension \d+ covered by ellipsis in operand \d+\s*has size (?P<size>\d+) which does not "
     r"broadcast with previously seen ellipsis with size (?P<prev>\d+)", _p_einsum_size),
    (r"einsum\(\): operands do not broadcast with remapped shapes \[original->remapped\]:((?:\s*\[[\d,\s]*\]->"
     r"\[[\d,\s]*\])+)", _p_einsum_remap),
    (r"Expected (\d)D tensor \[([^\]]*)\],? got (\d)D \[([^\]]*)\]", _p_seed_rank),
    (rf"Given normalized_shape={_LIST}, expected input with shape \[\*,([\d,\s]*)\], but got input of size\s*{_LIST}",
     _p_layernorm),
    (rf"expected input{_LIST} to have {_INT} channels, but got {_INT} channels", _p_channels),
    (rf"input\.size\(-1\) must be equal to input_size\. Expected {_INT}, got {_INT}", _p_input_size),
    (rf"Shape mismatch, {_INT} != {_INT}", _p_einops),
    (r"target size \(torch\.Size\(\[([\d,\s]*)\]\)\) that is different to the input size \(torch\.Size\("
     r"\[([\d,\s]*)\]\)\)", _p_target_size),
    (r"(?P<where>[\w.]+): (?P<tensor>[\w.\[\]'\"]+) expected (?:(?P<erank>\d+) dims )?\[(?P<sym>[^\]]*)\] = "
     r"\[(?P<exp>[^\]]*)\], got (?:(?P<grank>\d+) dims )?\[(?P<got>[^\]]*)\](?: \((?P<bind>[^)]*)\))?",
     _p_contract),
)
_COMPILED = [(re.compile(p), fn) for p, fn in _PATTERNS]
_TORCH_SIZE = re.compile(r"torch\.Size\(\[([\d,\s]*)\]\)")


def _jaxtyping(text: str) -> list[Finding]:
    """jaxtyping's own type-check report: the failing argument's value against its annotation."""
    out: list[Finding] = []
    for block in re.split(r"(?=Type-check error whilst checking)", text):
        if not block.startswith("Type-check error"):
            continue
        actual = re.search(r"Actual value: \w+\[([\d,\s]*)\]", block)
        if not actual:
            continue
        param = re.search(r"typechecking parameter '(\w+)'", block)
        expected = re.search(r"Expected type: <?(?:class )?'?\w+\[\w+, '([^']*)'\]", block)
        if not expected and param:
            expected = re.search(rf"\b{param.group(1)}: \w+\[\w+, '([^']*)'\]", block)
        got = _ints(actual.group(1))
        f = Finding("jaxtyping", block.strip().splitlines()[0] + f" ... Actual value: [{actual.group(1)}]",
                    got_shape=got)
        values = {k: int(v) for k, v in re.findall(r"^\s*(\w+)=(\d+)\s*$", block, flags=re.M)}
        f.bindings = {k: v for k, v in values.items() if k in ("B", "T")}
        dims = expected.group(1).split() if expected else []
        if not dims or any(d.startswith("*") or d == "..." for d in dims):
            f.shape(got)
        elif len(dims) != len(got):
            f.rank = (len(dims), len(got))
            f.shape(got)
        else:
            f.dims, f.own = dims, values
        out.append(f)
    return out


def parse(text: str) -> list[Finding]:
    """Every shape message found in the text, in order of appearance."""
    found: list[tuple[int, Finding]] = []
    spans: list[tuple[int, int]] = []
    for rx, fn in _COMPILED:
        for m in rx.finditer(text):
            if any(s <= m.start() < e for s, e in spans):
                continue
            spans.append(m.span())
            found.append((m.start(), fn(m)))
    for m in _TORCH_SIZE.finditer(text):
        if not any(s <= m.start() < e for s, e in spans):
            found.append((m.start(), _p_torch_size(m)))
    for f in _jaxtyping(text):
        found.append((text.find(f.excerpt.split(" ... ")[0]), f))
    return [f for _, f in sorted(found, key=lambda x: x[0])]

MATCH_THRESHOLD = 0.3
MAX_DECOMPOSITIONS = 12


# --- matching the documented errors by roles ------------------------------------------------------
class _Scorer:
    def __init__(self, cfg: AimeConfig, v: dict[str, int], algebra: Algebra) -> None:
        self.cfg, self.v, self.alg = cfg, v, algebra
        self.best: dict[int, tuple[float, str]] = {}
        self.pins: dict[int, dict[int, str]] = {}

    def note(self, n: int, score: float, reason: str, pins: dict[int, str] | None = None) -> None:
        """Record evidence for error n; `pins` name the numbers as this error reads them (`128`: `B*T`)."""
        if score > self.best.get(n, (0.0, ""))[0]:
            self.best[n] = (score, reason)
            self.pins[n] = pins or {}

    def name(self, n: int, role: str = "any") -> str:
        return self.alg.best_name(n, role)

    def swap(self, short: int, full: int) -> dict[int, str]:
        """Name `short` with T_enc and `full` with the same product in T (`T_enc*H_t*W_t` vs `T*H_t*W_t`)."""
        fulls = {e.text for e in self.alg.expressions(full)}
        for e in sorted(self.alg.ranked(short, "numel"), key=lambda e: "H_t" not in e.text):  # token grids first
            if "T_enc" in e.text and (twin := e.text.replace("T_enc", "T")) in fulls:
                return {short: e.text, full: twin}
        return {}

    def stages(self) -> set[int]:
        H = self.v["H"]
        return {H >> k for k in range(0, 12) if H >> k >= 1}

    def clash(self, f: Finding, c: Clash) -> None:
        v, lo, hi = self.v, min(c.expected, c.got), max(c.expected, c.got)
        B, T = v["B"], v["T"]
        # 1: B*T rows against B (or the reverse)
        if T > 1 and {lo, hi} == {B, B * T}:
            self.note(1, 1.0 if c.role == "batch" else 0.85,
                      f"{c.got} = {'B*T' if c.got == hi else 'B'} where {c.expected} = "
                      f"{'B*T' if c.expected == hi else 'B'} was expected: B*T = {B}*{T} rows meet B = {B}",
                      {hi: "B*T", lo: "B"})
        elif c.role == "batch" and lo > 0 and hi % lo == 0 and hi != lo:
            ratio = hi // lo
            score = 0.8 if ratio == T else 0.5
            self.note(1, score, f"a batch of {hi} = {lo}*{ratio} meets a batch of {lo}: a flattened [B*T, ...] "
                                f"where [B, ...] was expected")
        # 2: the attention resolution against a feature-map size H / 2^k, on a spatial axis
        att = v["H_att"]
        if (c.role in ("spatial", "any", "numel") and f.kind not in ("einsum", "matmul", "layernorm")
                and c.expected != c.got and att in (c.expected, c.got)):
            other = c.got if c.expected == att else c.expected
            spatial = c.role == "spatial"
            if other in self.stages() and (spatial or B not in (att, other)):
                score = (1.0 if f.kind in ("broadcast", "cat", "contract", "jaxtyping") else 0.7) if spatial else 0.5
                self.note(2, score, f"H_att = {att} meets the feature-map size {other} = "
                                    f"{self.name(other, 'spatial')}: the attention map was not resized", {att: "H_att"})
            elif spatial:
                self.note(2, 0.4, f"H_att = {att} meets a spatial size {other}")
        # 3: T against T_enc, or a size off by T / T_enc
        T_enc = v["T_enc"]
        if T_enc != T and {lo, hi} == {T_enc, T}:
            self.note(3, 0.8, f"T = {T} meets T_enc = {T_enc}: the token time axis was not brought back to T",
                      {T: "T", T_enc: "T_enc"})
        elif T_enc != T and c.got * T == c.expected * T_enc and c.role in ("numel", "any"):
            self.note(3, 0.85, f"{c.got} entries where {c.expected} were expected: a factor T / T_enc = "
                               f"{T} / {T_enc} short (time downsampled by the tokenizer)", self.swap(c.got, c.expected))
        # 4: the prior's input width
        hid, ctx = v["hidden_dim"], v["context_dim"]
        if {lo, hi} == {hid, hid + ctx}:
            self.note(4, 1.0 if c.role == "features" else 0.8,
                      f"{c.got} = {self.name(c.got, 'features')} where {c.expected} = "
                      f"{self.name(c.expected, 'features')} was expected: the prior's input width",
                      {hid: "hidden_dim", hid + ctx: "hidden_dim + context_dim"})
        elif c.role == "features" and {lo, hi} == {ctx, hid + ctx}:
            self.note(4, 0.5, f"{c.got} against {c.expected}: context_dim vs hidden_dim + context_dim")
        # 5: attention_dim against a spatial size (an unflattened map's last axis)
        dim = v["attention_dim"]
        if dim in (c.expected, c.got) and c.expected != c.got:
            other = c.got if c.expected == dim else c.expected
            if other in (v["H_att"], v["N"]) and (f.kind in ("einsum", "layernorm") or c.role == "features"):
                score = 0.9 if f.kind in ("einsum", "layernorm") else 0.6
                self.note(5, score, f"attention_dim = {dim} meets {other} = {self.name(other, 'spatial')}: "
                                    "a spatial map's axis where the feature axis was expected")

    def finding(self, f: Finding) -> None:
        v = self.v
        for c in f.clashes:
            self.clash(f, c)
        if f.kind == "matmul":
            rows, k_in, k_w, out = f.sizes[0][0], f.sizes[1][0], f.sizes[2][0], f.sizes[3][0]
            dim, att = v["attention_dim"], v["H_att"]
            if k_in == v["W_att"] and k_w == dim and k_in != dim:
                full = rows == v["B"] * dim * att
                self.note(5, 1.0 if full else 0.9,
                          f"a Linear built for attention_dim = {dim} inputs met a last axis of W_att = {k_in}"
                          + (f" with {rows} = B*attention_dim*H_att rows" if full else "")
                          + ": the spatial map [B, attention_dim, H_att, W_att] was not flattened",
                          {rows: "B*attention_dim*H_att", k_in: "W_att", k_w: "attention_dim"} if full
                          else {k_in: "W_att", k_w: "attention_dim"})
            if out in (2 * v["K"] * v["D"], v["K"] - 1) and k_in != k_w and 4 not in self.best:
                self.note(4, 0.6, f"the prior's network (out {out} = {self.name(out, 'out')}) got {k_in} "
                                  f"inputs where it takes {k_w}")
        if f.kind == "view":
            self.view(f)
        if f.rank is not None:
            self.rank(f)

    def view(self, f: Finding) -> None:
        target, numel = f.target, f.numel
        T = self.v["T"]
        if not target or numel is None or any(t < 0 for t in target):
            return
        total = math.prod(target)
        for i, t in enumerate(target):
            if t < 2 or total % t:
                continue
            t_enc = self.cfg.encoded_length(t)
            if t_enc != t and numel == total // t * t_enc:
                grid = len(target) == 4 and i == 1
                self.note(3, 1.0 if t == T else 0.85,
                          f"the view asks for T = {t} frames on axis {i} ({total} entries) but the input holds "
                          f"{numel} = {total // t}*{t_enc} entries: T_enc = ceil(T / temporal_downsample) = {t_enc} "
                          "frames",
                          {numel: "B*T_enc*H_t*W_t", t: "T"} if grid else {t: "T"})
        if len(target) >= 4 and target[1] == T and target[-1] == target[-2] == self.v["H_t"]:
            self.note(3, 0.5, f"a token grid view {list(target)} = [B, T, H_t, W_t] of {numel} entries")

    def rank(self, f: Finding) -> None:
        assert f.rank is not None
        want, got = f.rank
        v, shape = self.v, f.got_shape
        if (got == want + 1 and want == 3) or f.symbolic_rank:
            if f.symbolic_rank:
                self.note(5, 1.0, "a 4-D map [B, C, H, W] where slot attention takes [B, N, D]")
            elif shape and len(shape) == 4:
                exact = shape[1] == v["attention_dim"] and shape[2] == shape[3] == v["H_att"]
                square = shape[2] == shape[3] and shape[1] != shape[2]
                score = 1.0 if exact else 0.8 if square else 0.6
                self.note(5, score, f"a 4-D {list(shape)}" + (" = [B, attention_dim, H_att, W_att]" if exact else "")
                                    + f" where 3-D [B, N, attention_dim] = [B, {v['N']}, {v['attention_dim']}] was "
                                      "expected: the spatial map was not flattened",
                          {shape[1]: "attention_dim", shape[2]: "H_att"} if exact else None)
            else:
                self.note(5, 0.8, "4 axes where 3 ([B, N, attention_dim]) were expected: an unflattened spatial map")
        if shape and len(shape) == want + 1 and len(shape) >= 3 and shape[1] == v["T"] and v["T"] > 1:
            score = 0.7 if shape[0] == v["B"] else 0.5
            self.note(1, score, f"a [B, T, ...] tensor {list(shape)} where {want} axes ([B*T, ...]) were expected: "
                                "B and T not flattened (Error 1 the other way round)")


def explain(text: str, cfg: AimeConfig, batch: int | None = None, seq_len: int | None = None) -> Explanation:
    """Explain a PyTorch shape error message (or a whole traceback) at `cfg`."""
    findings = parse(text)
    hinted = {k: val for f in findings for k, val in f.bindings.items() if k in ("B", "T")}
    B = batch if batch is not None else hinted.get("B", cfg.batch_size)
    T = seq_len if seq_len is not None else hinted.get("T", cfg.sequence_length)
    v = symbol_values(cfg, B, T)
    for f in findings:
        f.resolve(v)
    algebra = Algebra(cfg, v)
    for f in findings:
        for n, role, prefer in f.numbers():
            algebra.observe(n, role, prefer)
    scorer = _Scorer(cfg, v, algebra)
    for f in findings:
        scorer.finding(f)
    ranked = sorted(scorer.best.items(), key=lambda kv: (-kv[1][0], kv[0]))
    matches = [Match(n, documented_error(n).title, round(s, 2), why, documented_error(n).fix)
               for n, (s, why) in ranked if s >= MATCH_THRESHOLD]
    if matches:
        algebra.prefer(_PREFER[matches[0].error], scorer.pins.get(matches[0].error, {}))
    numbers = {str(n): algebra.decompose(n)[:MAX_DECOMPOSITIONS] for n in algebra.observed()}
    return Explanation(
        text=text, numbers=numbers, matches=matches,
        explanation=_write(findings, numbers, matches, algebra, B, T),
        findings=[f.to_json(algebra) for f in findings], batch=B, seq_len=T,
    )


# after a match, numbers are read in the symbols that error is about
_PREFER: dict[int, frozenset[str]] = {
    1: frozenset({"B", "T"}),
    2: frozenset({"H_att", "W_att", "H", "W"}),
    3: frozenset({"B", "T_enc", "H_t*W_t", "H_t", "W_t"}),
    4: frozenset({"hidden_dim", "context_dim", "2*K*D"}),
    5: frozenset({"B", "attention_dim", "H_att", "W_att", "N"}),
}


def _write(findings: list[Finding], numbers: dict[str, list[str]], matches: list[Match], algebra: Algebra,
           B: int, T: int) -> str:
    lines: list[str] = []
    if not findings:
        lines.append("No PyTorch shape message was recognised in the text.")
    for f in findings:
        lines.append(f.describe(algebra))
    for n, decomps in numbers.items():
        if decomps:
            lines.append(f"{n} = {decomps[0]}" + (f" (also: {'; '.join(decomps[1:3])})" if len(decomps) > 1 else ""))
    if matches:
        top = documented_error(matches[0].error)
        lines.append(f"Most likely Error {top.number} ({top.title}): {matches[0].reason}.")
        lines.append(f"Cause: {top.cause}.")
        lines.append(f"Fix: {top.fix}.")
        for m in matches[1:]:
            lines.append(f"Also possible: Error {m.error} ({m.title}, score {m.score}): {m.reason}.")
    else:
        lines.append(f"No documented error fits (read with B={B}, T={T}; pass --batch/--seq-len or --set if the "
                     "failing run used other sizes).")
    return "\n".join(lines)


__all__ = ["Explanation", "Match", "explain"]
