"""Parsing PyTorch shape messages (or a whole traceback) into evidence for `--explain`.

Each known message becomes a `Finding`: clashes (two sizes that should have agreed, with the
role each plays), rank mismatches and invalid views. jaxtyping's and aimespec's own texts too.
"""

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aimespec.core.dims import axis_value
from aimespec.core.symbols import kind_of
from aimespec.core.validate import Violation, ViolationKind
from aimespec.explain.algebra import Algebra, read_kind
from aimespec.explain.values import VALUE_MESSAGE, Advice, advise


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
        _clashes_by_axis(self, [axis_value(d, scope) for d in self.dims], self.got_shape, self.dims)
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
        if self.kind == "value" and self.advice is not None:
            parts.append(f"({self.advice.rule}: a value invariant, not a shape error)")
        if self.rank is not None:
            shape = f" {self.got_shape}" if self.got_shape else ""
            parts.append(f"{self.rank[1]} axes{shape} where {self.rank[0]} were expected")
        return head + "".join(f"\n  {p}" for p in parts)

    def _view(self, alg: "Algebra", sym: Any) -> str:
        assert self.target is not None and self.numel is not None
        target, numel = self.target, self.numel
        names = [INFERRED if t < 0 else alg.written.get(t) or alg.best_name(t, _view_role(i, len(target)))
                 for i, t in enumerate(target)]
        for i in range(1, len(names)):  # [.., H_t, W_t], not [.., H_t, H_t]
            twin = "W" + names[i][1:]
            if names[i] == names[i - 1] and names[i].startswith("H") and twin in {
                    e.text for e in alg.expressions(target[i])}:
                names[i] = twin
        shown = f"view to {target} = [{', '.join(names)}]"
        known = math.prod(t for t in target if t > 0)
        if any(t < 0 for t in target):  # -1 is inferred: the others must divide the input
            return (f"{shown}: the -1 axis is inferred, so the input's {sym(numel, 'numel')} entries must be a "
                    f"multiple of the other axes' {sym(known, 'numel')}, and {numel} / {known} = "
                    f"{numel / known:.6g} is not whole")
        return f"{shown} needs {known} entries, the input has {sym(numel, 'numel')}"

    def to_json(self, alg: "Algebra") -> dict[str, Any]:
        return {"kind": self.kind, "excerpt": self.excerpt.strip(),
                "clashes": [{"expected": c.expected, "got": c.got, "role": c.role} for c in self.clashes],
                "rank": list(self.rank) if self.rank else None, "got_shape": self.got_shape,
                "target": self.target, "numel": self.numel}


INFERRED = "-1 (inferred)"
SWAPPED_STATES = ("the same sizes in another order: the state's axes are swapped. h0/c0 are [num_layers, B, "
                  "hidden] even with batch_first=True (batch_first only changes the input and output)")
_INT = r"(\d+)"
_LIST = r"\[([-\d,\s]*)\]"


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def _symbols_in(dim: str) -> frozenset[str]:
    return frozenset(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", dim))


def _role_of(dim: str) -> str:
    names = _symbols_in(dim)
    if names == {"B"}:
        return "batch"
    if names & {"T", "T_enc"}:
        return "time"
    kinds = {read_kind(k) for n in names if (k := kind_of(n)) is not None}
    return {frozenset({"width"}): "features", frozenset({"spatial"}): "spatial", frozenset({"count"}): "count",
            frozenset({"channel"}): "channel"}.get(frozenset(kinds), "any")


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
    expected, got = _ints(m.group(2)), _ints(m.group(3))
    axes = ["num_layers", "B", "hidden_dim"]
    _clashes_by_axis(f, list(expected), got, axes)
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):  # the agreeing axes are read too
        if e == g:
            f.add(g, _role_of(axes[i]) if i < len(axes) else "any")
    f.swapped = expected != got and sorted(expected) == sorted(got)
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
    f.clash(int(m.group(2)), int(m.group(3)), "channel")
    for i, n in enumerate(shape):
        if i != 1:
            f.add(n, "batch" if i == 0 else "spatial")
    return f


def _p_input_size(m: re.Match[str]) -> Finding:
    f = Finding("rnn", m.group(0))
    f.clash(int(m.group(1)), int(m.group(2)), "features")
    return f


def _p_einops(m: re.Match[str]) -> Finding:
    f = Finding("view", m.group(0))
    f.clash(int(m.group(2)), int(m.group(1)), "numel")
    return f


_EINOPS_ROLES = {"b": "batch", "t": "time", "h": "spatial", "w": "spatial", "c": "channel", "d": "features",
                 "k": "count", "n": "spatial"}


def _p_einops_block(m: re.Match[str]) -> Finding:
    """einops' whole report: the pattern, the input shape, the sizes it was given, and why it failed."""
    info = {k: int(v) for k, v in re.findall(r"'(\w+)': (\d+)", m.group("info"))}
    shape = _ints(m.group("shape"))
    groups = re.findall(r"\([^)]*\)|\S+", m.group("pattern").split("->")[0])
    f = Finding("einops", m.group(0), got_shape=shape)
    f.bindings = {n.upper(): v for n, v in info.items() if n.upper() in ("B", "T")}
    for i, n in enumerate(shape):
        group = groups[i].strip("()").split() if len(groups) == len(shape) else []
        role = _EINOPS_ROLES.get(group[0][:1].lower(), "any") if len(group) == 1 else "numel" if group else "any"
        f.add(n, role if i else "batch")
        if reading := _named_product(n, info, group):
            f.stated[n] = reading
    reason = m.group("reason")
    if (mismatch := re.search(rf"Shape mismatch, {_INT} != {_INT}", reason)) is not None:
        f.clash(int(mismatch.group(2)), int(mismatch.group(1)), "numel")
    elif (rank := re.search(r"expected (\d+) dims\. Received (\d+)-dim", reason)) is not None:
        want, got = int(rank.group(1)), int(rank.group(2))
        f.rank = (want, got)
        first = [g.strip("()") for g in groups[:2]]
        if got == want - 1 and len(first) == 2 and all(x in info for x in first) and shape:
            if shape[0] == info[first[0]] * info[first[1]]:  # `b t ...` met `(b t) ...`: flattened
                f.clashes.append(Clash(info[first[0]], shape[0], "batch"))
                f.stated.setdefault(shape[0], _reading(first, info))
    return f


def _named_product(n: int, info: dict[str, int], group: list[str]) -> str | None:
    """`b*t = 8*5` when the message's own sizes make n (the axis's group first)."""
    if len(group) > 1 and all(g in info for g in group) and math.prod(info[g] for g in group) == n:
        return _reading(group, info)
    for size in (1, 2, 3):
        for names in itertools.combinations(info, size):
            if math.prod(info[x] for x in names) == n and (size > 1 or n > 1):
                return _reading(list(names), info)
    return None


def _reading(names: list[str], info: dict[str, int]) -> str:
    if len(names) == 1:
        return f"{names[0]} = {info[names[0]]} (the message's own size)"
    return f"{'*'.join(names)} = {'*'.join(str(info[x]) for x in names)} (the message's own sizes)"


def _p_value(m: re.Match[str]) -> Finding:
    """aimespec's own value finding: `DPGMMPrior.forward: pi must sum to 1 over K, but ...`."""
    f = Finding("value", m.group(0))
    f.advice = advise(m.group("tensor"), m.group("problem"))
    f.tensor = m.group("tensor")
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
        for i, (e, g) in enumerate(zip(expected, got, strict=False)):  # the agreeing axes are read too
            if e == g and i < len(dims):
                f.add(g, _role_of(dims[i]) if dims[i] else "any", _symbols_in(dims[i]))
    return f


def from_violation(v: Violation) -> Finding | None:
    """The evidence in one of aimespec's own shape or rank violations, read from its structure."""
    if v.kind not in (ViolationKind.SHAPE, ViolationKind.RANK) or not v.dims or v.got is None:
        return None
    got = list(v.got)
    f = Finding("contract", v.message, got_shape=got)
    f.bindings = {k: n for k, n in v.bindings.items() if k in ("B", "T")}
    if v.kind == ViolationKind.RANK:
        f.rank = (len(v.dims), len(got))
        f.shape(got)
    else:
        _clashes_by_axis(f, v.expected_sizes, got, list(v.dims))
    return f


def _p_torch_size(m: re.Match[str]) -> Finding:
    shape = _ints(m.group(1))
    f = Finding("size", m.group(0), got_shape=shape)
    f.shape(shape)
    return f


_PATTERNS: tuple[tuple[str, Any], ...] = (
    (r'Error while processing [\w-]+ pattern "(?P<pattern>[^"]+)"\.\s*Input tensor shape: torch\.Size\(\[(?P<shape>'
     r'[\d,\s]*)\]\)\.\s*Additional info: (?P<info>\{[^}]*\})\.\s*(?P<reason>[^\n]*)', _p_einops_block),
    (VALUE_MESSAGE.pattern, _p_value),
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
    (r"(?<![\w.])(?P<where>[\w.]+): (?P<tensor>[\w.\[\]'\"]+) expected (?:(?P<erank>\d+) dims )?\[(?P<sym>[^\]]*)\] = "
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
