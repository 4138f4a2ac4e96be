"""The fixed twin of `literal_width.py`: the LSTM reads its input width from the config.

`cfg.latent_dim + cfg.context_dim + cfg.action_dim` is right at every config.

    aimespec check examples/probes/literal_width_fixed.py
"""

from torch import nn


class LSTMLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cell = nn.LSTMCell(cfg.latent_dim + cfg.context_dim + cfg.action_dim, cfg.hidden_dim)

    def forward(self, input, hx):
        h0, c0 = hx
        h, c = self.cell(input, (h0[0], c0[0]))
        return h, (h.unsqueeze(0), c.unsqueeze(0))
