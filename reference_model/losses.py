"""The four task losses of AIME (the seed's "PILLAR 5: LOSS COMPUTATION").

1. ELBO: reconstruction + KL(q(z) || DPGMM prior) + KL(Kumaraswamy sticks || Beta(1, alpha))
   + KL(Gamma posterior of alpha || Gamma prior).
2. Perceiver: VQ loss + the tokenizer's reconstruction error.
3. Predictive: attention dynamics (the top-down motion field predicts the next attention
   map) + slot diversity.
4. Adversarial (generator side): the non-saturating GAN loss `-log D(x_hat)`.

Each loss is a 0-dim tensor averaged over the batch (so that the mean of two half-batch
gradients is the full batch's: what multi-process training relies on). `check_losses`
holds them to the seed's checklist (finite, 0-dim; reconstruction and KL terms >= 0).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from aimespec import ContractViolation, FiniteLoss, Violation, ViolationKind, current_mode
from contracts.world import WorldOutputs
from reference_model.adversarial import Discriminator
from reference_model.attention import AttentionSchema
from reference_model.kl import kl_gamma, kl_gaussian_mixture, kl_sticks

TASKS = ("elbo", "perceiver", "predictive", "adversarial")

# sub-term -> (task it belongs to, must be >= 0)
TERMS: dict[str, tuple[str, bool]] = {
    "reconstruction": ("elbo", True),
    "kl_z": ("elbo", True),
    "kl_sticks": ("elbo", True),
    "kl_alpha": ("elbo", True),
    "vq": ("perceiver", True),
    "tokenizer_reconstruction": ("perceiver", True),
    "attention_dynamics": ("predictive", True),
    "diversity": ("predictive", False),
    "gan": ("adversarial", True),
}

# The concentration's Gamma prior, Gamma(shape=1, rate=1) (Nalisnick & Smyth 2017 use a fixed prior).
GAMMA_PRIOR_SHAPE = 1.0
GAMMA_PRIOR_RATE = 1.0


@dataclass(frozen=True)
class TaskLosses:
    """`tasks`: the four task losses in order (elbo, perceiver, predictive, adversarial);
    `terms`: every named sub-term. All 0-dim tensors, still attached to the graph."""

    tasks: dict[str, Tensor]
    terms: dict[str, Tensor]

    def stacked(self) -> Tensor:
        """The task losses as one `[4]` tensor, in `TASKS` order."""
        return torch.stack([self.tasks[name] for name in TASKS])

    def items(self) -> dict[str, Tensor]:
        """Tasks and terms in one mapping."""
        return {**self.tasks, **self.terms}


def reconstruction_nll(reconstructions: Tensor, observations: Tensor) -> Tensor:
    """Squared error summed over a frame's pixels, averaged over frames (a Gaussian NLL
    with variance 1/2 up to its constant): the scale at which a KL over D latents is weighed."""
    err = (reconstructions - observations).pow(2)
    return rearrange(err, "b t c h w -> b t (c h w)").sum(-1).mean()


def elbo_terms(out: WorldOutputs, observations: Tensor) -> dict[str, Tensor]:
    """Reconstruction and the three KL terms, each averaged over B and T."""

    def flat(x: Tensor) -> Tensor:
        return rearrange(x, "b t ... -> (b t) ...")

    kl_z = kl_gaussian_mixture(
        flat(out.mu), flat(out.logvar), flat(out.mixture_weights), flat(out.prior_means), flat(out.prior_log_vars),
        flat(out.log_mixture_weights),  # log pi: no log(pi) underflow for vanishing weights
    )
    # KL(Kumaraswamy(a, b) || Beta(1, mean alpha)): the DP's sticks. Its series is truncated at
    # M terms, which can put it slightly below 0 (e.g. -0.012 for a=1, b=alpha=1.5, where the true
    # KL is 0); the true KL is >= 0, so max(0, .) is the closer estimate of it.
    stick_kl = kl_sticks(flat(out.kumar_a), flat(out.kumar_b), flat(out.alpha)).clamp_min(0.0)
    shape, rate = flat(out.gamma_shape), flat(out.gamma_rate)
    kl_alpha = kl_gamma(shape, rate, torch.full_like(shape, GAMMA_PRIOR_SHAPE), torch.full_like(rate, GAMMA_PRIOR_RATE))
    return {
        "reconstruction": reconstruction_nll(out.reconstructions, observations),
        "kl_z": kl_z.mean(),
        "kl_sticks": stick_kl.mean(),
        "kl_alpha": kl_alpha.mean(),
    }


def perceiver_terms(out: WorldOutputs, observations: Tensor) -> dict[str, Tensor]:
    """The VQ loss and the tokenizer's reconstruction MSE (gradients reach its encoder
    through the straight-through estimator)."""
    return {
        "vq": out.vq_loss,
        "tokenizer_reconstruction": F.mse_loss(out.tokenizer_reconstructions, observations),
    }


def predictive_terms(out: WorldOutputs) -> dict[str, Tensor]:
    """Attention dynamics: `predict_next(A_t, motion_t)` against `A_{t+1}` (a stop-gradient
    target) over t < T-1 (zero when T == 1), plus the slot diversity loss."""
    maps, motion = out.attention_maps, out.motion_fields
    T = maps.shape[1]
    if T > 1:
        predicted = AttentionSchema.predict_next(
            rearrange(maps[:, :-1], "b t h w -> (b t) h w"), rearrange(motion[:, :-1], "b t c h w -> (b t) c h w")
        )
        observed = rearrange(maps[:, 1:], "b t h w -> (b t) h w").detach()
        dynamics = AttentionSchema.dynamics_loss(predicted, observed)
    else:
        dynamics = maps.new_zeros(())
    return {"attention_dynamics": dynamics, "diversity": out.diversity_loss}


def adversarial_terms(out: WorldOutputs, discriminator: Discriminator) -> dict[str, Tensor]:
    """The generator's non-saturating loss `-log D(x_hat) = softplus(-logit)`, from logits."""
    logits = discriminator.logits(out.reconstructions)
    return {"gan": F.softplus(-logits).mean()}


def discriminator_loss(discriminator: Discriminator, real: Tensor, fake: Tensor) -> Tensor:
    """BCE of the discriminator: real videos labelled 1, (detached) reconstructions 0."""
    real_logits = discriminator.logits(real)
    fake_logits = discriminator.logits(fake.detach())
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def compute_losses(out: WorldOutputs, observations: Tensor, discriminator: Discriminator) -> TaskLosses:
    """The four task losses and their sub-terms from `forward_sequence`'s record (the
    adversarial term scores the reconstructions with `discriminator`)."""
    terms = {
        **elbo_terms(out, observations),
        **perceiver_terms(out, observations),
        **predictive_terms(out),
        **adversarial_terms(out, discriminator),
    }
    tasks = {task: _sum([v for k, v in terms.items() if TERMS[k][0] == task]) for task in TASKS}
    return TaskLosses(tasks=tasks, terms=terms)


def _sum(values: list[Tensor]) -> Tensor:
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def loss_problems(losses: TaskLosses) -> list[Violation]:
    """Every loss or term that is not a finite 0-dim tensor, or a reconstruction/KL term below 0."""
    found = []
    for name, value in losses.items().items():
        nonnegative = TERMS[name][1] if name in TERMS else False
        if value.dim() != 0:
            problem = f"must be a 0-dim tensor (scalar), got shape {list(value.shape)}"
        else:
            problem = FiniteLoss(name, nonnegative=nonnegative).violation(value, (), {})
        if problem is not None:
            found.append(Violation(
                contract="losses", tensor=name, kind=ViolationKind.VALUE,
                expected="finite scalar" + (" >= 0" * nonnegative),
                expected_shape=[], got=list(value.shape), message=f"losses: {name} {problem}",
            ))
    return found


def check_losses(losses: TaskLosses) -> None:
    """In `full` checking mode, raise `ContractViolation` naming every bad loss or term."""
    if current_mode() != "full":
        return
    if found := loss_problems(losses):
        raise ContractViolation(found)


__all__ = [
    "TASKS",
    "TERMS",
    "TaskLosses",
    "check_losses",
    "compute_losses",
    "discriminator_loss",
    "loss_problems",
]
