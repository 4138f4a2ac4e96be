"""The whole world model: `forward_sequence` over a batch of videos and actions."""

from typing import NotRequired, TypedDict

from jaxtyping import Float, Int
from torch import Tensor

from aimespec import Causal, Contract, InRange, IntRange, Simplex, invariants


class SequenceOutputs(TypedDict):
    latents: Float[Tensor, "B T D"]
    reconstructions: Float[Tensor, "B T C H W"]
    attention_maps: Float[Tensor, "B T H_att W_att"]
    context: NotRequired[Float[Tensor, "B T context_dim"]]
    tokens: NotRequired[Int[Tensor, "B T H_t W_t"]]
    hidden_states: NotRequired[Float[Tensor, "B T hidden_dim"]]
    mixture_weights: NotRequired[Float[Tensor, "B T K"]]
    slot_features: NotRequired[Float[Tensor, "B T K_slots attention_dim"]]


class AimeWorldModel(Contract):
    """The five pillars over a sequence: the seed's outputs stacked over time."""

    pillar = "world"

    @invariants(
        InRange("observations", 0.0, 1.0),
        Simplex("attention_maps", over=("H_att", "W_att")),
        IntRange("tokens", "0", "num_codes-1"),
        Simplex("mixture_weights", over=("K",)),
        Causal(axis="T"),  # step t of every output sees observations and actions up to t
    )
    def forward_sequence(
        self, observations: Float[Tensor, "B T C H W"], actions: Float[Tensor, "B T A"]
    ) -> SequenceOutputs:
        """observations [B, T, C, H, W] in [0, 1], actions [B, T, A] -> the stacked outputs."""
        ...
