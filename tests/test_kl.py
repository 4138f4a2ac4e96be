"""The KL terms against closed forms, torch.distributions and Monte Carlo estimates."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Beta, Gamma, Independent, MixtureSameFamily, Normal, kl_divergence
from torch.distributions import Categorical as Cat

from reference_model.kl import kl_gamma, kl_gaussian, kl_gaussian_mixture, kl_kumaraswamy_beta, kl_sticks


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_kl_gamma_matches_torch_distributions() -> None:
    g = _gen(0)
    a1, b1, a2, b2 = (torch.rand(50, generator=g, dtype=torch.float64) * 5 + 0.05 for _ in range(4))
    expected = kl_divergence(Gamma(a1, b1), Gamma(a2, b2))  # torch's Gamma takes a rate
    torch.testing.assert_close(kl_gamma(a1, b1, a2, b2), expected)
    assert torch.allclose(kl_gamma(a1, b1, a1, b1), torch.zeros(50, dtype=torch.float64), atol=1e-12)


def _kumaraswamy_mc(a: torch.Tensor, b: torch.Tensor, alpha: float, beta: float, n: int) -> torch.Tensor:
    u = torch.rand(n, a.numel(), generator=_gen(1), dtype=torch.float64).clamp(1e-9, 1 - 1e-9)
    v = (1 - (1 - u) ** (1 / b)) ** (1 / a)
    v = v.clamp(1e-12, 1 - 1e-12)
    log_q = torch.log(a) + torch.log(b) + (a - 1) * torch.log(v) + (b - 1) * torch.log1p(-(v**a))
    log_p = Beta(torch.tensor(alpha, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64)).log_prob(v)
    return (log_q - log_p).mean(0)


def test_kl_kumaraswamy_beta_matches_monte_carlo() -> None:
    a = torch.tensor([0.7, 1.5, 3.0], dtype=torch.float64)
    b = torch.tensor([0.8, 2.0, 1.2], dtype=torch.float64)
    for alpha, beta in [(1.0, 1.0), (1.0, 3.0), (2.0, 0.7), (1.0, 0.5)]:
        mc = _kumaraswamy_mc(a, b, alpha, beta, 300_000)
        exact = kl_kumaraswamy_beta(a[:, None], b[:, None], alpha, beta, terms=20_000)
        torch.testing.assert_close(exact, mc, atol=0.02, rtol=0.02)
        # the document's M = 10: exact for beta = 1, a truncation error otherwise (largest for small a)
        m10 = kl_kumaraswamy_beta(a[:, None], b[:, None], alpha, beta)
        if beta == 1.0:
            torch.testing.assert_close(m10, exact)
        else:
            assert ((m10 - exact).abs() < 0.35).all()
            m100 = kl_kumaraswamy_beta(a[:, None], b[:, None], alpha, beta, terms=100)
            assert ((m100 - exact).abs() <= (m10 - exact).abs()).all()  # the series converges


def test_kl_kumaraswamy_beta_sums_over_sticks_with_a_per_example_concentration() -> None:
    a = torch.rand(4, 6, generator=_gen(2)) * 3 + 0.2
    b = torch.rand(4, 6, generator=_gen(3)) * 3 + 0.2
    alpha = torch.rand(4, 10, generator=_gen(4)) * 4 + 0.1
    out = kl_sticks(a, b, alpha)
    assert out.shape == (4,)
    rows = torch.stack([kl_kumaraswamy_beta(a[i : i + 1], b[i : i + 1], 1.0, alpha[i].mean()) for i in range(4)])
    torch.testing.assert_close(out, rows[:, 0])
    assert (out > -1e-4).all()  # a KL (up to the series truncation, which is tiny at these a, b)


@given(seed=st.integers(0, 2**16), K=st.integers(1, 6), scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_hershey_olsen_bound_is_non_negative(seed: int, K: int, scale: float) -> None:
    g = _gen(seed)
    B, D = 5, 4
    mu, logvar = torch.randn(B, D, generator=g) * scale, torch.randn(B, D, generator=g)
    means, log_vars = torch.randn(B, K, D, generator=g) * scale, torch.randn(B, K, D, generator=g)
    pi = torch.softmax(torch.randn(B, K, generator=g) * scale, dim=-1)
    kl = kl_gaussian_mixture(mu, logvar, pi, means, log_vars)
    assert kl.shape == (B,)
    assert torch.isfinite(kl).all() and (kl >= 0).all()
    # it is the bound at the optimal responsibilities: never above the best single component's KL - log pi_k
    per = kl_gaussian(mu[:, None], logvar[:, None], means, log_vars)
    assert (kl <= (per - torch.log(pi)).min(-1).values + 1e-4).all()
    assert torch.allclose(
        kl_gaussian_mixture(mu, logvar, pi, mu[:, None].expand(B, K, D), logvar[:, None].expand(B, K, D)),
        torch.zeros(B),
        atol=1e-6,
    )


def test_hershey_olsen_is_the_gaussian_kl_when_one_component_holds_all_mass() -> None:
    g = _gen(5)
    B, K, D = 3, 5, 6
    mu, logvar = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    means, log_vars = torch.randn(B, K, D, generator=g), torch.randn(B, K, D, generator=g)
    pi = torch.zeros(B, K)
    pi[:, 2] = 1.0
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(means[:, 2], (0.5 * log_vars[:, 2]).exp()))
    torch.testing.assert_close(kl_gaussian_mixture(mu, logvar, pi, means, log_vars), expected.sum(-1))
    torch.testing.assert_close(
        kl_gaussian_mixture(mu, logvar, pi[:, 2:3], means[:, 2:3], log_vars[:, 2:3]), expected.sum(-1)
    )


def test_hershey_olsen_bounds_the_monte_carlo_kl_from_above() -> None:
    g = _gen(6)
    B, K, D = 4, 3, 2
    mu, logvar = (
        torch.randn(B, D, generator=g, dtype=torch.float64),
        torch.randn(B, D, generator=g, dtype=torch.float64) * 0.5,
    )
    means = torch.randn(B, K, D, generator=g, dtype=torch.float64) * 2
    log_vars = torch.randn(B, K, D, generator=g, dtype=torch.float64) * 0.5
    pi = torch.softmax(torch.randn(B, K, generator=g, dtype=torch.float64), dim=-1)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = MixtureSameFamily(Cat(probs=pi), Independent(Normal(means, (0.5 * log_vars).exp()), 1))
    torch.manual_seed(7)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    bound = kl_gaussian_mixture(mu, logvar, pi, means, log_vars)
    assert (bound >= mc - 0.02).all()
    assert (mc >= -0.02).all()


def test_kl_terms_have_finite_gradients() -> None:
    a = (torch.rand(2, 4) + 0.1).requires_grad_()
    b = (torch.rand(2, 4) + 0.1).requires_grad_()
    alpha = (torch.rand(2, 10) + 0.1).requires_grad_()
    kl_sticks(a, b, alpha).sum().backward()
    for t in (a, b, alpha):
        assert torch.isfinite(t.grad).all()
