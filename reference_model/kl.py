"""KL terms of the DPGMM prior: Gaussian vs. mixture, Kumaraswamy sticks vs. Beta, Gamma vs. Gamma.

Each returns one value per example ([B]); the world model's loss averages them.
"""

import torch
from jaxtyping import Float
from torch import Tensor

EULER_GAMMA = 0.5772156649015329
SERIES_TERMS = 10  # M: truncation of the Kumaraswamy-Beta series (Nalisnick & Smyth 2017)
TINY = 1e-30


def kl_gaussian(
    mu: Float[Tensor, "*b D"], logvar: Float[Tensor, "*b D"], mu2: Float[Tensor, "*b D"], logvar2: Float[Tensor, "*b D"]
) -> Float[Tensor, "*b"]:
    """KL(N(mu, diag e^logvar) || N(mu2, diag e^logvar2)), summed over the last axis."""
    return 0.5 * (logvar2 - logvar + (torch.exp(logvar) + (mu - mu2) ** 2) * torch.exp(-logvar2) - 1.0).sum(-1)


def kl_gaussian_mixture(
    mu: Float[Tensor, "B D"],
    logvar: Float[Tensor, "B D"],
    pi: Float[Tensor, "B K"],
    means: Float[Tensor, "B K D"],
    log_vars: Float[Tensor, "B K D"],
    log_pi: Float[Tensor, "B K"] | None = None,
) -> Float[Tensor, "B"]:
    """Upper bound on KL(q || sum_k pi_k N_k) for a diagonal Gaussian q = N(mu, e^logvar).

    Hershey & Olsen, "Approximating the Kullback Leibler divergence between Gaussian mixture
    models" (ICASSP 2007), variational approximation with a single-component q:
    `KL(q || p) <= -log sum_k pi_k exp(-KL(q || N_k))` (Jensen with the optimal responsibilities
    `phi_k ∝ pi_k exp(-KL(q || N_k))`). Since every KL(q || N_k) >= 0 and sum_k pi_k = 1, the bound
    is >= 0 exactly; a tiny negative rounding error is clamped to 0. Pass `log_pi` (the prior's
    `log_pi`) to avoid `log(pi)` underflow for vanishing weights.
    """
    per_component = kl_gaussian(mu.unsqueeze(1), logvar.unsqueeze(1), means, log_vars)  # [B, K]
    if log_pi is None:
        log_pi = torch.log(pi.clamp_min(TINY))
    return (-torch.logsumexp(log_pi - per_component, dim=-1)).clamp_min(0.0)


def _log_beta_fn(x: Tensor, y: Tensor) -> Tensor:
    return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)


def kl_kumaraswamy_beta(
    a: Float[Tensor, "B S"],
    b: Float[Tensor, "B S"],
    alpha: Float[Tensor, "B"] | Float[Tensor, "B 1"] | float,
    beta: Float[Tensor, "B"] | Float[Tensor, "B 1"] | float = 1.0,
    terms: int = SERIES_TERMS,
) -> Float[Tensor, "B"]:
    """KL(Kumaraswamy(a, b) || Beta(alpha, beta)) summed over the S sticks.

    Nalisnick & Smyth, "Stick-Breaking Variational Autoencoders" (ICLR 2017), appendix:
    `(a-alpha)/a * (-gamma - psi(b) - 1/b) + log(a b) + log B(alpha, beta) - (b-1)/b
    + (beta-1) b sum_{m=1..M} B(m/a, b) / (m + a b)`, with Euler's gamma and M = 10. The series
    (the Taylor expansion of E_q[log(1 - v)]) is summed in log space with logsumexp. For the
    DP prior Beta(1, alpha) pass `alpha` = the concentration (the mean of the alpha draws) as the
    Beta's *second* argument: `kl_kumaraswamy_beta(a, b, 1.0, alpha_mean)`. The truncated series
    makes this an approximation for beta != 1 (exact for beta = 1, where the series drops out):
    the dropped tail has the sign of beta - 1 and grows for small `a`, where the terms decay slowly
    (`terms` raises M). Not clamped.
    """
    alpha_t = torch.as_tensor(alpha, dtype=a.dtype, device=a.device)
    beta_t = torch.as_tensor(beta, dtype=a.dtype, device=a.device)
    if alpha_t.dim() == 1:
        alpha_t = alpha_t.unsqueeze(-1)
    if beta_t.dim() == 1:
        beta_t = beta_t.unsqueeze(-1)
    m = torch.arange(1, terms + 1, dtype=a.dtype, device=a.device)  # [M]
    a_, b_ = a.unsqueeze(-1), b.unsqueeze(-1)  # [B, S, 1]
    log_terms = torch.log(b_) + _log_beta_fn(m / a_, b_) - torch.log(m + a_ * b_)
    series = torch.exp(torch.logsumexp(log_terms, dim=-1))  # b * sum_m B(m/a, b) / (m + a b)
    kl = (
        (a - alpha_t) / a * (-EULER_GAMMA - torch.digamma(b) - 1.0 / b)
        + torch.log(a * b)
        + _log_beta_fn(alpha_t, beta_t)
        - (b - 1.0) / b
        + (beta_t - 1.0) * series
    )
    return kl.sum(-1)


def kl_gamma(
    a1: Float[Tensor, "*b"], b1: Float[Tensor, "*b"], a2: Float[Tensor, "*b"] | float, b2: Float[Tensor, "*b"] | float
) -> Float[Tensor, "*b"]:
    """KL(Gamma(a1, b1) || Gamma(a2, b2)) with shapes a and **rates** b, elementwise.

    `(a1-a2) psi(a1) - lgamma(a1) + lgamma(a2) + a2 log(b1/b2) + a1 (b2-b1)/b1` (e.g. Penny 2001,
    "KL-divergences of Normal, Gamma, Dirichlet and Wishart densities"); used for the concentration
    posterior q(alpha | h) of the DP prior (Blei & Jordan 2006 place a Gamma prior on alpha).
    """
    a2 = torch.as_tensor(a2, dtype=a1.dtype, device=a1.device)
    b2 = torch.as_tensor(b2, dtype=a1.dtype, device=a1.device)
    return (
        (a1 - a2) * torch.digamma(a1)
        - torch.lgamma(a1)
        + torch.lgamma(a2)
        + a2 * (torch.log(b1) - torch.log(b2))
        + a1 * (b2 - b1) / b1
    )


def kl_sticks(
    kumar_a: Float[Tensor, "B S"], kumar_b: Float[Tensor, "B S"], alpha: Float[Tensor, "B n_samples"]
) -> Float[Tensor, "B"]:
    """The DP stick term: KL(Kumaraswamy(a, b) || Beta(1, alpha_bar)), alpha_bar the mean of the alpha draws.

    Stick-breaking for a Dirichlet process draws v_k ~ Beta(1, alpha) (Sethuraman 1994); the
    concentration enters as the Beta's second argument.
    """
    return kl_kumaraswamy_beta(kumar_a, kumar_b, 1.0, alpha.mean(dim=-1))
