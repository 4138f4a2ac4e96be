"""The fixed twin of `fold.py`: the per-frame contexts folded back in the order they were flattened.

The frames are flattened b-major and come back with `view(b, t, -1)`: each example keeps its own
frames, and every probe passes.

    aimespec check examples/probes/fold_fixed.py
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
        per_frame = feats.view(b, t, -1)  # rows b*T + t back to [b, t, ctx]
        steps = torch.arange(1, t + 1, dtype=videos.dtype).reshape(1, t, 1)
        return self.out(per_frame.cumsum(dim=1) / steps)  # a causal running mean over time
