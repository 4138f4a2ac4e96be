"""Probe `batch` catches this: per-frame contexts folded back from [B*T, ...] in the wrong order.

The frames are flattened b-major (`videos.reshape(b * t, ...)`: row `b*T + t`), but the
contexts come back with `view(t, b, -1).transpose(0, 1)`, which undoes a *t-major* flatten.
The shape is right, `[B, T, context_dim]`, and every example's context holds other examples'
frames (the seed's documented error 1, gone silent). `fold_fixed.py` is the twin that passes.

    aimespec check examples/probes/fold.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class CausalPerceiverIO(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.frame = nn.Linear(cfg.image_channels * 4 * 4, cfg.context_dim)
        self.out = nn.Linear(cfg.context_dim, cfg.context_dim)

    def extract_context(self, videos):
        b, t = videos.shape[:2]
        frames = videos.reshape(b * t, *videos.shape[2:])  # row b*T + t
        feats = torch.tanh(self.frame(F.adaptive_avg_pool2d(frames, 4).flatten(1)))  # [b*t, ctx]
        per_frame = feats.view(t, b, -1).transpose(0, 1)  # BUG: reads rows as t*B + b
        steps = torch.arange(1, t + 1, dtype=videos.dtype).reshape(1, t, 1)
        return self.out(per_frame.cumsum(dim=1) / steps)  # a causal running mean over time
