"""Multi-task gradient balancing behind one interface: `balance(grads [num_tasks, P]) -> [P]`.

- `RGB`: rotation-based gradient balancing (REFERENCE_NOTES.md "RGB"): every unit task gradient
  is rotated toward a momentum-smoothed consensus direction by an angle chosen to reduce the
  pairwise conflict, with a proximity penalty.
- `SumBalancer`: the plain sum of the task gradients (the baseline).
- `PCGrad`: Yu et al., "Gradient Surgery for Multi-Task Learning" (NeurIPS 2020): each task
  gradient is projected off every other task gradient it conflicts with, then summed.

All three are plain classes (no parameters) constructed from the config and checked against
the `RGB.balance` contract. Gradients are treated as data: `balance` never builds a graph.
"""

import math
from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from aimespec import AimeConfig, checked

ZERO_NORM = 1e-8  # a task gradient below this norm counts as zero (it is left out and gets r_i = 0)
ALIGNED = 0.999  # tasks with |<gbar_i, d>| above this are not rotated (alpha_i = 0)
NORMALIZE_EPS = 1e-12  # F.normalize's floor of a norm
ANGLE_MARGIN = 1e-4  # alpha stays below pi/2 - ANGLE_MARGIN: the interval [0, pi/2) is open


class RGBStep(NamedTuple):
    """One RGB rotation: what `RGB.rotate` computed (the tests check its guarantees on it)."""

    rotated: Float[Tensor, "num_tasks P"]  # r_i, unit (0 for a zero task)
    unit: Float[Tensor, "num_tasks P"]  # gbar_i, unit (0 for a zero task)
    norms: Float[Tensor, "num_tasks"]  # ||g_i||
    consensus: Float[Tensor, "P"] | None  # d (None: no consensus, nothing rotated)
    alpha: Float[Tensor, "num_tasks"]  # rotation angles


class GradientBalancer:
    """The interface: `balance(grads [num_tasks, P]) -> [P]`, `reset()` forgets any state."""

    def __init__(self, cfg: AimeConfig) -> None:
        self.cfg = cfg

    def balance(self, grads: Float[Tensor, "num_tasks P"]) -> Annotated[Float[Tensor, "P"], "balanced_grad"]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the state carried between calls (none for stateless balancers)."""


class SumBalancer(GradientBalancer):
    """The baseline: the sum of the task gradients."""

    @checked("RGB.balance")
    def balance(self, grads: Float[Tensor, "num_tasks P"]) -> Annotated[Float[Tensor, "P"], "balanced_grad"]:
        """grads [num_tasks, P] -> balanced_grad [P]."""
        return grads.detach().sum(dim=0)


class PCGrad(GradientBalancer):
    """PCGrad (Yu et al. 2020): project g_i off g_j whenever `g_i . g_j < 0`, then sum.

    The other tasks are visited in task order (deterministic) by default; with `shuffle_seed`
    each task visits them in a random order from a generator seeded once (reproducible across
    runs; this is an order of tasks, not per-example noise, so it does not use `noise`).
    """

    def __init__(self, cfg: AimeConfig, shuffle_seed: int | None = None) -> None:
        super().__init__(cfg)
        self.shuffle_seed = shuffle_seed
        self.reset()

    def reset(self) -> None:
        seed = self.shuffle_seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    @checked("RGB.balance")
    def balance(self, grads: Float[Tensor, "num_tasks P"]) -> Annotated[Float[Tensor, "P"], "balanced_grad"]:
        """grads [num_tasks, P] -> balanced_grad [P]."""
        grads = grads.detach()
        T = grads.shape[0]
        sq = (grads * grads).sum(dim=1)
        out = grads.clone()
        for i in range(T):
            order = list(range(T)) if self.generator is None else torch.randperm(T, generator=self.generator).tolist()
            g = grads[i].clone()
            for j in order:
                if j == i or sq[j] <= 0:
                    continue
                dot = torch.dot(g, grads[j])
                if dot < 0:
                    g = g - dot / sq[j] * grads[j]
            out[i] = g
        return out.sum(dim=0)


class RGB(GradientBalancer):
    """Rotation-based gradient balancing.

    1. `gbar_i = g_i / ||g_i||` (tasks with a zero gradient are left out: r_i = 0, alpha_i = 0).
    2. `y = normalize(mean_i gbar_i)`; consensus `d_t = normalize(mu d_{t-1} + (1-mu) y)`, `d_0 = y`.
    3. `p_i = <gbar_i, d>`, `w_i = normalize(d - p_i gbar_i)`; tasks with `|p_i| > 0.999` keep alpha_i = 0.
    4. `r_i = cos(alpha_i) gbar_i + sin(alpha_i) w_i` (a rotation in the plane of gbar_i and d).
    5. `rgb_steps` gradient steps of size `rgb_lr` on
       `L = [n(n-1)/2 - (||sum r_i||^2 - n)/2] / (n(n-1)) + lambda sum ||r_i - gbar_i||^2 / (4n)`
       (n the number of non-zero tasks), warm-started from the previous call's alpha, clamped
       to `[0, min(theta_i, pi/2))` with `theta_i = arccos p_i` the task's angle to d. Capping at
       theta_i (our addition to the clamp of REFERENCE_NOTES) means a task is rotated toward the
       consensus and at most onto it, never past it. L is evaluated on T x T Gram matrices, so a
       step costs O(T^2), not O(T^2 P).
    6. Aggregate (`cfg.rgb_aggregation`): "norm_weighted" `sum_i ||g_i|| r_i` (the document's
       architecture overview, the default) or "mean" `mean_i r_i` over all tasks (the public code).

    Guarantees, for any input (tested in tests/test_balancing.py):
    - `<r_i, d> >= <gbar_i, d>`: rotation never moves a task away from the consensus
      (`<r_i, d> = cos(theta_i - alpha_i)` with `0 <= alpha_i <= theta_i`);
    - `<r_i, gbar_i> = cos(alpha_i) > 0`: every rotated direction is still a descent direction of
      its own task;
    - identical task gradients are not rotated: the result is their sum ("norm_weighted") or their
      common unit direction ("mean");
    - on a first call (d = y, no momentum yet) with "mean": `<g, d> >= ||mean_i gbar_i|| >= 0`, and
      with two tasks the angle between r_1 and r_2 is at most the angle between g_1 and g_2.
    It does NOT guarantee `<g, g_j> >= 0` for every task (that is MGDA's promise), nor, with
    "norm_weighted" or with momentum, `<g, d> >= 0`.
    If the unit gradients cancel exactly (no consensus), d falls back to the previous consensus,
    and with no history nothing is rotated. State: `consensus` [P] and `alpha` [num_tasks] of the
    last call (`reset()` clears them), `last_loss` (L at the final alpha).
    """

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__(cfg)
        self.reset()

    def reset(self) -> None:
        self.consensus: Tensor | None = None
        self.alpha: Tensor | None = None
        self.last_loss: float | None = None

    def _consensus(self, gbar: Tensor, nonzero: Tensor) -> Tensor | None:
        keep = nonzero.to(gbar.dtype)
        mean = (keep @ gbar) / keep.sum()  # the mean of the non-zero unit gradients, without a copy of them
        y = F.normalize(mean, dim=0) if mean.norm() > ZERO_NORM else None
        prev = self.consensus
        if prev is None or prev.shape != mean.shape:
            return y
        prev = prev.to(device=mean.device, dtype=mean.dtype)
        mixed = prev if y is None else self.cfg.rgb_mu * prev + (1.0 - self.cfg.rgb_mu) * y
        return F.normalize(mixed, dim=0) if mixed.norm() > ZERO_NORM else y

    @staticmethod
    def rgb_loss(alpha: Tensor, grams: tuple[Tensor, Tensor, Tensor], nonzero: Tensor, lam: float) -> Tensor:
        """L(alpha) from the Gram matrices (gbar gbar^T, gbar w^T, w w^T), over the non-zero tasks."""
        gg, gw, ww = grams
        c, s = torch.cos(alpha), torch.sin(alpha)
        # <r_i, r_j> = c_i c_j <g_i, g_j> + c_i s_j <g_i, w_j> + s_i c_j <w_i, g_j> + s_i s_j <w_i, w_j>
        gram = torch.outer(c, c) * gg + torch.outer(c, s) * gw + torch.outer(s, c) * gw.T + torch.outer(s, s) * ww
        keep = nonzero.to(alpha.dtype)
        n = keep.sum()
        sum_sq = (gram * torch.outer(keep, keep)).sum()  # ||sum_i r_i||^2
        conflict = (n * (n - 1) / 2 - (sum_sq - n) / 2) / (n * (n - 1))
        proximity = lam * ((2.0 - 2.0 * c) * keep).sum() / (4.0 * n)  # ||r_i - gbar_i||^2 = 2 - 2 cos(alpha_i)
        return conflict + proximity

    def _solve_angles(self, grams: tuple[Tensor, Tensor, Tensor], p: Tensor, active: Tensor, nonzero: Tensor
                      ) -> Tensor:
        """Step 5: `rgb_steps` projected gradient steps on L(alpha), warm-started from the previous
        call's angles, each angle clamped to [0, min(arccos p_i, pi/2)); sets `last_loss`."""
        cfg, T = self.cfg, p.shape[0]
        cap = torch.where(active, torch.arccos(p.clamp(-1.0, 1.0)).clamp(max=math.pi / 2 - ANGLE_MARGIN), 0.0)
        alpha = torch.zeros(T, dtype=p.dtype, device=p.device)
        if self.alpha is not None and self.alpha.shape == (T,):
            alpha = self.alpha.to(device=p.device, dtype=p.dtype)
        alpha = torch.minimum(alpha.clamp_min(0.0), cap)
        for _ in range(cfg.rgb_steps):
            with torch.enable_grad():
                a = alpha.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.rgb_loss(a, grams, nonzero, cfg.rgb_lambda), a)
            alpha = torch.minimum((alpha - cfg.rgb_lr * grad).clamp_min(0.0), cap)
        self.last_loss = float(self.rgb_loss(alpha, grams, nonzero, cfg.rgb_lambda))
        return alpha

    def rotate(self, grads: Float[Tensor, "num_tasks P"]) -> RGBStep:
        """Steps 1-5: the rotated unit gradients r_i (0 for zero tasks); updates the consensus and alpha."""
        grads = grads.detach()
        T = grads.shape[0]
        norms = grads.norm(dim=1)
        nonzero = norms > ZERO_NORM
        # The [T, P] work is done in place (one buffer per vector family: gbar, w, rotated): at the
        # default config P is ~26M, so every [T, P] temporary is ~0.4 GB.
        gbar = grads / norms.clamp_min(ZERO_NORM)[:, None]
        gbar[~nonzero] = 0.0
        alpha = torch.zeros(T, dtype=grads.dtype, device=grads.device)
        d = self._consensus(gbar, nonzero) if int(nonzero.sum()) >= 2 else None
        if d is None:
            return RGBStep(gbar, gbar, norms, None, alpha)
        p = gbar @ d
        active = nonzero & (p.abs() <= ALIGNED)
        w = gbar * -p[:, None]
        w += d[None]  # d - p_i gbar_i
        w /= w.norm(dim=1).clamp_min(NORMALIZE_EPS)[:, None]  # F.normalize
        w[~active] = 0.0
        alpha = self._solve_angles((gbar @ gbar.T, gbar @ w.T, w @ w.T), p, active, nonzero)
        rotated = gbar * torch.cos(alpha)[:, None]
        rotated.addcmul_(w, torch.sin(alpha)[:, None])
        del w
        rotated /= rotated.norm(dim=1).clamp_min(NORMALIZE_EPS)[:, None]  # F.normalize
        rotated[~nonzero] = 0.0
        self.consensus, self.alpha = d, alpha
        return RGBStep(rotated, gbar, norms, d, alpha)

    def aggregate(self, step: RGBStep) -> Float[Tensor, "P"]:
        """Step 6: `sum_i ||g_i|| r_i` ("norm_weighted") or `mean_i r_i` ("mean")."""
        if self.cfg.rgb_aggregation == "mean":
            return step.rotated.mean(dim=0)
        return step.norms @ step.rotated  # sum_i ||g_i|| r_i, without a [T, P] temporary

    @checked("RGB.balance")
    def balance(self, grads: Float[Tensor, "num_tasks P"]) -> Annotated[Float[Tensor, "P"], "balanced_grad"]:
        """grads [num_tasks, P] -> balanced_grad [P]: `aggregate(rotate(grads))`, computed without its
        [num_tasks, P] temporaries (`_lean`): at the default config each is ~0.4 GB, and three of them
        made the training step's peak memory."""
        return self._lean(grads.detach())

    def _lean(self, grads: Tensor) -> Tensor:
        """Every vector `rotate` builds is a combination of the task gradients and the consensus d, so
        their inner products follow from the T x T Gram matrix of the gradients, their products with
        the previous consensus and its norm; the result and the new consensus are two [P] combinations.
        (`rotate` keeps the vectors themselves, for inspection; tests/test_balancing.py holds the two equal.)"""
        cfg, T = self.cfg, grads.shape[0]
        small = torch.float64  # the T-sized algebra in double: (1 - p^2) and its kin cancel in float32
        gram = (grads @ grads.T).to(small)
        norms = grads.norm(dim=1).to(small)  # as `rotate` computes them
        nonzero = norms > ZERO_NORM
        inv = torch.where(nonzero, 1.0 / norms.clamp_min(ZERO_NORM), torch.zeros_like(norms))
        gg = gram * inv[:, None] * inv[None, :]  # <gbar_i, gbar_j>
        weight = norms if cfg.rgb_aggregation != "mean" else torch.full_like(norms, 1.0 / T)
        if int(nonzero.sum()) < 2:  # no consensus: nothing rotated, r_i = gbar_i
            return (weight * inv).to(grads.dtype) @ grads
        d_coef, prev_coef = self._lean_consensus(grads, gram, inv, nonzero)  # d = d_coef @ grads + prev_coef prev
        if d_coef is None:
            return (weight * inv).to(grads.dtype) @ grads
        prev = self.consensus.to(grads) if prev_coef and self.consensus is not None else None
        g_prev = (grads @ prev).to(small) if prev is not None else torch.zeros_like(norms)
        g_d = gram @ d_coef + prev_coef * g_prev  # <g_i, d>
        p = inv * g_d  # <gbar_i, d>
        active = nonzero & (p.abs() <= ALIGNED)
        nw = (1.0 - p * p).clamp_min(0.0).sqrt().clamp_min(NORMALIZE_EPS)  # ||d - p_i gbar_i||
        wscale = torch.where(active, 1.0 / nw, torch.zeros_like(nw))
        gw = (p[:, None] - p[None, :] * gg) * wscale[None, :]  # <gbar_i, w_j>
        pp = p * p
        ww = (1.0 - pp[:, None] - pp[None, :] + p[:, None] * p[None, :] * gg) * wscale[:, None] * wscale[None, :]
        like = grads.dtype  # the solve in the gradients' dtype, as `rotate` runs it
        alpha = self._solve_angles((gg.to(like), gw.to(like), ww.to(like)), p.to(like), active, nonzero)
        c, sn = torch.cos(alpha).to(small), torch.sin(alpha).to(small)
        # r_i = (c_i gbar_i + s_i w_i) / ||.||, w_i = (d - p_i gbar_i) wscale_i
        nr = (c * c + sn * sn + 2.0 * c * sn * gw.diagonal()).clamp_min(0.0).sqrt().clamp_min(NORMALIZE_EPS)
        scale = torch.where(nonzero, weight / nr, torch.zeros_like(nr))
        on_g = scale * (c - sn * p * wscale) * inv  # the coefficient of g_i
        on_d = (scale * sn * wscale).sum()  # the coefficient of d
        d = d_coef.to(grads.dtype) @ grads
        if prev is not None:
            d.add_(prev, alpha=prev_coef)
        out = on_g.to(grads.dtype) @ grads
        out.add_(d, alpha=float(on_d))
        self.consensus, self.alpha = d, alpha
        return out

    def _lean_consensus(self, grads: Tensor, gram: Tensor, inv: Tensor, nonzero: Tensor
                        ) -> tuple[Tensor | None, float]:
        """`_consensus` as coefficients: d = d_coef @ grads + prev_coef * previous consensus (None: no consensus)."""
        keep = nonzero.to(gram.dtype)
        m_coef = keep * inv / keep.sum()  # mean_i gbar_i = m_coef @ grads
        m_norm = float((m_coef @ gram @ m_coef).clamp_min(0.0).sqrt())
        y_coef = m_coef / m_norm if m_norm > ZERO_NORM else None
        prev = self.consensus
        if prev is None or prev.shape != grads.shape[1:]:
            return y_coef, 0.0
        mu = self.cfg.rgb_mu
        if y_coef is None:  # mixed = prev
            mixed_coef, mixed_prev = torch.zeros_like(m_coef), 1.0
        else:
            mixed_coef, mixed_prev = (1.0 - mu) * y_coef, mu
        prev = prev.to(device=grads.device, dtype=grads.dtype)
        g_prev = (grads @ prev).to(gram.dtype)
        sq = float(mixed_coef @ gram @ mixed_coef + 2.0 * mixed_prev * (mixed_coef @ g_prev)
                   + mixed_prev * mixed_prev * float(prev.double() @ prev.double()))
        norm = math.sqrt(max(sq, 0.0))
        if norm > ZERO_NORM:
            return mixed_coef / norm, mixed_prev / norm
        return y_coef, 0.0


