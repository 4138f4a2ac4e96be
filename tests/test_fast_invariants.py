"""The fast path's value tests (`invariants.holds_test`) agree with each invariant's `violation`:
True exactly where `violation` finds nothing, over drawn bounds, axes, dtypes and tensors with
NaN, Inf, exact bounds, negatives, empty and one-element shapes. A fast True where `violation`
would report something is a false green; a fast False only sends the call to the full validator."""

import math
from dataclasses import dataclass
from typing import Annotated

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Float
from torch import Tensor

from aimespec import AimeConfig, Contract, InRange, checked, checking, invariants
from aimespec.core.contract import forget_contracts
from aimespec.core.errors import ContractViolation
from aimespec.core.invariants import FiniteLoss, Invariant, Simplex, holds_test

DIMS = ("B", "T", "K")
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, 1.0, -1.0, 1e-3, -1e-3, 1.0 + 1e-3, -5e-4, 0.5, 1e6, -1e6]
DTYPES = [torch.float32, torch.float32, torch.float32, torch.float64, torch.float16, torch.int64, torch.int32]


@st.composite
def tensors(draw, rank=3):
    shape = [*draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))]
    if shape and draw(st.sampled_from([False] * 7 + [True])):  # now and then an empty tensor
        shape[draw(st.integers(0, rank - 1))] = 0
    shape = tuple(shape)
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["uniform", "simplex", "special", "special", "special", "constant"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if kind == "simplex" and shape and shape[-1]:
        t = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=-1)
    elif kind == "constant":
        t = torch.full(shape, draw(st.sampled_from(SPECIAL)), dtype=torch.float64)
    else:
        t = torch.rand(shape, generator=g, dtype=torch.float64) * draw(st.sampled_from([1.0, 2.0, 1e-3])) - draw(
            st.sampled_from([0.0, 0.5, 1e-4]))
    if kind == "special" and t.numel():
        for _ in range(draw(st.integers(1, 3))):
            t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from(SPECIAL))
    if not dtype.is_floating_point:
        t = torch.nan_to_num(t, nan=0.0, posinf=7.0, neginf=-7.0).round()
    t = t.to(dtype)
    if draw(st.booleans()) and t.dim() >= 2:  # a non-contiguous view, as a slice or a transpose gives
        t = t.transpose(0, 1)
    return t


bounds = st.sampled_from([0.0, 1.0, -1.0, 1e-3, -math.inf, math.inf])
in_ranges = st.builds(lambda lo, hi, lo_open, hi_open, atol: InRange("x", min(lo, hi), max(lo, hi), lo_open,
                                                                      hi_open, atol),
                      bounds, bounds, st.booleans(), st.booleans(), st.sampled_from([0.0, 1e-3]))
simplices = st.builds(lambda over, atol: Simplex("x", over=over, atol=atol),
                      st.sampled_from([(-1,), ("K",), ("T", "K"), (0,), ("B", "T", "K")]),
                      st.sampled_from([1e-3, 1e-6]))
losses = st.builds(lambda nonneg, atol: FiniteLoss("x", nonnegative=nonneg, atol=atol), st.booleans(),
                   st.sampled_from([0.0, 1e-5]))
any_invariant = st.one_of(in_ranges, simplices, losses)


def _verdict(inv: Invariant, t: torch.Tensor) -> str | type[Exception] | None:
    try:
        return inv.violation(t, DIMS, {})
    except Exception:  # the full validator meets it too
        return Exception


def _fast(test, t: torch.Tensor) -> bool | type[Exception]:
    try:
        return test(t)
    except Exception:  # the fast path answers False on any exception (_holds)
        return Exception


@settings(max_examples=400, deadline=None)
@given(st.lists(any_invariant, min_size=1, max_size=3), tensors())
def test_the_fast_test_holds_exactly_where_violation_finds_nothing(items, t):
    test = holds_test(items, DIMS)
    assert test is not None
    verdicts = [_verdict(inv, t) for inv in items]
    fast = _fast(test, t)
    if fast is True:  # never a false green
        assert all(v is None for v in verdicts), (items, t, verdicts)
    elif Exception not in verdicts and fast is not Exception:  # and no needless trip to the full validator
        assert any(v is not None for v in verdicts), (items, t, verdicts)


def test_simplex_reads_other_dtypes_as_float32_as_its_violation_does():
    """-0.99999999e-3 is above -atol in float64, but read as float32 (as `violation` reads it) it is the
    float32 nearest -1e-3, just below: the fast test must not pass what `violation` reports."""
    inv = Simplex("x", over=(-1,), atol=1e-3)
    t = torch.tensor([[-0.99999999e-3, 0.5, 0.50099999999]], dtype=torch.float64)
    assert inv.violation(t, ("B", "K"), {}) == "must be non-negative (a probability), but its minimum is -0.001"
    test = holds_test([inv], ("B", "K"))
    assert test is not None
    assert test(t) is False
    fine = torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64)
    assert inv.violation(fine, ("B", "K"), {}) is None
    assert test(fine) is True


@given(tensors(rank=0))
def test_one_element_tensors_are_read_as_they_are(t):
    for inv in (InRange("x", 0.0, 1.0), FiniteLoss("x", nonnegative=True)):
        test = holds_test([inv], ())
        assert test is not None
        assert _fast(test, t) is (_verdict(inv, t) is None)


def test_a_subclass_that_says_anew_what_is_wrong_gets_no_fast_test():
    @dataclass(frozen=True)
    class Below(InRange):
        def violation(self, value, dims, values):
            return "must stay below 0.25" if value.max().item() >= 0.25 else None

    below = Below("x", 0.0, 1.0)
    assert holds_test([below], DIMS) is None
    assert holds_test([InRange("x", 0.0, 1.0), below], DIMS) is None
    assert holds_test([InRange("x", 0.0, 1.0)], DIMS) is not None


@dataclass(frozen=True)
class _Quarter(InRange):
    """A user's stricter InRange: its own `violation`, no `_fast` of its own."""

    def violation(self, value, dims, values):
        return "must stay below 0.25" if value.max().item() >= 0.25 else None


def test_a_user_subclass_is_held_by_its_own_violation_through_a_checked_call():
    """End to end: InRange's fast test would pass 0.3 (no bounds); the subclass's `violation` does not."""

    class FastTestQuarterScale(Contract):
        @invariants(_Quarter("y", -math.inf, math.inf))
        def forward(self, x: Float[Tensor, "B K"]) -> Annotated[Float[Tensor, "B K"], "y"]: ...

    class Scale(torch.nn.Module):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.cfg, self.factor = AimeConfig.small(), factor

        @checked("FastTestQuarterScale.forward")
        def forward(self, x: Tensor) -> Tensor:
            return x * self.factor

    try:
        with checking("full"):
            assert Scale(0.2)(torch.ones(2, 5)).max().item() == pytest.approx(0.2)
            with pytest.raises(ContractViolation, match=r"must stay below 0\.25"):
                Scale(0.3)(torch.ones(2, 5))
    finally:
        forget_contracts(__name__)  # other tests walk every registered contract


def _around(x: float) -> list[float]:
    """x and its float64 neighbours; read as float32 too, below."""
    return [math.nextafter(x, -math.inf), x, math.nextafter(x, math.inf)] if math.isfinite(x) else [x]


def _boundary_cases():
    for lo, hi in ((0.0, 1.0), (-1.0, 1.0), (1.0, math.inf)):
        for low_open in (False, True):
            for high_open in (False, True):
                for atol in (0.0, 1e-3):
                    inv = InRange("x", lo, hi, low_open, high_open, atol)
                    edges = [*_around(lo), *_around(lo - atol), *_around(hi), *_around(hi + atol)]
                    for edge in edges:
                        if math.isfinite(edge):
                            yield inv, [edge, (lo + min(hi, lo + 2)) / 2]
    for atol in (1e-3, 1e-6):
        inv = Simplex("x", over=(-1,), atol=atol)
        for low in (-2 * atol, -1.5 * atol, *_around(-atol), 0.0):
            yield inv, [low, 0.5, 0.5 - low]
        for err in (*_around(atol), 2 * atol, 0.5 * atol):
            for sign in (1, -1):
                yield inv, [0.25, 0.25, 0.5 + sign * err]
    for atol in (0.0, 1e-5):
        for value in (*_around(-atol), 0.0, 1.0):
            yield FiniteLoss("x", nonnegative=True, atol=atol), [value]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fast_test_agrees_with_violation_at_every_boundary(dtype):
    """The minimum or maximum exactly at a bound, at a bound less its atol, and one float step
    either side of each; a simplex's minimum and its sums around -atol and 1 +- atol."""
    cases = 0
    for inv, row in _boundary_cases():
        t = torch.tensor([row], dtype=dtype)
        if isinstance(inv, FiniteLoss):
            t = t.reshape(())
        dims = ("B", "K")[: t.dim()]
        test = holds_test([inv], dims)
        assert test is not None
        assert test(t) is (inv.violation(t, dims, {}) is None), (inv, row, dtype)
        cases += 1
    assert cases > 250


def test_a_subclass_whose_own_fast_test_fails_is_held_by_its_violation():
    @dataclass(frozen=True)
    class Strict(InRange):
        def violation(self, value, dims, values):
            return "must be zero" if value.abs().max().item() > 0 else None

        def _fast(self, dims):
            raise RuntimeError("a bug in a user's fast test")

    assert holds_test([Strict("x", 0.0, 1.0)], DIMS) is None  # no fast test: each call asks `violation`
