"""No false alarm: BatchNorm, dropout and per-example noise are legitimate, and pass every probe.

In training mode BatchNorm's statistics mix the examples of a batch and dropout is random;
the probes run modules in `eval()` (running statistics, no dropout) and seed torch's RNG
identically before the calls they compare, so the noise `torch.randn_like` draws here (with
no generator) is the same noise in both.

    aimespec check examples/probes/batchnorm.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class VAEEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(cfg.image_channels, 16, 4, stride=4), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.2),
            nn.Conv2d(16, 32, 4, stride=4), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.head = nn.Linear(32 + cfg.context_dim, 2 * cfg.latent_dim)

    def forward(self, x, context):
        feats = F.adaptive_avg_pool2d(self.convs(x), 1).flatten(1)
        mu, logvar = self.head(torch.cat([feats, context], dim=-1)).chunk(2, dim=-1)
        mu = mu + 0.01 * torch.randn_like(mu)  # per-example noise, no generator
        return {"mu": mu, "logvar": logvar}
