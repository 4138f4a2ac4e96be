"""`diagnose --explain`: read a PyTorch shape error (or a whole traceback) in the config's symbols.

Three steps. `_messages.parse` finds every shape message it knows in the text and turns it into
evidence: clashes (two sizes that should have agreed, with the role each plays), rank
mismatches and invalid views. `_algebra.Algebra` writes every number as sums and products of the
config's symbols (`768 = hidden_dim + context_dim = 512 + 256`), ranked by plausibility and by
the role the message gives the number. `_Scorer` here then matches the documented errors by those
roles (B*T against B, H_att against a feature-map size, ...), never by the default numbers,
so it works at any config.
"""

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aimespec.core.config import AimeConfig
from aimespec.core.symbols import symbol_values
from aimespec.core.violation import Violation
from aimespec.explain.algebra import Algebra
from aimespec.explain.documented import documented_error
from aimespec.explain.messages import Clash, Finding, from_violation, parse
from aimespec.explain.tracebacks import Frame, Literal, frames, hard_coded, literals_in, summary, user_frame


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
    where: str | None = None  # the user's frame nearest the error, when the text is a traceback
    code: str | None = None  # that frame's source line
    literals: list[Literal] = field(default_factory=list)  # sizes written as numbers in that line
    hard_coded: str = ""  # one sentence naming them
    advice: list[dict[str, str | None]] = field(default_factory=list)  # value findings: why and fix

    def to_json(self) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {"version": __version__, "numbers": self.numbers, "matches": [m.to_json() for m in self.matches],
                "explanation": self.explanation, "findings": self.findings, "batch": self.batch,
                "seq_len": self.seq_len, "where": self.where, "code": self.code,
                "literals": [lit.to_json() for lit in self.literals], "hard_coded": self.hard_coded,
                "advice": self.advice}


MATCH_THRESHOLD = 0.3


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
        elif c.role == "batch" and lo > 1 and hi % lo == 0 and hi != lo:
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
                      {hid: "hidden_dim", hid + ctx: "hidden_dim + context_dim", 2 * v["K"] * v["D"]: "2*K*D"})
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
            if i == 0 or t < 2 or total % t:  # axis 0 is the batch: never read as frames
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


MAX_TEXT = 32 * 1024  # characters read: a traceback's last error lies at its end
MAX_DIGITS = 24  # a longer number is no size of any config (and Python will not convert past 4300 digits)
_HUGE = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")


def bounded(text: str) -> tuple[str, str]:
    """The part of `text` that is read, in linear time, and a note saying what was left out ('' if nothing).

    Repeated lines are read once, numbers longer than MAX_DIGITS digits are not read as numbers,
    and of a longer text only the last MAX_TEXT characters (from a line start) are read.
    """
    notes = []
    huge = 0

    def drop(m: re.Match[str]) -> str:
        nonlocal huge
        huge += 1
        return f"<a {len(m.group(0))}-digit number>"

    text = _HUGE.sub(drop, text)
    if huge:
        notes.append(f"{huge} number{'s' if huge > 1 else ''} of more than {MAX_DIGITS} digits, no size of any "
                     "config, not read")
    if len(text) > MAX_TEXT:
        lines = list(dict.fromkeys(text.splitlines()))  # repeated frames and messages once, in order
        kept = "\n".join(lines)
        if len(kept) > MAX_TEXT:
            cut = kept.find("\n", len(kept) - MAX_TEXT)
            kept = kept[cut + 1:] if cut >= 0 else kept[-MAX_TEXT:]
            notes.append(f"only the last {len(kept):,} of {len(text):,} characters read")
        text = kept
    return text, "; ".join(notes)


def explain(text: str, cfg: AimeConfig, batch: int | None = None, seq_len: int | None = None) -> Explanation:
    """Explain a PyTorch shape error message (or a whole traceback) at `cfg`."""
    text, note = bounded(text)
    return _explain(text, parse(text), cfg, batch, seq_len, note)


def explain_violations(violations: Sequence[Violation], cfg: AimeConfig, batch: int | None = None,
                       seq_len: int | None = None) -> Explanation:
    """Explain aimespec's own violations from their structure (axes, sizes, bindings), never their text."""
    findings = [f for f in map(from_violation, violations) if f is not None]
    return _explain("\n".join(v.message for v in violations), findings, cfg, batch, seq_len)


def _explain(text: str, findings: list[Finding], cfg: AimeConfig, batch: int | None, seq_len: int | None,
             note: str = "") -> Explanation:
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
        for n, reading in f.stated.items():
            algebra.state(n, reading)
    frame = user_frame(frames(text))
    literals = hard_coded(frame, set(algebra.observed()), cfg, B, T, _first_reading(algebra)) if frame else []
    if frame:  # a number written in the failing line is that number, not a symbol of this config
        algebra.written.update({n: str(n) for n in literals_in(frame.code) if n in algebra.roles})
        algebra.written.update({lit.value: f"{lit.value} (hard-coded {lit.field})" if lit.default_only
                                else f"{lit.symbol} (hard-coded {lit.value})" for lit in literals})
    scorer = _Scorer(cfg, v, algebra)
    for f in findings:
        scorer.finding(f)
    ranked = sorted(scorer.best.items(), key=lambda kv: (-kv[1][0], kv[0]))
    matches = [Match(n, documented_error(n).title, round(s, 2), why, documented_error(n).fix)
               for n, (s, why) in ranked if s >= MATCH_THRESHOLD]
    if matches:
        algebra.prefer(_PREFER[matches[0].error], scorer.pins.get(matches[0].error, {}))
    numbers = {str(n): algebra.decompose(n) for n in algebra.observed()}  # every one, ties included (SPEC)
    advice = [f for f in findings if f.advice is not None]
    return Explanation(
        text=text, numbers=numbers, matches=matches,
        explanation=(f"({note}.)\n" if note else "") + _write(findings, numbers, matches, algebra, B, T, frame,
                                                                literals),
        findings=[f.to_json() for f in findings], batch=B, seq_len=T,
        where=frame.where if frame else None, code=frame.code if frame else None, literals=literals,
        hard_coded=summary(literals, frame) if frame else "",
        advice=[{"tensor": f.tensor, "rule": f.advice.rule, "why": f.advice.why, "fix": f.advice.fix}
                for f in advice if f.advice is not None],
    )


# after a match, numbers are read in the symbols that error is about
_PREFER: dict[int, frozenset[str]] = {
    1: frozenset({"B", "T"}),
    2: frozenset({"H_att", "W_att", "H", "W"}),
    3: frozenset({"B", "T_enc", "H_t", "W_t"}),
    4: frozenset({"hidden_dim", "context_dim", "K", "D"}),
    5: frozenset({"B", "attention_dim", "H_att", "W_att", "N"}),
}


def _first_reading(algebra: Algebra) -> Callable[[int], str | None]:
    def first(n: int) -> str | None:
        ranked = algebra.ranked(n)
        return ranked[0].text if ranked and len(ranked[0].atoms) > 1 else None

    return first


def _write(findings: list[Finding], numbers: dict[str, list[str]], matches: list[Match], algebra: Algebra,
           B: int, T: int, frame: Frame | None = None, literals: list[Literal] | None = None) -> str:
    lines: list[str] = []
    if not findings:
        lines.append(NOTHING_RECOGNISED)
    if frame is not None:
        lines.append(f"at {frame.where}" + (f": {frame.code}" if frame.code else ""))
    for f in findings:
        lines.append(f.describe(algebra))
    for n, decomps in numbers.items():
        if decomps:
            lines.append(f"{n} = {decomps[0]}" + (f" (also: {'; '.join(decomps[1:3])})" if len(decomps) > 1 else ""))
        elif n not in algebra.written:
            lines.append(NO_SIZE.format(n=n, B=B, T=T))
    lines += [lit.text for lit in literals or []]
    values = [f for f in findings if f.advice is not None]
    for f in values:
        assert f.advice is not None
        lines.append(f"Why: {f.advice.why}.")
        lines.append(f"Fix: {f.advice.fix}.")
    if matches:
        top = documented_error(matches[0].error)
        lines.append(f"Most likely Error {top.number} ({top.title}): {matches[0].reason}.")
        lines.append(f"Cause: {top.cause}.")
        lines.append(f"Fix: {top.fix}.")
        for m in matches[1:]:
            lines.append(f"Also possible: Error {m.error} ({m.title}, score {m.score}): {m.reason}.")
    elif values:
        kinds = {f.kind for f in values}
        lines.append(VALUE_NOT_SHAPE if "value" in kinds else PROBE_NOT_SHAPE if "probe" in kinds
                     else STRUCTURE_NOT_SHAPE)
    else:
        lines.append(NO_MATCH.format(B=B, T=T))
    return "\n".join(lines)


NOTHING_RECOGNISED = "No PyTorch shape message was recognised in the text."
NO_SIZE = "{n} is no size of this config (B={B}, T={T}): no product or concatenation of its symbols makes it."
NO_MATCH = ("No documented error fits (read with B={B}, T={T}; pass --batch/--seq-len or --set if the failing run "
            "used other sizes).")
STRUCTURE_NOT_SHAPE = ("No documented error fits: this is aimespec's structure, dtype or time check (what came back, "
                       "or how long it took, is not what the contract says).")
PROBE_NOT_SHAPE = ("No documented error fits the text: this is aimespec's behavioural probe (the shapes were right, "
                   "the outputs moved where they must not).")
VALUE_NOT_SHAPE = ("No documented error fits: this is aimespec's value check (the shapes were right, the numbers in "
                   "the tensor break the contract's invariant).")


__all__ = ["Explanation", "Match", "explain", "explain_violations"]
