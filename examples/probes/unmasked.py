"""Probe `causal` catches this: a "causal" Perceiver whose temporal self-attention has no mask.

The contract `CausalPerceiverIO.extract_context` declares `Causal(axis="T")`: the context at
frame t may read frames <= t only. Without an `attn_mask`, every frame attends to every
other, later ones included, so frame t's context reads the future. `masked.py` is the
twin (a causal mask) that passes.

    aimespec check examples/probes/unmasked.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class CausalPerceiverIO(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.context_dim
        self.frame = nn.Linear(cfg.image_channels * 4 * 4, d)
        self.temporal = nn.MultiheadAttention(d, 4, batch_first=True)
        self.norm = nn.LayerNorm(d)

    def extract_context(self, videos):
        b, t = videos.shape[:2]
        frames = videos.reshape(b * t, *videos.shape[2:])
        feats = torch.tanh(self.frame(F.adaptive_avg_pool2d(frames, 4).flatten(1))).reshape(b, t, -1)
        mixed, _ = self.temporal(feats, feats, feats, need_weights=False)  # BUG: no causal mask
        return self.norm(feats + mixed)
