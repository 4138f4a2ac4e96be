"""Evidence from a shape message: which sizes should have agreed, the role each plays, what is written.

A `Finding` is one recognised message (`aimespec.explain.messages` parses them): its clashes
(an expected and a got size, with the role they play: batch, features, spatial, ...), a rank
mismatch, a view's target, the readings the message itself states (einops' `b*t`), a value
finding's advice. `describe` writes it back in the config's symbols.
"""

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aimespec.core.dims import axis_value, format_shape
from aimespec.core.symbols import kind_of
from aimespec.explain.algebra import Algebra, read_kind
from aimespec.explain.values import Advice


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
    stated: dict[int, str] = field(default_factory=dict)  # readings the message itself gives (einops' b*t)
    advice: Advice | None = None  # a value finding's why and fix
    tensor: str | None = None  # a value finding's tensor
    swapped: bool = False  # an RNN state with the right sizes in the wrong order

    def resolve(self, values: dict[str, int]) -> None:
        """Evaluate annotation axes (`B hidden_dim+context_dim`, `B 768`) and record the clashes."""
        if self.dims is None or self.got_shape is None:
            return
        scope = {**values, **self.own}
        clashes_by_axis(self, [axis_value(d, scope) for d in self.dims], self.got_shape, self.dims)
        self.dims = None

    def numbers(self) -> Iterator[tuple[int, str, frozenset[str]]]:
        yield from self.sizes

    def add(self, n: int, role: str = "any", prefer: frozenset[str] = frozenset()) -> None:
        self.sizes.append((n, role, prefer))

    def shape(self, shape: list[int], role0: str = "batch") -> None:
        for i, n in enumerate(shape):
            self.add(n, role0 if i == 0 else "spatial" if i >= len(shape) - 2 and len(shape) >= 3
                     else "features" if i == len(shape) - 1 else "any")

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
            parts.append(self._view(alg, sym))
        if self.kind == "rnn" and self.swapped:
            parts.append(SWAPPED_STATES)
        if self.kind in ("value", "probe", "structure") and self.advice is not None:
            what = {"value": "a value invariant", "probe": "a behavioural probe",
                    "structure": "the contract's structure, dtype or time limit"}[self.kind]
            parts.append(f"({self.advice.rule}: {what}, not a shape error)")
        if self.rank is not None:
            shape = f" {self.got_shape}" if self.got_shape else ""
            parts.append(f"{self.rank[1]} axes{shape} where {self.rank[0]} were expected")
        return head + "".join(f"\n  {p}" for p in parts)

    def _view(self, alg: "Algebra", sym: Any) -> str:
        assert self.target is not None and self.numel is not None
        target, numel = self.target, self.numel
        names = [INFERRED if t < 0 else alg.written.get(t) or alg.best_name(t, view_role(i, len(target)))
                 for i, t in enumerate(target)]
        for i in range(1, len(names)):  # [.., H_t, W_t], not [.., H_t, H_t]
            twin = "W" + names[i][1:]
            if names[i] == names[i - 1] and names[i].startswith("H") and twin in {
                    e.text for e in alg.expressions(target[i])}:
                names[i] = twin
        shown = f"view to {target} = {format_shape(names)}"
        known = math.prod(t for t in target if t > 0)
        if any(t < 0 for t in target):  # -1 is inferred: the others must divide the input
            return (f"{shown}: the -1 axis is inferred, so the input's {sym(numel, 'numel')} entries must be a "
                    f"multiple of the other axes' {sym(known, 'numel')}, and {numel} / {known} = "
                    f"{numel / known:.6g} is not whole")
        return f"{shown} needs {known} entries, the input has {sym(numel, 'numel')}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "excerpt": self.excerpt.strip(),
                "clashes": [{"expected": c.expected, "got": c.got, "role": c.role} for c in self.clashes],
                "rank": list(self.rank) if self.rank else None, "got_shape": self.got_shape,
                "target": self.target, "numel": self.numel}


INFERRED = "-1 (inferred)"
SWAPPED_STATES = ("the same sizes in another order: the state's axes are swapped. h0/c0 are [num_layers, B, "
                  "hidden] even with batch_first=True (batch_first only changes the input and output)")
INT = r"(\d+)"
LIST = r"\[([-\d,\s]*)\]"


def ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def symbols_in(dim: str) -> frozenset[str]:
    return frozenset(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", dim))


def role_of(dim: str) -> str:
    names = symbols_in(dim)
    if names == {"B"}:
        return "batch"
    if names & {"T", "T_enc"}:
        return "time"
    kinds = {read_kind(k) for n in names if (k := kind_of(n)) is not None}
    return {frozenset({"width"}): "features", frozenset({"spatial"}): "spatial", frozenset({"count"}): "count",
            frozenset({"channel"}): "channel"}.get(frozenset(kinds), "any")


def clashes_by_axis(f: Finding, expected: list[int | None], got: list[int], dims: list[str] | None = None) -> None:
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        if e is None or e == g or e < 0:
            continue
        dim = dims[i] if dims and i < len(dims) else ""
        role = role_of(dim) if dim else ("batch" if i == 0 else "any")
        if dim.isdigit() and i == len(got) - 1 and i > 0:  # `B 768`: a trailing fixed width is a feature axis
            role = "features"
        f.clash(e, g, role, symbols_in(dim) if dim else frozenset())


def view_role(i: int, rank: int) -> str:
    """A view target reads like [B, T, H_t, W_t]: batch first, then time, then space."""
    return "batch" if i == 0 else "time" if i == 1 and rank >= 4 else "spatial" if i >= 2 else "any"
