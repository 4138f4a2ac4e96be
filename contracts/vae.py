"""Pillar 2 (VAE): the hierarchical encoder q(z | x, c) and the attention-modulated decoder."""

from typing import Annotated, TypedDict

from jaxtyping import Float
from torch import Tensor

from aimespec import Contract, InRange, Simplex, invariants


class ZParams(TypedDict):
    mu: Float[Tensor, "B D"]
    logvar: Float[Tensor, "B D"]


class VAEEncoder(Contract):
    """x_t [B, C, H, W] and context c_t -> the Gaussian posterior's parameters."""

    pillar = "vae"

    @invariants(InRange("x", 0.0, 1.0))
    def forward(self, x: Float[Tensor, "B C H W"], context: Float[Tensor, "B context_dim"]) -> ZParams:
        """x [B, C, H, W], context [B, context_dim] -> z_params {mu, logvar} [B, D]."""
        ...


class VAEDecoder(Contract):
    """z_t and the attention map A_t -> the reconstructed frame (attention modulates features)."""

    pillar = "vae"

    @invariants(Simplex("attention_map", over=("H_att", "W_att")))
    def forward(
        self, z: Float[Tensor, "B D"], attention_map: Float[Tensor, "B H_att W_att"]
    ) -> Annotated[Float[Tensor, "B C H W"], "reconstruction"]:
        """z [B, D], attention_map [B, H_att, W_att] -> reconstruction [B, C, H, W]."""
        ...
