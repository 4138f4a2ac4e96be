"""The four task losses: finite 0-dim tensors, reconstruction and KL terms >= 0, named terms."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from aimespec import AimeConfig, ContractViolation, checking
from reference_model.losses import (
    TASKS,
    TERMS,
    TaskLosses,
    check_losses,
    compute_losses,
    discriminator_loss,
    loss_problems,
)
from reference_model.synthetic import moving_shapes
from reference_model.world import build_model

SMALL = AimeConfig.small()


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(1)
    model = build_model(SMALL)
    obs, act = moving_shapes(3, 5, SMALL.input_dim, SMALL.action_dim, seed=4)
    out = model.forward_sequence(obs, act)
    return model, obs, act, out, compute_losses(out, obs, model.discriminator)


def test_tasks_and_terms_are_finite_scalars(setup):
    *_, losses = setup
    assert isinstance(losses, TaskLosses)
    assert list(losses.tasks) == list(TASKS) == ["elbo", "perceiver", "predictive", "adversarial"]
    assert set(losses.terms) == set(TERMS)
    for name, value in losses.items().items():
        assert value.dim() == 0, name
        assert math.isfinite(value.item()), name
    for name, (_, nonnegative) in TERMS.items():
        if nonnegative:
            assert losses.terms[name].item() >= 0, name
    assert loss_problems(losses) == []
    check_losses(losses)  # full mode: nothing to report


def test_each_task_is_the_sum_of_its_terms(setup):
    *_, losses = setup
    for task in TASKS:
        parts = [v for k, v in losses.terms.items() if TERMS[k][0] == task]
        torch.testing.assert_close(losses.tasks[task], sum(parts))
    assert losses.stacked().shape == (4,)


def test_terms_match_independent_formulas(setup):
    model, obs, _, out, losses = setup
    recon = ((out["reconstructions"] - obs) ** 2).sum(dim=(2, 3, 4)).mean()
    torch.testing.assert_close(losses.terms["reconstruction"], recon)
    torch.testing.assert_close(losses.terms["tokenizer_reconstruction"],
                               F.mse_loss(out["tokenizer_reconstructions"], obs))
    torch.testing.assert_close(losses.terms["vq"], out["vq_loss"])
    # the generator's GAN loss is -log D(x_hat), computed here from the probabilities
    score = model.discriminator(out["reconstructions"])
    torch.testing.assert_close(losses.terms["gan"], -torch.log(score).mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses.terms["diversity"], out["diversity_loss"])


def test_kl_to_the_mixture_vanishes_when_the_posterior_is_a_component(setup):
    """KL(q || sum_k pi_k N_k) <= -log pi_j when q = N_j: a one-component mixture gives 0."""
    model, obs, _, out, _ = setup
    K = SMALL.max_components
    weights = torch.zeros_like(out["mixture_weights"])
    weights[..., 0] = 1.0
    fake = dataclasses.replace(
        out,
        mixture_weights=weights,
        log_mixture_weights=torch.log(weights.clamp_min(1e-30)),
        prior_means=out["mu"].unsqueeze(2).expand(-1, -1, K, -1).detach(),
        prior_log_vars=out["logvar"].unsqueeze(2).expand(-1, -1, K, -1).detach(),
    )
    losses = compute_losses(fake, obs, model.discriminator)
    assert abs(losses.terms["kl_z"].item()) < 1e-4
    assert losses.terms["kl_z"].item() >= -1e-6


def test_stick_kl_stays_non_negative_where_its_truncated_series_dips_below_zero(setup):
    """Kumaraswamy(1, b) is Beta(1, b): the true KL is 0, the 10-term series gives about -0.012 at b=1.5."""
    model, obs, _, out, _ = setup
    fake = dataclasses.replace(out, kumar_a=torch.ones_like(out.kumar_a), kumar_b=torch.full_like(out.kumar_b, 1.5),
                               alpha=torch.full_like(out.alpha, 1.5))
    term = compute_losses(fake, obs, model.discriminator).terms["kl_sticks"].item()
    assert 0.0 <= term < 1e-6


def test_predictive_dynamics_is_zero_for_a_single_frame():
    torch.manual_seed(2)
    model = build_model(SMALL)
    obs, act = moving_shapes(2, 1, SMALL.input_dim, SMALL.action_dim, seed=0)
    with torch.no_grad():
        out = model.forward_sequence(obs, act)
        losses = compute_losses(out, obs, model.discriminator)
    assert losses.terms["attention_dynamics"].item() == 0.0
    assert all(math.isfinite(v.item()) for v in losses.items().values())


def test_the_adversarial_loss_is_stable_for_confident_discriminators(setup):
    model, obs, _, out, _ = setup
    with torch.no_grad():
        head = model.discriminator.head
        saved = head.bias.clone()
        try:
            head.bias.fill_(-200.0)  # D(x_hat) = sigmoid(-200) underflows to 0: -log 0 would be inf
            losses = compute_losses(out, obs, model.discriminator)
            d_loss = discriminator_loss(model.discriminator, obs, out["reconstructions"])
        finally:
            head.bias.copy_(saved)
    assert math.isfinite(losses.terms["gan"].item()) and losses.terms["gan"].item() > 150
    assert math.isfinite(d_loss.item())


def test_check_losses_names_the_bad_term(setup):
    *_, losses = setup
    nan_terms = {**losses.terms, "kl_sticks": torch.tensor(float("nan"))}
    bad = TaskLosses(tasks=losses.tasks, terms=nan_terms)
    with pytest.raises(ContractViolation, match="losses: kl_sticks must be finite"):
        check_losses(bad)
    negative = TaskLosses(tasks=losses.tasks, terms={**losses.terms, "reconstruction": torch.tensor(-0.5)})
    with pytest.raises(ContractViolation, match=r"losses: reconstruction must be >= 0, but is -0\.5"):
        check_losses(negative)
    vector = TaskLosses(tasks={**losses.tasks, "elbo": torch.ones(3)}, terms=losses.terms)
    with pytest.raises(ContractViolation, match=r"losses: elbo must be a 0-dim tensor \(scalar\), got shape \[3\]"):
        check_losses(vector)
    # diversity may be negative (it is not a KL or a reconstruction)
    assert loss_problems(TaskLosses(tasks=losses.tasks, terms={**losses.terms, "diversity": torch.tensor(-1.0)})) == []


def test_check_losses_honours_the_checking_mode(setup):
    *_, losses = setup
    bad = TaskLosses(tasks=losses.tasks, terms={**losses.terms, "kl_z": torch.tensor(float("inf"))})
    for mode in ("shapes", "off"):
        with checking(mode):
            check_losses(bad)  # only `full` checks values
    with checking("full"), pytest.raises(ContractViolation, match="kl_z"):
        check_losses(bad)
