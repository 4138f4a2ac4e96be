"""Where the task gradients are balanced: at the parameters (the seed's exact method, now with the
graph freed early and in-place rows) and at the model's outputs (approximate, one backward pass)."""

import math

import pytest
import torch
import torch.nn.functional as F

from aimespec import AimeConfig, checking
from reference_model.balancing import ALIGNED, ANGLE_MARGIN, RGB, ZERO_NORM, PCGrad, SumBalancer
from reference_model.losses import TASKS
from reference_model.synthetic import moving_shapes
from reference_model.trainer import Trainer, flatten_grads
from reference_model.world import build_model

SMALL = AimeConfig.small()
IDS = [3, 1, 4, 1]  # per-example noise: every method sees the same draws


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SMALL)


@pytest.fixture(scope="module")
def data():
    return moving_shapes(4, 4, SMALL.input_dim, SMALL.action_dim, seed=5)


def four_pass_task_gradients(trainer: Trainer, obs, act) -> torch.Tensor:
    """The seed's reference: one retained backward pass per task, flattened and stacked."""
    _, losses = trainer.forward(obs, act, IDS)
    rows = [flatten_grads(torch.autograd.grad(losses.tasks[name], trainer.params, retain_graph=True,
                                              allow_unused=True), trainer.params) for name in TASKS]
    return torch.stack(rows)


def reference_rgb(grads: torch.Tensor, cfg: AimeConfig) -> torch.Tensor:
    """RGB as the seed writes it (first call, no history), with the library's F.normalize/where forms."""
    norms = grads.norm(dim=1)
    nonzero = norms > ZERO_NORM
    gbar = torch.where(nonzero[:, None], grads / norms.clamp_min(ZERO_NORM)[:, None], 0.0)
    d = F.normalize(gbar[nonzero].mean(dim=0), dim=0)
    p = gbar @ d
    active = nonzero & (p.abs() <= ALIGNED)
    w = torch.where(active[:, None], F.normalize(d[None] - p[:, None] * gbar, dim=1), 0.0)
    cap = torch.where(active, torch.arccos(p.clamp(-1.0, 1.0)).clamp(max=math.pi / 2 - ANGLE_MARGIN), 0.0)
    alpha = torch.zeros(grads.shape[0], dtype=grads.dtype)
    grams = (gbar @ gbar.T, gbar @ w.T, w @ w.T)
    for _ in range(cfg.rgb_steps):
        a = alpha.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(RGB.rgb_loss(a, grams, nonzero, cfg.rgb_lambda), a)
        alpha = torch.minimum((alpha - cfg.rgb_lr * g).clamp_min(0.0), cap)
    rotated = torch.cos(alpha)[:, None] * gbar + torch.sin(alpha)[:, None] * w
    rotated = torch.where(nonzero[:, None], F.normalize(rotated, dim=1), 0.0)
    return (norms[:, None] * rotated).sum(dim=0)


def test_parameters_balancing_is_the_four_pass_reference(model, data):
    obs, act = data
    with checking("off"):
        reference = four_pass_task_gradients(Trainer(model, SMALL), obs, act)
        trainer = Trainer(model, SMALL)
        balanced, report, _ = trainer.balanced_at_parameters(obs, act, IDS)
        grads, _, _ = Trainer(model, SMALL).compute_task_gradients(obs, act, IDS)
    torch.testing.assert_close(grads, reference, rtol=0, atol=0)  # the same passes, written in place
    # the seed's RGB in double: its float32 vectors round by ~1e-6 relative (max 8e-5 here) themselves
    exact = reference_rgb(reference.double(), SMALL)
    torch.testing.assert_close(balanced.double(), exact, rtol=1e-5, atol=1e-5)
    assert (balanced.double() - exact).norm() <= (reference_rgb(reference, SMALL).double() - exact).norm()
    assert set(report) >= set(TASKS)


def test_outputs_balancing_of_the_sum_is_the_parameter_sum(model, data):
    """With SumBalancer both places give the sum of the task gradients (the chain rule is linear)."""
    obs, act = data
    with checking("off"):
        at_params, _, _ = Trainer(model, SMALL, SumBalancer(SMALL)).balanced_at_parameters(obs, act, IDS)
        at_outputs, _, _ = Trainer(model, SMALL, SumBalancer(SMALL), balance_at="outputs").balanced_at_outputs(
            obs, act, IDS)
    torch.testing.assert_close(at_outputs, at_params, rtol=1e-4, atol=1e-4 * at_params.abs().max().item())


def test_outputs_balancing_runs_one_backward_pass_into_the_parameters(data):
    obs, act = data
    for balance_at, passes in (("parameters", 3), ("outputs", 1)):  # the encoder feeds elbo, predictive, gan
        torch.manual_seed(0)
        trainer = Trainer(build_model(SMALL), SMALL, balance_at=balance_at)
        weight = next(iter(trainer.model.encoder.parameters()))
        seen = []
        weight.register_hook(lambda g, seen=seen: seen.append(g.shape))
        with checking("off"):
            trainer.step(obs, act, IDS)
        assert len(seen) == passes, balance_at


@pytest.mark.parametrize("balancer", [None, "pcgrad"])
def test_an_outputs_step_updates_finitely_and_reports_like_a_parameters_step(balancer):
    torch.manual_seed(0)
    trainer = Trainer(build_model(SMALL), SMALL, PCGrad(SMALL) if balancer else None, balance_at="outputs")
    if balancer is None:
        assert isinstance(trainer.balancer, RGB) and trainer.balancer.cfg.rgb_mu == 0.0  # no momentum
    obs, act = moving_shapes(4, 4, SMALL.input_dim, SMALL.action_dim, seed=1)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    report = trainer.step(obs, act, IDS)
    reference = Trainer(build_model(SMALL), SMALL).step(obs, act, IDS)
    assert set(report) == set(reference) and all(math.isfinite(v) for v in report.values())
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("decoder.") for n in moved) and any(n.startswith("perceiver.") for n in moved)


def test_an_unknown_balancing_place_is_refused(model):
    with pytest.raises(ValueError, match="balance_at must be one of parameters, outputs, got 'loss'"):
        Trainer(model, SMALL, balance_at="loss")  # type: ignore[arg-type]
