"""Pillar 3: the VRNN's per-step LSTM dynamics."""

from typing import NamedTuple

from jaxtyping import Float
from torch import Tensor

from aimespec import Contract


class HiddenState(NamedTuple):
    h0: Float[Tensor, "num_layers B hidden_dim"]
    c0: Float[Tensor, "num_layers B hidden_dim"]


class NewState(NamedTuple):
    h_n: Float[Tensor, "num_layers B hidden_dim"]
    c_n: Float[Tensor, "num_layers B hidden_dim"]


class LSTMOutput(NamedTuple):
    output: Float[Tensor, "B hidden_dim"]  # the per-step state h_t
    state: NewState


class LSTMLayer(Contract):
    """h_t = f(h_{t-1}, z_t, c_t, a_t) for one step (input is z_t || c_t || a_t)."""

    pillar = "dynamics"

    def forward(self, input: Float[Tensor, "B D+context_dim+A"], hx: HiddenState) -> LSTMOutput:
        """input [B, D + context_dim + A], hx = (h0, c0) [num_layers, B, hidden_dim] -> (output, (h_n, c_n))."""
        ...
