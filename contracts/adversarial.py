"""Pillar 5 (adversarial): the video discriminator."""

from typing import Annotated

from jaxtyping import Float
from torch import Tensor

from aimespec import Contract, InRange, invariants


class Discriminator(Contract):
    """video [B, T, C, H, W] -> probability that it is real, [B, 1] in (0, 1)."""

    pillar = "adversarial"

    @invariants(InRange("score", 0.0, 1.0))
    def forward(self, video: Float[Tensor, "B T C H W"]) -> Annotated[Float[Tensor, "B 1"], "score"]:
        """video [B, T, C, H, W] -> score [B, 1] in (0, 1)."""
        ...
