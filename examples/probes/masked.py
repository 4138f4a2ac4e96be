"""The masked twin of `unmasked.py`: temporal self-attention with a causal mask passes `causal`.

Frame t attends to frames <= t (`attn_mask` True above the diagonal: not allowed to attend).

    aimespec check examples/probes/masked.py
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
        future = torch.ones(t, t, dtype=torch.bool, device=videos.device).triu(1)
        mixed, _ = self.temporal(feats, feats, feats, attn_mask=future, need_weights=False)
        return self.norm(feats + mixed)
