"""Gradient balancing: RGB's guarantees, PCGrad and Sum, and a toy two-task comparison."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import aimespec
from aimespec import AimeConfig, checking
from reference_model.balancing import RGB, GradientBalancer, PCGrad, SumBalancer

SMALL = AimeConfig.small()
MEAN = SMALL.replace(rgb_aggregation="mean")


def _grads(seed: int, T: int, P: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, P, generator=g, dtype=torch.float64) * torch.rand(T, 1, generator=g, dtype=torch.float64) * 5


@pytest.mark.parametrize("cls", [RGB, SumBalancer, PCGrad])
@given(seed=st.integers(0, 2**16))
def test_balancers_hold_the_contract(cls: type[GradientBalancer], seed: int) -> None:
    assert aimespec.hold(cls, "RGB.balance", SMALL, 1, 1, seed) == []
    balancer = cls(SMALL)
    out = balancer.balance(_grads(seed, 3, 17))
    assert out.shape == (17,) and torch.isfinite(out).all()


@given(
    seed=st.integers(0, 2**16),
    T=st.integers(2, 6),
    P=st.integers(2, 40),
    calls=st.integers(1, 4),
    aggregation=st.sampled_from(["norm_weighted", "mean"]),
)
def test_rgb_rotates_every_task_toward_the_consensus_and_keeps_it_a_descent_direction(
    seed: int, T: int, P: int, calls: int, aggregation: str
) -> None:
    """The guarantee for conflicting gradients: <r_i, d> >= <gbar_i, d> and <r_i, gbar_i> > 0, every call."""
    rgb = RGB(SMALL.replace(rgb_aggregation=aggregation))
    for k in range(calls):  # later calls: warm-started alpha and a momentum consensus
        step = rgb.rotate(_grads(seed + k, T, P))
        assert step.consensus is not None
        d = step.consensus
        toward = step.rotated @ d
        before = step.unit @ d
        assert (toward >= before - 1e-9).all()
        assert ((step.rotated * step.unit).sum(-1) > 0).all()
        torch.testing.assert_close(step.rotated.norm(dim=-1), torch.ones(T, dtype=torch.float64))
        assert ((step.alpha >= 0) & (step.alpha < math.pi / 2)).all()
        # alpha never exceeds the task's angle to d: rotated at most onto the consensus
        assert (step.alpha <= torch.arccos(before.clamp(-1, 1)) + 1e-9).all()


def test_a_large_warm_start_never_rotates_a_task_past_the_consensus() -> None:
    # three tasks: two nearly along e0 (close to the consensus), one along e1
    grads = torch.tensor([[1.0, 0.02, 0.0], [1.0, -0.02, 0.0], [0.3, 1.0, 0.0]], dtype=torch.float64)
    rgb = RGB(SMALL)
    rgb.alpha = torch.full((3,), 1.5, dtype=torch.float64)  # a stale, large warm start
    step = rgb.rotate(grads)
    theta = torch.arccos((step.unit @ step.consensus).clamp(-1, 1))
    assert (step.alpha <= theta + 1e-12).all()
    assert (step.rotated @ step.consensus >= step.unit @ step.consensus - 1e-12).all()


@given(seed=st.integers(0, 2**16), T=st.integers(2, 6), P=st.integers(2, 40))
def test_rgb_first_call_guarantees(seed: int, T: int, P: int) -> None:
    """First call (d = y): with "mean", <g, d> >= ||mean gbar||; two tasks never end further apart."""
    grads = _grads(seed, T, P)
    rgb = RGB(MEAN)
    g = rgb.balance(grads)
    unit = F.normalize(grads, dim=1)
    assert g @ rgb.consensus >= unit.mean(0).norm() - 1e-9
    pair = RGB(SMALL).rotate(grads[:2])
    cos_before = F.cosine_similarity(grads[0], grads[1], dim=0)
    cos_after = F.cosine_similarity(pair.rotated[0], pair.rotated[1], dim=0)
    assert cos_after >= cos_before - 1e-9


def test_rgb_gram_loss_matches_the_explicit_vectors() -> None:
    grads = _grads(3, 4, 25)
    rgb = RGB(SMALL)
    step = rgb.rotate(grads)
    r, gbar, T = step.rotated, step.unit, 4
    explicit = (T * (T - 1) / 2 - (r.sum(0).norm() ** 2 - T) / 2) / (T * (T - 1))
    explicit = explicit + SMALL.rgb_lambda * ((r - gbar) ** 2).sum() / (4 * T)
    assert rgb.last_loss == pytest.approx(float(explicit), rel=1e-9)


def test_rgb_warm_starts_and_uses_momentum() -> None:
    rgb = RGB(SMALL)
    first = rgb.rotate(_grads(1, 3, 10))
    alpha1, d1 = first.alpha.clone(), first.consensus.clone()
    grads2 = _grads(2, 3, 10)
    second = rgb.rotate(grads2)
    y = F.normalize(F.normalize(grads2, dim=1).mean(0), dim=0)
    torch.testing.assert_close(second.consensus, F.normalize(SMALL.rgb_mu * d1 + (1 - SMALL.rgb_mu) * y, dim=0))
    fresh = RGB(SMALL)
    fresh.alpha = alpha1
    fresh.consensus = d1
    torch.testing.assert_close(fresh.rotate(grads2).alpha, second.alpha)  # the state is alpha and d
    rgb.reset()
    assert rgb.alpha is None and rgb.consensus is None


@pytest.mark.parametrize("aggregation", ["norm_weighted", "mean"])
def test_identical_directions_are_not_rotated(aggregation: str) -> None:
    v = torch.randn(30, dtype=torch.float64)
    grads = torch.stack([v, 3 * v, 0.5 * v, 10 * v])
    out = RGB(SMALL.replace(rgb_aggregation=aggregation)).balance(grads)
    assert F.cosine_similarity(out, v, dim=0) == pytest.approx(1.0, abs=1e-12)
    expected = grads.norm(dim=1).sum() if aggregation == "norm_weighted" else 1.0
    assert out.norm().item() == pytest.approx(float(expected), rel=1e-9)


def test_zero_and_cancelling_gradients() -> None:
    rgb = RGB(SMALL)
    assert torch.equal(rgb.balance(torch.zeros(3, 8)), torch.zeros(8))
    grads = _grads(4, 3, 8)
    with_zero = torch.cat([grads, torch.zeros(1, 8, dtype=torch.float64)])
    torch.testing.assert_close(RGB(SMALL).balance(with_zero), RGB(SMALL).balance(grads))  # a zero task is ignored
    one = torch.stack([grads[0], torch.zeros(8, dtype=torch.float64)])
    torch.testing.assert_close(RGB(SMALL).balance(one), grads[0])  # a single task is its own balance
    opposite = torch.stack([grads[0], -2 * grads[0]])
    torch.testing.assert_close(RGB(SMALL).balance(opposite), opposite.sum(0))  # no consensus: no rotation


def test_sum_and_pcgrad() -> None:
    grads = _grads(5, 4, 12)
    torch.testing.assert_close(SumBalancer(SMALL).balance(grads), grads.sum(0))
    agree = grads.abs()  # non-negative: no conflicts, PCGrad is the sum
    torch.testing.assert_close(PCGrad(SMALL).balance(agree), agree.sum(0))
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    out = PCGrad(SMALL).balance(torch.stack([g1, g2]))
    # g1 projected off g2: [0.5, 0.5]; g2 projected off g1: [0, 1]
    torch.testing.assert_close(out, torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert out @ g1 >= 0 and out @ g2 >= 0  # with two tasks PCGrad never ascends either
    shuffled = [PCGrad(SMALL, shuffle_seed=3).balance(grads) for _ in range(2)]
    torch.testing.assert_close(shuffled[0], shuffled[1])


# --- a toy two-task problem -----------------------------------------------------------------------
A, B_ = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])
SCALE = 100.0  # task 2's loss (and gradient) is 100x task 1's


def _toy_losses(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([0.5 * ((x - A) ** 2).sum(), SCALE * 0.5 * ((x - B_) ** 2).sum()])


def _toy_grads(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x - A, SCALE * (x - B_)])


def _pareto_gap(g: torch.Tensor) -> float:
    """Norm of the min-norm point of the convex hull of the two task gradients (0: Pareto-stationary)."""
    diff = g[0] - g[1]
    gamma = ((g[1] - g[0]) @ g[1] / (diff @ diff)).clamp(0, 1)
    return float((gamma * g[0] + (1 - gamma) * g[1]).norm())


def _descend(balancer: GradientBalancer, checkpoints: tuple[int, ...], lr: float) -> dict[int, tuple[float, float]]:
    """(max relative task loss, Pareto gap) after each checkpoint's number of gradient steps."""
    x = torch.tensor([0.0, 3.0])
    start = _toy_losses(x)
    seen = {}
    for step in range(1, max(checkpoints) + 1):
        x = x - lr * balancer.balance(_toy_grads(x))
        if step in checkpoints:
            seen[step] = float((_toy_losses(x) / start).max()), _pareto_gap(_toy_grads(x))
    return seen


def test_toy_two_quadratics_rgb_balances_the_tasks_better_than_the_sum() -> None:
    """Two quadratics with minima at (+-1, 0), the second scaled by 100, from (0, 3), GD lr 1e-3.

    Measured (max over tasks of L_i / L_i(x0); the best point on the Pareto front gives 0.1):
    Sum converges to a Pareto-stationary point dominated by task 2 (0.392), PCGrad to a better
    one (0.346), RGB ("norm_weighted") stays lower at every checkpoint (0.10-0.32) but, with
    its momentum consensus and warm-started angles, drifts along the front instead of settling
    (its Pareto gap stays 1e-2 to 5e-2, Sum's and PCGrad's fall below 1e-5).
    """
    checkpoints, lr = (100, 200, 300, 400), 1e-3
    runs = {
        name: _descend(cls(SMALL), checkpoints, lr)
        for name, cls in [("sum", SumBalancer), ("pcgrad", PCGrad), ("rgb", RGB)]
    }
    for steps in checkpoints:
        (sum_max, sum_gap), (pc_max, pc_gap), (rgb_max, _) = (runs[n][steps] for n in ("sum", "pcgrad", "rgb"))
        assert rgb_max < pc_max < sum_max
        if steps >= 200:
            assert sum_gap < 1e-5 and pc_gap < 1e-5
    assert runs["sum"][400][0] == pytest.approx(0.392, abs=2e-3)  # the sum's fixed point: (A + 100 B) / 101


@pytest.mark.slow
def test_rgb_at_the_default_config_on_a_million_parameters(cfg: AimeConfig) -> None:
    grads = torch.randn(4, 1_000_000)
    rgb = RGB(cfg)
    out = rgb.balance(grads)
    assert out.shape == (1_000_000,) and torch.isfinite(out).all()
    step = rgb.rotate(grads)
    assert (step.rotated @ step.consensus >= step.unit @ step.consensus - 1e-5).all()
    assert aimespec.hold(RGB, "RGB.balance", cfg, 8, 16, 0) == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), T=st.integers(1, 5), P=st.integers(1, 40),
       aggregation=st.sampled_from(["norm_weighted", "mean"]),
       kind=st.sampled_from(["random", "zero", "twin", "cancel"]))
def test_balance_computes_aggregate_of_rotate_without_its_task_by_parameter_vectors(seed, T, P, aggregation, kind):
    # `balance` works from the Gram matrix (no [T, P] temporaries); `rotate` keeps the vectors: over a
    # sequence of calls (momentum, warm starts) both give the same update, consensus and angles.
    cfg = AimeConfig().replace(rgb_aggregation=aggregation)
    lean, explicit = RGB(cfg), RGB(cfg)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(3):
        g = torch.randn(T, P, generator=gen, dtype=torch.float64)
        if kind == "zero":
            g[0] = 0
        elif kind == "twin" and T > 1:
            g[1] = 2.5 * g[0]
        elif kind == "cancel" and T > 1:
            g[1] = -g[0]
        with checking("off"):
            got, want = lean.balance(g.clone()), explicit.aggregate(explicit.rotate(g))
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        for mine, theirs in ((lean.consensus, explicit.consensus), (lean.alpha, explicit.alpha)):
            assert (mine is None) == (theirs is None)
            if mine is not None:
                torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)
