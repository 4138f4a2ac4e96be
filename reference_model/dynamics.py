"""The VRNN's per-step dynamics h_t = f(h_{t-1}, z_t, c_t, a_t): one LSTM step.

The seed writes `class LSTMLayer(nn.LSTM)` and calls it with a 2-D input `[B, in]` and 3-D
states `[num_layers, B, hidden]`, which `nn.LSTM` rejects ("For unbatched 2-D input, hx and cx
should also be 2-D"). This layer keeps the seed's base class and calling convention and adds
and removes the time axis itself.
"""

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from aimespec import AimeConfig, checked
from contracts.dynamics import HiddenState, LSTMOutput, NewState


class LSTMLayer(nn.LSTM):
    """One LSTM step on `z_t || c_t || a_t` [B, D + context_dim + A] with `lstm_layers` stacked layers."""

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__(cfg.lstm_input_dim, cfg.hidden_dim, num_layers=cfg.lstm_layers, batch_first=True)
        self.cfg = cfg

    def initial_state(self, B: int, like: Tensor) -> HiddenState:
        """Zero (h0, c0), each [num_layers, B, hidden_dim], on `like`'s device and dtype."""
        shape = (self.cfg.lstm_layers, B, self.cfg.hidden_dim)
        zeros = torch.zeros(shape, device=like.device, dtype=like.dtype)
        return HiddenState(zeros, zeros.clone())

    @checked("LSTMLayer.forward")
    def forward(self, input: Float[Tensor, "B D+context_dim+A"], hx: HiddenState) -> LSTMOutput:
        """input [B, D + context_dim + A], hx = (h0, c0) [num_layers, B, hidden_dim] -> (output, (h_n, c_n))."""
        step = rearrange(input, "b i -> b 1 i")  # [B, in] -> [B, 1, in]: a sequence of one step
        out, (h_n, c_n) = super().forward(step, (hx[0], hx[1]))
        return LSTMOutput(rearrange(out, "b 1 h -> b h"), NewState(h_n, c_n))
