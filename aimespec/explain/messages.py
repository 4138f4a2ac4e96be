"""Parsing PyTorch shape messages (or a whole traceback) into evidence for `--explain`.

Each known message becomes a `Finding`: clashes (two sizes that should have agreed, with the
role each plays), rank mismatches and invalid views. jaxtyping's and aimespec's own texts too.
"""

import itertools
import math
import re
from typing import Any

from aimespec.core.violation import Violation, ViolationKind
from aimespec.explain.evidence import (
    INT,
    LIST,
    Clash,
    Finding,
    clashes_by_axis,
    ints,
    role_of,
    symbols_in,
    view_role,
)
from aimespec.explain.values import (
    PROBE_MESSAGE,
    STRUCTURE_MESSAGE,
    VALUE_MESSAGE,
    advise,
    advise_probe,
    advise_structure,
)


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


def _p_view(m: re.Match[str]) -> Finding:
    target, numel = ints(m.group(1)), int(m.group(2))
    f = Finding("view", m.group(0), target=target, numel=numel)
    for i, t in enumerate(target):
        if t > 0:
            f.add(t, view_role(i, len(target)))
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
    expected, got = ints(m.group(2)), ints(m.group(3))
    axes = ["num_layers", "B", "hidden_dim"]
    clashes_by_axis(f, list(expected), got, axes)
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):  # the agreeing axes are read too
        if e == g:
            f.add(g, role_of(axes[i]) if i < len(axes) else "any")
    f.swapped = expected != got and sorted(expected) == sorted(got)
    return f


def _p_conv(m: re.Match[str]) -> Finding:
    shape = ints(m.group(4))
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
    shapes = [(ints(a), ints(b)) for a, b in re.findall(r"\[([\d,\s]*)\]->\[([\d,\s]*)\]", m.group(1))]
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
    nums = ints(m.group(4))
    if len(nums) == got:
        f.got_shape = nums
        f.shape(nums)
    else:
        f.symbolic_rank = want == 3 and got == 4
    return f


def _p_layernorm(m: re.Match[str]) -> Finding:
    norm, shape = ints(m.group(1)), ints(m.group(3))
    f = Finding("layernorm", m.group(0), got_shape=shape)
    f.shape(shape)
    clashes_by_axis(f, list(norm), shape[len(shape) - len(norm):], ["attention_dim"] * len(norm))
    return f


def _p_channels(m: re.Match[str]) -> Finding:
    shape = ints(m.group(1))
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


def _p_cell_input_size(m: re.Match[str]) -> Finding:
    """nn.LSTMCell / nn.GRUCell: the same clash as nn.LSTM's, written got-first."""
    f = Finding("rnn", m.group(0))
    f.clash(int(m.group(2)), int(m.group(1)), "features")
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
    shape = ints(m.group("shape"))
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
    if (mismatch := re.search(rf"Shape mismatch, {INT} != {INT}", reason)) is not None:
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


def _p_probe(m: re.Match[str]) -> Finding:
    """aimespec's own probe finding: `SlotAttention.forward: replacing example 1 of x changed ...`."""
    f = Finding("probe", m.group(0))
    f.advice = advise_probe(m.group("text") or m.group("config"))
    contract = m.group("contract") or re.search(r"([\w.]+): $", m.string[max(0, m.start() - 80):m.start()])
    f.tensor = contract if isinstance(contract, str) else contract.group(1) if contract else None
    return f


def _p_structure(m: re.Match[str]) -> Finding:
    """aimespec's own structure, dtype or timeout finding: `X.f: return expected a mapping with keys ...`."""
    f = Finding("structure", m.group(0))
    f.advice = advise_structure(m.group("text"))
    f.tensor = m.group("contract")
    return f


def _p_target_size(m: re.Match[str]) -> Finding:
    target, got = ints(m.group(1)), ints(m.group(2))
    f = Finding("loss", m.group(0))
    if len(target) == len(got):
        clashes_by_axis(f, list(target), got)
        for i, (t, g) in enumerate(zip(target, got, strict=True)):  # the agreeing axes are read too
            if t == g:
                f.add(g, "batch" if i == 0 else "any")
    else:
        f.shape(got)
    return f


def _p_contract(m: re.Match[str]) -> Finding:
    dims = [d.strip() for d in m.group("sym").split(",")]
    expected = [None if x.strip() == "?" else int(x) for x in m.group("exp").split(",") if x.strip()]
    got = ints(m.group("got"))
    f = Finding("contract", m.group(0), got_shape=got)
    f.bindings = {k: int(v) for k, v in re.findall(r"\b(B|T)=(\d+)", m.group("bind") or "")}
    if m.group("grank"):
        f.rank = (int(m.group("erank")), int(m.group("grank")))
        f.shape(got)
    else:
        clashes_by_axis(f, expected, got, dims)
        for i, (e, g) in enumerate(zip(expected, got, strict=False)):  # the agreeing axes are read too
            if e == g and i < len(dims):
                f.add(g, role_of(dims[i]) if dims[i] else "any", symbols_in(dims[i]))
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
        clashes_by_axis(f, v.expected_sizes, got, list(v.dims))
    return f


def _p_torch_size(m: re.Match[str]) -> Finding:
    shape = ints(m.group(1))
    f = Finding("size", m.group(0), got_shape=shape)
    f.shape(shape)
    return f


_PATTERNS: tuple[tuple[str, Any], ...] = (
    (r'Error while processing [\w-]+ pattern "(?P<pattern>[^"]+)"\.\s*Input tensor shape: torch\.Size\(\[(?P<shape>'
     r'[\d,\s]*)\]\)\.\s*Additional info: (?P<info>\{[^}]*\})\.\s*(?P<reason>[^\n]*)', _p_einops_block),
    (VALUE_MESSAGE.pattern, _p_value),
    (PROBE_MESSAGE.pattern, _p_probe),
    (STRUCTURE_MESSAGE.pattern, _p_structure),
    (rf"mat1 and mat2 shapes cannot be multiplied \({INT}x{INT} and {INT}x{INT}\)", _p_matmul),
    (rf"size of tensor a \({INT}\) must match the size of tensor b \({INT}\) at non-singleton dimension {INT}",
     _p_broadcast),
    (rf"shape '{LIST}' is invalid for input of size {INT}", _p_view),
    (r"Sizes of tensors must match except in dimension \d+\. Expected size (?P<y>\d+) but got size (?P<x>\d+)",
     _p_pair("cat", "any", got_first=True)),
    (r"Input batch size (?P<x>\d+) doesn't match [\w\[\]]+ batch size (?P<y>\d+)", _p_pair("rnn", "batch", True)),
    (r"Expected (hidden|hx|cx|hidden\[\d\])\s*size \(([\d,\s]+)\), got \[([\d,\s]+)\]", _p_hidden),
    (r"Expected input batch_size \((?P<x>\d+)\) to match target batch_size \((?P<y>\d+)\)",
     _p_pair("loss", "batch", True)),
    (rf"Expected (\d)D \(unbatched\) or (\d)D \(batched\) input to (\w+), but got input of size: {LIST}", _p_conv),
    (r"einsum\(\): the number of subscripts in the equation \((\d+)\) does not match the number of dimensions "
     r"\((\d+)\)", _p_einsum_rank),
    (r"einsum\(\): subscript \w has size (?P<size>\d+) for operand \d+ which does not broadcast with previously "
     r"seen size (?P<prev>\d+)", _p_einsum_size),
    (r"einsum\(\): dimension \d+ covered by ellipsis in operand \d+\s*has size (?P<size>\d+) which does not "
     r"broadcast with previously seen ellipsis with size (?P<prev>\d+)", _p_einsum_size),
    (r"einsum\(\): operands do not broadcast with remapped shapes \[original->remapped\]:((?:\s*\[[\d,\s]*\]->"
     r"\[[\d,\s]*\])+)", _p_einsum_remap),
    (r"Expected (\d)D tensor \[([^\]]*)\],? got (\d)D \[([^\]]*)\]", _p_seed_rank),
    (rf"Given normalized_shape={LIST}, expected input with shape \[\*,([\d,\s]*)\], but got input of size\s*{LIST}",
     _p_layernorm),
    (rf"expected input{LIST} to have {INT} channels, but got {INT} channels", _p_channels),
    (rf"input\.size\(-1\) must be equal to input_size\. Expected {INT}, got {INT}", _p_input_size),
    (rf"input has inconsistent input_size: got {INT} expected {INT}", _p_cell_input_size),  # LSTMCell, GRUCell
    (rf"Shape mismatch, {INT} != {INT}", _p_einops),
    (r"target size \(torch\.Size\(\[([\d,\s]*)\]\)\) that is different to the input size \(torch\.Size\("
     r"\[([\d,\s]*)\]\)\)", _p_target_size),
    (r"(?<![\w.])(?P<where>[\w.]+): (?:at the varied config )?(?P<tensor>[\w.\[\]'\"]+) expected "
     r"(?:(?P<erank>\d+) dims )?\[(?P<sym>[^\]]*)\] = "
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
        got = ints(actual.group(1))
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
