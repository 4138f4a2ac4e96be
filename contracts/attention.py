"""Pillar 4: the attention schema (slot attention, top-down motion field, fusion)."""

from typing import NamedTuple

from jaxtyping import Float
from torch import Tensor

from aimespec import Contract, InRange, Simplex, invariants


class SlotResult(NamedTuple):
    slots: Float[Tensor, "B K_slots attention_dim"]
    attn: Float[Tensor, "B K_slots N"]  # sums to 1 over slots at every position


class SlotAttention(Contract):
    """Locatello et al. 2020: slots compete for N input positions (softmax over slots)."""

    pillar = "attention"

    @invariants(Simplex("attn", over=("K_slots",)))
    def forward(
        self,
        x: Float[Tensor, "B N attention_dim"],
        seed_slots: Float[Tensor, "B K_slots attention_dim"] | None = None,
    ) -> SlotResult:
        """x [B, N, attention_dim] (N = H_att*W_att) -> (slots [B, K_slots, attention_dim], attn [B, K_slots, N])."""
        ...


class SchemaResult(NamedTuple):
    attention_probs_2d: Float[Tensor, "B H_att W_att"]
    regularized_coords: Float[Tensor, "B 2"]  # centre of attention in [-1, 1]


class AttentionSchema(Contract):
    """A_t = g(x_t, h_t, c_t): bottom-up slots fused with a top-down motion field."""

    pillar = "attention"

    @invariants(
        InRange("observation", 0.0, 1.0),
        Simplex("attention_probs_2d", over=("H_att", "W_att")),
        InRange("attention_probs_2d", 0.0, 1.0),
        InRange("regularized_coords", -1.0, 1.0),
    )
    def forward(
        self,
        observation: Float[Tensor, "B C H W"],
        hidden_state: Float[Tensor, "B hidden_dim"],
        context: Float[Tensor, "B context_dim"],
        fused_feat: Float[Tensor, "B attention_dim H_att W_att"] | None = None,
    ) -> SchemaResult:
        """observation [B, C, H, W], hidden_state, context -> (attention [B, H_att, W_att], coords [B, 2])."""
        ...
