"""The fixed twin of `stateful.py`: the annealing counter advances in training mode only.

    aimespec check examples/probes/stateful_fixed.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class DPGMMPrior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.k, self.d = cfg.max_components, cfg.latent_dim
        width = cfg.hidden_dim + cfg.context_dim
        self.sticks = nn.Linear(width, 2 * (self.k - 1))
        self.components = nn.Linear(width, 2 * self.k * self.d)
        self.register_buffer("calls", torch.zeros(()))  # an annealing counter

    def forward(self, h, n_samples=10):
        if self.training:
            self.calls.add_(1)
        h = h / (1 + 0.1 * self.calls.clamp(max=10))
        a_raw, b_raw = self.sticks(h).chunk(2, dim=-1)
        kumar_a, kumar_b = F.softplus(a_raw) + 1e-3, F.softplus(b_raw) + 1e-3
        v = (1 - (1 - torch.rand_like(kumar_a).clamp(1e-4, 1 - 1e-4)) ** (1 / kumar_b)) ** (1 / kumar_a)
        v = v.clamp(1e-5, 1 - 1e-5)
        rest = torch.cumprod(1 - v, dim=-1)
        pi = torch.cat([v * torch.cat([torch.ones_like(v[:, :1]), rest[:, :-1]], dim=-1), rest[:, -1:]], dim=-1)
        params = self.components(h).reshape(h.shape[0], self.k, 2, self.d)
        alpha = torch.ones(h.shape[0], n_samples)
        return {"pi": pi, "means": params[:, :, 0], "log_vars": params[:, :, 1], "kumar_a": kumar_a,
                "kumar_b": kumar_b, "alpha": alpha, "sticks": v}
