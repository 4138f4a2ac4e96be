"""Pillar 2: the Dirichlet-process mixture prior with Kumaraswamy stick-breaking."""

from typing import NotRequired, TypedDict

from jaxtyping import Float
from torch import Tensor

from aimespec import Contract, InRange, Positive, Simplex, invariants


class PriorParams(TypedDict):
    pi: Float[Tensor, "B K"]  # mixture weights, sum to 1
    means: Float[Tensor, "B K D"]
    log_vars: Float[Tensor, "B K D"]
    kumar_a: Float[Tensor, "B K-1"]
    kumar_b: Float[Tensor, "B K-1"]
    alpha: Float[Tensor, "B n_samples"]  # concentration draws
    sticks: NotRequired[Float[Tensor, "B K-1"]]  # the sampled sticks v, when returned


class DPGMMPrior(Contract):
    """p(z_t | h_t, c_t): stick-breaking weights and K Gaussian components from h || c."""

    pillar = "prior"

    @invariants(
        Simplex("pi", over=("K",)),
        Positive("kumar_a"),
        Positive("kumar_b"),
        Positive("alpha"),
        InRange("sticks", 0.0, 1.0, low_open=True, high_open=True),
    )
    def forward(self, h: Float[Tensor, "B hidden_dim+context_dim"], n_samples: int = 10) -> PriorParams:
        """h [B, hidden_dim + context_dim] -> prior_params (pi, means, log_vars, kumar_a, kumar_b, alpha)."""
        ...
