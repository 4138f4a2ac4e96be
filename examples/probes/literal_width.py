"""Probe `config` catches this: an LSTM built for the document's numbers, not the config's.

`36 + 256 + 6` is `D + context_dim + A` at the default config, so every contract holds there;
for a humanoid task (A = 21), or any other width, the layer no longer fits its input. The
config probe rebuilds the component at a second config whose widths all differ and names
the field the code should have read. `literal_width_fixed.py` is the twin that passes.

    aimespec check examples/probes/literal_width.py
"""

from torch import nn


class LSTMLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cell = nn.LSTMCell(36 + 256 + 6, cfg.hidden_dim)  # BUG: the default widths as numbers

    def forward(self, input, hx):
        h0, c0 = hx
        h, c = self.cell(input, (h0[0], c0[0]))
        return h, (h.unsqueeze(0), c.unsqueeze(0))
