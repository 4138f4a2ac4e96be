"""The DPGMM prior: contract, stick-breaking invariants, Kumaraswamy and Gamma sampling, per-example noise."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import aimespec
from aimespec import AimeConfig, ContractViolation
from reference_model import noise
from reference_model.prior import DPGMMPrior, sample_gamma, sample_kumaraswamy, stick_breaking

SMALL = AimeConfig.small()
torch.manual_seed(0)
PRIOR = DPGMMPrior(SMALL)


@given(B=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_prior_holds_its_contract(B: int, seed: int) -> None:
    assert aimespec.hold(PRIOR, "DPGMMPrior.forward", SMALL, B, 1, seed) == []
    h = torch.randn(B, SMALL.prior_input_dim, generator=torch.Generator().manual_seed(seed))
    out = PRIOR.infer(h, SMALL.prior_alpha_samples)._asdict()
    K, D = SMALL.max_components, SMALL.latent_dim
    assert out["pi"].shape == (B, K)
    assert out["means"].shape == out["log_vars"].shape == (B, K, D)
    assert out["kumar_a"].shape == out["kumar_b"].shape == out["sticks"].shape == (B, K - 1)
    assert out["alpha"].shape == (B, SMALL.prior_alpha_samples)
    assert out["gamma_shape"].shape == out["gamma_rate"].shape == (B,)


@pytest.mark.parametrize("scale", [0.0, 1.0, 100.0, 1e4])
def test_prior_invariants_hold_for_extreme_inputs(scale: float) -> None:
    h = torch.randn(6, SMALL.prior_input_dim, generator=torch.Generator().manual_seed(1)) * scale
    out = PRIOR.infer(h)._asdict()
    for value in out.values():
        assert torch.isfinite(value).all()
    torch.testing.assert_close(out["pi"].sum(-1), torch.ones(6), atol=1e-5, rtol=0)
    assert (out["pi"] >= 0).all()
    assert (out["kumar_a"] > 0).all() and (out["kumar_b"] > 0).all()
    assert ((out["sticks"] > 0) & (out["sticks"] < 1)).all()
    assert (out["alpha"] > 0).all()
    assert (out["gamma_shape"] > 0).all() and (out["gamma_rate"] > 0).all()
    torch.testing.assert_close(out["log_pi"].exp(), out["pi"])


def test_stick_breaking_matches_the_product_formula() -> None:
    v = torch.rand(5, 9, generator=torch.Generator().manual_seed(2)).clamp(0.01, 0.99)
    pi = stick_breaking(torch.log(v)).exp()
    expected = torch.empty(5, 10)
    rest = torch.ones(5)
    for k in range(9):
        expected[:, k] = v[:, k] * rest
        rest = rest * (1 - v[:, k])
    expected[:, 9] = rest
    torch.testing.assert_close(pi, expected)
    torch.testing.assert_close(pi.sum(-1), torch.ones(5))


def test_stick_breaking_is_stable_at_the_ends() -> None:
    log_v = torch.tensor([[-80.0, -80.0, -80.0], [math.log1p(-1e-6)] * 3])
    log_pi = stick_breaking(log_v)
    assert torch.isfinite(log_pi).all()
    torch.testing.assert_close(log_pi.exp().sum(-1), torch.ones(2), atol=1e-5, rtol=0)
    assert log_pi[0, -1].exp() > 0.99  # tiny sticks: the leftover holds the mass
    assert log_pi[1, 0].exp() > 0.99  # sticks near 1: the first weight holds it


def test_kumaraswamy_sample_has_the_right_mean() -> None:
    a = torch.tensor([[0.5, 2.0, 5.0]]).expand(40000, 3).contiguous()
    b = torch.tensor([[3.0, 1.0, 0.7]]).expand(40000, 3).contiguous()
    torch.manual_seed(3)
    v = sample_kumaraswamy(a, b).exp()
    assert ((v > 0) & (v < 1)).all()
    a0, b0 = a[0], b[0]
    # E[v] = b B(1 + 1/a, b)
    mean = b0 * torch.exp(torch.lgamma(1 + 1 / a0) + torch.lgamma(b0) - torch.lgamma(1 + 1 / a0 + b0))
    torch.testing.assert_close(v.mean(0), mean, atol=0.01, rtol=0)


def test_gamma_draws_have_the_right_moments_and_reparameterised_gradients() -> None:
    torch.manual_seed(4)
    shape = torch.tensor([0.3, 1.0, 5.0], requires_grad=True)
    rate = torch.tensor([1.0, 2.0, 0.5], requires_grad=True)
    x = sample_gamma(shape, rate, 100000)
    assert (x > 0).all() and torch.isfinite(x).all()
    with torch.no_grad():
        torch.testing.assert_close(x.mean(1), shape / rate, rtol=0.03, atol=0)
        torch.testing.assert_close(x.var(1), shape / rate**2, rtol=0.06, atol=0)
    x.mean(1).sum().backward()
    # d E[x] / d shape = 1 / rate, d E[x] / d rate = -shape / rate^2
    torch.testing.assert_close(shape.grad, 1 / rate.detach(), rtol=0.03, atol=0)
    torch.testing.assert_close(rate.grad, -shape.detach() / rate.detach() ** 2, rtol=0.03, atol=0)


def test_per_example_noise_makes_each_example_independent_of_its_batch() -> None:
    h = torch.randn(4, SMALL.prior_input_dim, generator=torch.Generator().manual_seed(5))
    seeds = [11, 22, 33, 44]
    with noise.per_example(seeds):
        batch = PRIOR(h, 6)
    for b in range(4):
        with noise.per_example([seeds[b]]):
            alone = PRIOR(h[b : b + 1], 6)
        for key in ("pi", "sticks", "alpha", "kumar_a", "means"):
            # the same noise; only matmul rounding may differ between batch sizes
            torch.testing.assert_close(alone[key][0], batch[key][b], rtol=1e-5, atol=1e-6)
    with noise.per_example(seeds):
        again = PRIOR(h, 6)
    assert torch.equal(again["alpha"], batch["alpha"]) and torch.equal(again["pi"], batch["pi"])


def test_feeding_h_without_the_context_is_error_4() -> None:
    with pytest.raises(ContractViolation, match=r"h expected \[B, hidden_dim\+context_dim\]"):
        PRIOR(torch.randn(2, SMALL.hidden_dim))


@pytest.mark.slow
def test_prior_at_the_default_config(cfg: AimeConfig) -> None:
    prior = DPGMMPrior(cfg)
    h = torch.randn(8, 768)
    assert prior.component_net(h).shape == (8, 1080)
    out = prior(h)
    assert out["pi"].shape == (8, 15)
    assert out["means"].shape == out["log_vars"].shape == (8, 15, 36)
    assert out["kumar_a"].shape == out["kumar_b"].shape == (8, 14)
    assert out["alpha"].shape == (8, 10)
    torch.testing.assert_close(out["pi"].sum(-1), torch.ones(8))
    assert aimespec.hold(prior, "DPGMMPrior.forward", cfg, 8, 16, 0) == []
