"""The DPGMM prior p(z_t | h_t, c_t): Kumaraswamy stick-breaking weights over K Gaussian components.

Stick-breaking with Kumaraswamy sticks follows Nalisnick & Smyth, "Stick-Breaking Variational
Autoencoders" (ICLR 2017); the Dirichlet-process concentration alpha gets a Gamma posterior
q(alpha | h) sampled with reparameterised Marsaglia-Tsang draws (Marsaglia & Tsang 2000,
"A simple method for generating gamma variables"; the rejection-sampler reparameterisation of
Naesseth et al. 2017, "Reparameterization Gradients through Acceptance-Rejection Sampling").
Every random number comes from `reference_model.noise` with the batch axis first.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from aimespec import AimeConfig, checked
from contracts.prior import PriorParams
from reference_model import noise

EPS = 1e-4  # added to every softplus: strictly positive Kumaraswamy / Gamma parameters
PARAM_MAX = 1e3  # safety cap on those parameters (keeps the KL terms finite for extreme inputs)
LOGVAR_RANGE = 10.0  # component log-variances are soft-clamped to (-10, 10) by a scaled tanh
U_CLAMP = 1e-6  # uniform draws are clamped to [U_CLAMP, 1 - U_CLAMP]
STICK_MAX = 1.0 - 1e-6  # sticks stay in the open interval (0, 1) after rounding
LOG_STICK_MIN = -80.0  # exp(-80) ~ 1.8e-35 is still a positive float32
GAMMA_PROPOSALS = 10  # fixed number of Marsaglia-Tsang proposals per draw (see `sample_gamma`)


def _mlp(cfg: AimeConfig, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(cfg.prior_input_dim, cfg.prior_hidden),
        nn.SiLU(),
        nn.Linear(cfg.prior_hidden, cfg.prior_hidden),
        nn.SiLU(),
        nn.Linear(cfg.prior_hidden, out),
    )


def _positive(raw: Tensor) -> Tensor:
    return (F.softplus(raw) + EPS).clamp(max=PARAM_MAX)


def sample_kumaraswamy(a: Float[Tensor, "B S"], b: Float[Tensor, "B S"]) -> Float[Tensor, "B S"]:
    """log v for v ~ Kumaraswamy(a, b) by the inverse CDF `v = (1 - (1 - u)^(1/b))^(1/a)`, in log space.

    `u` is clamped away from 0 and 1; log v is clamped so that v stays in the open interval (0, 1).
    """
    u = noise.rand(*a.shape, like=a).clamp(U_CLAMP, 1.0 - U_CLAMP)
    # log(1 - (1-u)^(1/b)) = log(-expm1(log1p(-u) / b))
    log_v = torch.log(-torch.expm1(torch.log1p(-u) / b)) / a
    return log_v.clamp(LOG_STICK_MIN, math.log(STICK_MAX))


def stick_breaking(log_v: Float[Tensor, "B Km1"]) -> Float[Tensor, "B K"]:
    """log pi from log sticks: log pi_k = log v_k + sum_{j<k} log(1 - v_j); the last is the leftover stick."""
    log_rest = torch.log(-torch.expm1(log_v))  # log(1 - v), accurate for v near 0 and near 1
    before = torch.cumsum(log_rest, dim=-1) - log_rest  # sum_{j<k} log(1 - v_j)
    return torch.cat([log_v + before, log_rest.sum(dim=-1, keepdim=True)], dim=-1)


def sample_gamma(shape: Float[Tensor, "B"], rate: Float[Tensor, "B"], n: int) -> Float[Tensor, "B n"]:
    """n reparameterised draws of Gamma(shape, rate) per row (rate parameterisation).

    Shape augmentation (valid for every shape a > 0): `Gamma(a) = Gamma(a + 1) * U^(1/a)`. The
    Gamma(a + 1) factor is Marsaglia-Tsang with `d = a + 1 - 1/3 >= 2/3`, `c = 1/sqrt(9d)`:
    `z = d (1 + c x)^3` for `x ~ N(0, 1)`, accepted when `1 + c x > 0` and
    `log u < x^2/2 + d - d v + d log v`. To stay batch-first and per-example deterministic we
    draw a fixed number of proposals (GAMMA_PROPOSALS) and keep the first accepted one; the
    acceptance rate at d >= 2/3 is above 0.9, so all ten fail with probability below 1e-10, in
    which case the draw falls back to x = 0 (z = d, a finite positive value). The sample is a
    differentiable function of (shape, rate) given the accepted x and the uniforms: the
    reparameterisation gradient of Naesseth et al. 2017 without its (small) score-function
    correction. Draws are returned in log space clamped to [-60, 60] so alpha stays a positive,
    finite float32.
    """
    B = shape.shape[0]
    a = rearrange(shape, "b -> b 1 1")
    d = a + 1.0 - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)
    x = noise.randn(B, n, GAMMA_PROPOSALS, like=shape)
    log_u = torch.log(noise.rand(B, n, GAMMA_PROPOSALS, like=shape).clamp_min(U_CLAMP))
    cube = 1.0 + c * x
    with torch.no_grad():
        v = cube.clamp_min(1e-12) ** 3
        ok = (cube > 0) & (log_u < 0.5 * x**2 + d - d * v + d * torch.log(v))
        first = ok.float().argmax(-1)  # the first accepted proposal (argmax returns the first maximum)
        fallback = ~ok.any(-1)  # none accepted: x = 0 below
    cube_acc = torch.gather(cube, -1, first.unsqueeze(-1)).squeeze(-1)
    cube_acc = torch.where(fallback, torch.ones_like(cube_acc), cube_acc)
    log_z = torch.log(d.squeeze(-1)) + 3.0 * torch.log(cube_acc.clamp_min(1e-12))  # Gamma(a + 1) draw
    u_aug = noise.rand(B, n, like=shape).clamp(U_CLAMP, 1.0)
    log_alpha = log_z + torch.log(u_aug) / a.squeeze(-1) - torch.log(rearrange(rate, "b -> b 1"))
    return torch.exp(log_alpha.clamp(-60.0, 60.0))


class PriorOutput(NamedTuple):
    """What `DPGMMPrior.infer` computes: the contract's parameters and what the losses read."""

    pi: Float[Tensor, "B K"]
    means: Float[Tensor, "B K D"]
    log_vars: Float[Tensor, "B K D"]
    kumar_a: Float[Tensor, "B K-1"]
    kumar_b: Float[Tensor, "B K-1"]
    alpha: Float[Tensor, "B n_samples"]
    sticks: Float[Tensor, "B K-1"]
    log_pi: Float[Tensor, "B K"]  # log mixture weights (no log(pi) underflow for vanishing ones)
    gamma_shape: Float[Tensor, "B"]  # the Gamma posterior q(alpha | h)
    gamma_rate: Float[Tensor, "B"]

    def contract_result(self) -> PriorParams:
        """The part `DPGMMPrior.forward`'s contract describes."""
        return PriorParams(pi=self.pi, means=self.means, log_vars=self.log_vars, kumar_a=self.kumar_a,
                           kumar_b=self.kumar_b, alpha=self.alpha, sticks=self.sticks)


class DPGMMPrior(nn.Module):
    """p(z_t | h_t, c_t) from `h || c`: K Gaussian components weighted by Kumaraswamy stick-breaking.

    Three MLPs of width `prior_hidden` read `h || c` [B, hidden_dim + context_dim]:
    `stick_net` -> Kumaraswamy (a, b) for the K-1 sticks; `component_net` -> [B, 2*K*D] means and
    log-variances; `concentration_net` -> the Gamma posterior q(alpha | h) = Gamma(shape, rate).
    `infer` returns a `PriorOutput`: the contract's parameters plus `log_pi` [B, K], `gamma_shape`
    and `gamma_rate` [B]; `forward` is the contract's view of it (a `PriorParams` mapping).
    """

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stick_net = _mlp(cfg, 2 * (cfg.max_components - 1))
        self.component_net = _mlp(cfg, cfg.component_params_dim)
        self.concentration_net = _mlp(cfg, 2)

    def forward(self, h: Float[Tensor, "B hidden_dim+context_dim"], n_samples: int = 10) -> PriorParams:
        """h [B, hidden_dim + context_dim] -> prior_params (pi, means, log_vars, kumar_a, kumar_b, alpha)."""
        return self.infer(h, n_samples).contract_result()

    @checked("DPGMMPrior.forward", view=PriorOutput.contract_result)
    def infer(self, h: Float[Tensor, "B hidden_dim+context_dim"], n_samples: int = 10) -> PriorOutput:
        """`forward`'s parameters plus what the losses read: log pi and the Gamma posterior of alpha."""
        cfg = self.cfg
        kumar_a, kumar_b = rearrange(_positive(self.stick_net(h)), "b (two s) -> two b s", two=2)
        log_v = sample_kumaraswamy(kumar_a, kumar_b)
        log_pi = stick_breaking(log_v)
        pi = torch.softmax(log_pi, dim=-1)  # == exp(log_pi) in exact arithmetic; sums to 1 to rounding

        params = rearrange(
            self.component_net(h), "b (k two d) -> two b k d", k=cfg.max_components, two=2, d=cfg.latent_dim
        )
        means, raw_log_vars = params[0], params[1]
        log_vars = LOGVAR_RANGE * torch.tanh(raw_log_vars / LOGVAR_RANGE)

        gamma_shape, gamma_rate = rearrange(_positive(self.concentration_net(h)), "b two -> two b", two=2)
        alpha = sample_gamma(gamma_shape, gamma_rate, n_samples)
        return PriorOutput(
            pi=pi,
            means=means,
            log_vars=log_vars,
            kumar_a=kumar_a,
            kumar_b=kumar_b,
            alpha=alpha,
            sticks=torch.exp(log_v),
            log_pi=torch.log_softmax(log_pi, dim=-1),
            gamma_shape=gamma_shape,
            gamma_rate=gamma_rate,
        )
