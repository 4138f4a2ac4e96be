"""Value invariants: the seed's Shape Validation Checklist as checks on real tensors.

Each invariant names the tensor it holds for (its path in the contract), checks it and
says in one phrase what is wrong, describes itself for `aimespec spec`, and tells the
input generator how to draw a valid tensor. Meta tensors carry no values: skipped.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from aimespec.core.dims import evaluate


@dataclass(frozen=True)
class Invariant:
    path: str
    # whether `violation` reads `values` (the symbols' values); False: the fast path may hand it
    # only the call's own symbols instead of a copy of every one
    reads_symbols: ClassVar[bool] = True

    def violation(self, value: torch.Tensor, dims: Sequence[str], values: dict[str, int]) -> str | None:
        """A phrase saying what is wrong (completing "`path` ..."), or None when it holds."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def draw(self, shape: tuple[int, ...], dims: Sequence[str], values: dict[str, int], g: torch.Generator):
        """A tensor of `shape` that satisfies this invariant (None: the default draw does)."""
        return None

    def _fast(self, dims: Sequence[str]) -> "ExtremaTest | None":
        """For the fast path (fastcheck.py): a test of a plain (detached), non-empty tensor given its
        `_extrema`, True only where `violation` would find nothing; None: the fast path calls
        `violation`. One (min, max) serves every invariant of a tensor, and what the test needs
        (axes, bounds) is worked out here once per contract and config, not at every call."""
        return None


ExtremaTest = Callable[[torch.Tensor, float, float], bool]


def _axes(over: tuple[str | int, ...], dims: Sequence[str]) -> tuple[int, ...]:
    return tuple(dims.index(o) if isinstance(o, str) else o % len(dims) for o in over)


@dataclass(frozen=True)
class Simplex(Invariant):
    """Non-negative and summing to one over the named axes."""

    reads_symbols: ClassVar[bool] = False

    over: tuple[str | int, ...] = (-1,)
    atol: float = 1e-3

    def _over_text(self) -> str:
        return " x ".join(str(o) for o in self.over)

    def violation(self, value, dims, values):
        axes = _axes(self.over, dims)
        v = _plain(value)
        if v.dtype != torch.float32:
            v = v.float()
        low, high = _extrema(v)
        if not (math.isfinite(low) and math.isfinite(high)):
            return "holds NaN or Inf"
        if low < -self.atol:
            return f"must be non-negative (a probability), but its minimum is {low:.4g}"
        sum_low, sum_high = _extrema(v.sum(dim=axes))
        err = max(sum_high - 1, 1 - sum_low)  # the largest |sum - 1|, from one more pass
        if err > self.atol:
            return f"must sum to 1 over {self._over_text()}, but the largest |sum - 1| is {err:.4g}"
        return None

    def _fast(self, dims):
        try:
            axes = _axes(self.over, dims)
        except (ValueError, ZeroDivisionError):
            return None  # an axis the tensor lacks: `violation` says so
        atol = self.atol

        def holds(v: torch.Tensor, low: float, high: float) -> bool:
            if v.dtype != torch.float32:  # `violation` reads it as float32: its extrema may differ
                return self.violation(v, dims, {}) is None
            if not (math.isfinite(low) and math.isfinite(high)) or low < -atol:
                return False
            sum_low, sum_high = _extrema(v.sum(dim=axes))
            return not max(sum_high - 1, 1 - sum_low) > atol

        return holds

    def describe(self) -> str:
        return f"{self.path} sums to 1 over {self._over_text()}"

    def draw(self, shape, dims, values, g):
        axes = _axes(self.over, dims)
        logits = torch.randn(shape, generator=g)
        flat = logits.movedim(axes, tuple(range(-len(axes), 0)))
        lead = flat.shape[: flat.dim() - len(axes)]
        probs = torch.softmax(flat.reshape(*lead, -1), dim=-1).reshape(flat.shape)
        return probs.movedim(tuple(range(-len(axes), 0)), axes).contiguous()


@dataclass(frozen=True)
class InRange(Invariant):
    """Every element in [low, high] (open ends where asked)."""

    reads_symbols: ClassVar[bool] = False

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    atol: float = 0.0  # rounding slack on closed ends (perplexity of one code is exp(0) ~ 1)

    def _interval(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        return f"{lo}{_num(self.low)}, {_num(self.high)}{hi}"

    def violation(self, value, dims, values):
        v = _plain(value)
        if v.numel() == 0:
            return None
        lo, hi = _extrema(v)
        if v.is_floating_point() and not (math.isfinite(lo) and math.isfinite(hi)):
            return "holds NaN or Inf"
        bad_low = lo <= self.low if self.low_open else lo < self.low - self.atol
        bad_high = hi >= self.high if self.high_open else hi > self.high + self.atol
        if bad_low or bad_high:
            return f"must lie in {self._interval()}, but spans [{lo:.4g}, {hi:.4g}]"
        return None

    def _fast(self, dims):
        low, high, low_open, high_open = self.low, self.high, self.low_open, self.high_open
        low_slack, high_slack = self.low - self.atol, self.high + self.atol

        def holds(v: torch.Tensor, lo: float, hi: float) -> bool:
            if v.is_floating_point() and not (math.isfinite(lo) and math.isfinite(hi)):
                return False
            if (lo <= low) if low_open else (lo < low_slack):
                return False
            return not ((hi >= high) if high_open else (hi > high_slack))

        return holds

    def describe(self) -> str:
        return f"{self.path} in {self._interval()}"

    def draw(self, shape, dims, values, g):
        lo = self.low if math.isfinite(self.low) else -1.0
        hi = self.high if math.isfinite(self.high) else lo + 2.0
        return lo + (hi - lo) * (0.05 + 0.9 * torch.rand(shape, generator=g))


def Positive(path: str) -> InRange:
    return InRange(path, 0.0, math.inf, low_open=True)


@dataclass(frozen=True)
class IntRange(Invariant):
    """Integers in [low, high]; bounds may be dim expressions (`num_codes-1`)."""

    low: str = "0"
    high: str = "0"

    def violation(self, value, dims, values):
        if value.is_floating_point():
            return None  # the dtype check already reported it
        lo, hi = evaluate(self.low, values), evaluate(self.high, values)
        if value.numel() == 0 or lo is None or hi is None:
            return None
        vmin, vmax = _extrema(value)
        if vmin < lo or vmax > hi:
            return f"must hold indices in [{self.low}, {self.high}] = [{lo}, {hi}], but spans [{vmin}, {vmax}]"
        return None

    def describe(self) -> str:
        return f"{self.path} integers in [{self.low}, {self.high}]"

    def draw(self, shape, dims, values, g):
        lo, hi = evaluate(self.low, values), evaluate(self.high, values)
        return torch.randint(lo or 0, (hi or 0) + 1, shape, generator=g)


@dataclass(frozen=True)
class FiniteLoss(Invariant):
    """A finite scalar; `nonnegative` for reconstruction and KL terms."""

    reads_symbols: ClassVar[bool] = False

    nonnegative: bool = False
    atol: float = 1e-5

    def violation(self, value, dims, values):
        v = value.detach()
        if not torch.isfinite(v).all():
            return f"must be finite, but is {v.float().flatten()[:4].tolist()}"
        if self.nonnegative and v.numel() and v.min().item() < -self.atol:
            return f"must be >= 0, but is {v.min().item():.4g}"
        return None

    def _fast(self, dims):
        floor = -self.atol if self.nonnegative else -math.inf

        def holds(v: torch.Tensor, lo: float, hi: float) -> bool:
            # a NaN makes both extrema NaN, an Inf shows in one: `isfinite(v).all()` without a mask
            return math.isfinite(lo) and math.isfinite(hi) and not lo < floor

        return holds

    def describe(self) -> str:
        return f"{self.path} finite" + (" and >= 0" if self.nonnegative else "")

    def draw(self, shape, dims, values, g):
        x = torch.randn(shape, generator=g)
        return x.abs() if self.nonnegative else x


def _plain(value: torch.Tensor) -> torch.Tensor:
    """The tensor without its autograd history: `detach()` only where there is one (a check is
    called ~100 times a forward, and a detached view is one more tensor object each time)."""
    return value.detach() if value.requires_grad else value


def _extrema(v: torch.Tensor) -> tuple[float, float]:
    """(min, max) in one pass; a NaN anywhere makes both NaN and an Inf shows in one of them, so
    `isfinite(min) and isfinite(max)` says whether every element is finite (no full-size mask).
    One element (a loss, a perplexity, the sum of a single simplex) is read as it is."""
    if v.numel() == 1:
        x = v.item()
        return x, x
    lo, hi = torch.aminmax(v)
    return lo.item(), hi.item()


def _fast_is_own(inv: Invariant) -> bool:
    """Whether the invariant's `_fast` was written with its `violation`: a subclass that says anew
    what is wrong (its own `violation`) has no fast test until it writes its own `_fast` too."""
    mro = type(inv).__mro__
    return next(c for c in mro if "_fast" in c.__dict__) is next(c for c in mro if "violation" in c.__dict__)


def _fast_of(inv: Invariant, dims: Sequence[str]) -> ExtremaTest | None:
    if not _fast_is_own(inv):
        return None
    try:
        return inv._fast(dims)
    except Exception:  # a subclass's own `_fast` that fails: its `violation` judges every call
        return None


def holds_test(invariants: Sequence[Invariant], dims: Sequence[str]) -> Callable[[torch.Tensor], bool] | None:
    """One test for every invariant of a tensor, True only where each `violation` finds nothing;
    None when one of them has no fast test. The tensor's extrema are computed once for all."""
    tests = [_fast_of(inv, dims) for inv in invariants]
    if not tests or any(t is None for t in tests):
        return None
    ready: tuple[ExtremaTest, ...] = tuple(t for t in tests if t is not None)

    def holds(value: torch.Tensor) -> bool:
        v = _plain(value)
        if v.numel() == 0:  # no extrema: each invariant says what an empty tensor means
            return all(inv.violation(v, dims, {}) is None for inv in invariants)
        lo, hi = _extrema(v)
        return all(test(v, lo, hi) for test in ready)

    return holds


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


def check_value(inv: Invariant, value: object, dims: Sequence[str], values: dict[str, int]) -> str | None:
    """Apply an invariant to a value when it is a real tensor (meta tensors carry no values)."""
    if not isinstance(value, torch.Tensor) or value.is_meta:
        return None
    return inv.violation(value, dims, values)


# --- behavioural declarations: read by the probes of `aimespec check`, not by the validator ----------
@dataclass(frozen=True)
class Declaration(Invariant):
    """A promise about behaviour over several calls (no tensor of one call can break it)."""

    def violation(self, value, dims, values):
        return None  # the probes check it


@dataclass(frozen=True)
class Causal(Declaration):
    """Outputs at step t depend only on inputs at steps <= t along the time axis `axis`.

    `inputs` / `outputs` name the tensors (contract paths) the probe changes and compares;
    empty means every input / output that has the axis. `aimespec check` probes it: the inputs
    at steps > t are replaced, and no output at a step <= t may change.
    """

    path: str = field(default="(causal)", init=False)
    axis: str = "T"
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def describe(self) -> str:
        outs = ", ".join(self.outputs) or "every output"
        return f"causal over {self.axis}: {outs} at step t depends only on steps <= t"


@dataclass(frozen=True)
class Stateful(Declaration):
    """The component carries state between calls by design (e.g. a momentum): `reason` says which.

    The `repeat` probe then checks that the same state and inputs give the same result (a
    snapshot of the object before each compared call), instead of calls leaving no trace.
    """

    path: str = field(default="(stateful)", init=False)
    reason: str = ""

    def describe(self) -> str:
        return "carries state between calls" + (f" ({self.reason})" if self.reason else "")


def declared(items: Sequence[Invariant], kind: type) -> Invariant | None:
    """The first declaration of `kind` (Causal, Stateful) among a contract's invariants."""
    return next((inv for inv in items if isinstance(inv, kind)), None)
