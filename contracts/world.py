"""The whole world model: `forward_sequence` over a batch of videos and actions.

`SequenceOutputs` is the contract's result: the seed's outputs stacked over time (three of
them required), then what training reads (optional: a model that is not trained by the
reference losses need not give them; whatever it gives is held to these shapes).
`WorldOutputs` is the same record as a frozen dataclass with every field present: what the
reference model returns and the reference losses take. It is also a read-only mapping, so
`out["latents"]` answers as the seed's dictionary did.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import ClassVar, NotRequired, TypedDict, cast

from jaxtyping import Float, Int
from torch import Tensor

from aimespec import Causal, Contract, InRange, IntRange, Simplex, invariants


class SequenceOutputs(TypedDict):
    # --- the seed's outputs ---
    latents: Float[Tensor, "B T D"]
    reconstructions: Float[Tensor, "B T C H W"]
    attention_maps: Float[Tensor, "B T H_att W_att"]
    context: NotRequired[Float[Tensor, "B T context_dim"]]
    tokens: NotRequired[Int[Tensor, "B T H_t W_t"]]
    hidden_states: NotRequired[Float[Tensor, "B T hidden_dim"]]
    mixture_weights: NotRequired[Float[Tensor, "B T K"]]
    slot_features: NotRequired[Float[Tensor, "B T K_slots attention_dim"]]
    # --- what the losses read: the posterior, the prior's parameters, the schema, the tokenizer ---
    mu: NotRequired[Float[Tensor, "B T D"]]
    logvar: NotRequired[Float[Tensor, "B T D"]]
    cell_states: NotRequired[Float[Tensor, "B T hidden_dim"]]
    log_mixture_weights: NotRequired[Float[Tensor, "B T K"]]
    prior_means: NotRequired[Float[Tensor, "B T K D"]]
    prior_log_vars: NotRequired[Float[Tensor, "B T K D"]]
    kumar_a: NotRequired[Float[Tensor, "B T K-1"]]
    kumar_b: NotRequired[Float[Tensor, "B T K-1"]]
    sticks: NotRequired[Float[Tensor, "B T K-1"]]
    alpha: NotRequired[Float[Tensor, "B T n_samples"]]
    gamma_shape: NotRequired[Float[Tensor, "B T"]]
    gamma_rate: NotRequired[Float[Tensor, "B T"]]
    attention_coords: NotRequired[Float[Tensor, "B T 2"]]
    slot_masks: NotRequired[Float[Tensor, "B T K_slots H_att W_att"]]
    motion_fields: NotRequired[Float[Tensor, "B T 2 H_att W_att"]]
    diversity_loss: NotRequired[Float[Tensor, ""]]
    vq_loss: NotRequired[Float[Tensor, ""]]
    perplexity: NotRequired[Float[Tensor, ""]]
    tokenizer_reconstructions: NotRequired[Float[Tensor, "B T C H W"]]


@dataclass(frozen=True)
class WorldOutputs(Mapping[str, Tensor]):
    """`SequenceOutputs` with every field present (the reference model's result); a mapping too."""

    latents: Float[Tensor, "B T D"]
    reconstructions: Float[Tensor, "B T C H W"]
    attention_maps: Float[Tensor, "B T H_att W_att"]
    context: Float[Tensor, "B T context_dim"]
    tokens: Int[Tensor, "B T H_t W_t"]
    hidden_states: Float[Tensor, "B T hidden_dim"]
    mixture_weights: Float[Tensor, "B T K"]
    slot_features: Float[Tensor, "B T K_slots attention_dim"]
    mu: Float[Tensor, "B T D"]
    logvar: Float[Tensor, "B T D"]
    cell_states: Float[Tensor, "B T hidden_dim"]
    log_mixture_weights: Float[Tensor, "B T K"]
    prior_means: Float[Tensor, "B T K D"]
    prior_log_vars: Float[Tensor, "B T K D"]
    kumar_a: Float[Tensor, "B T K-1"]
    kumar_b: Float[Tensor, "B T K-1"]
    sticks: Float[Tensor, "B T K-1"]
    alpha: Float[Tensor, "B T n_samples"]
    gamma_shape: Float[Tensor, "B T"]
    gamma_rate: Float[Tensor, "B T"]
    attention_coords: Float[Tensor, "B T 2"]
    slot_masks: Float[Tensor, "B T K_slots H_att W_att"]
    motion_fields: Float[Tensor, "B T 2 H_att W_att"]
    diversity_loss: Float[Tensor, ""]
    vq_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, ""]
    tokenizer_reconstructions: Float[Tensor, "B T C H W"]

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def contract_result(self) -> SequenceOutputs:
        """The record as the contract's mapping (what a check or a trace reads)."""
        return cast(SequenceOutputs, {name: getattr(self, name) for name in self._names()})

    @classmethod
    @cache
    def _names(cls) -> tuple[str, ...]:
        """The field names in order, read once per class (a checked forward reads them ~30 times)."""
        return tuple(f.name for f in fields(cls))


class AimeWorldModel(Contract):
    """The five pillars over a sequence: the seed's outputs stacked over time."""

    pillar = "world"
    free_dims: ClassVar[dict[str, int]] = {"n_samples": 10}  # the prior's draws per step (a value for drawing)

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
