"""The fixed twin of `batch_first.py`: the input self-attention built with `batch_first=True`.

It reads `x [B, N, attention_dim]` as batch-first: positions attend to the positions of their
own example only, and every probe passes.

    aimespec check examples/probes/batch_first_fixed.py
"""

import torch
from torch import nn


class SlotAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg.attention_dim
        self.n_slots, self.scale = cfg.num_semantic_slots, dim**-0.5
        self.context = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.slots = nn.Parameter(torch.randn(1, self.n_slots, dim) * 0.1)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.gru = nn.GRUCell(dim, dim)

    def forward(self, x, seed_slots=None):
        b, _, d = x.shape
        x = x + self.context(x, x, x, need_weights=False)[0]  # positions attend to each other
        slots = seed_slots if seed_slots is not None else self.slots.expand(b, -1, -1)
        keys, values = self.k(x), self.v(x)
        attn = None
        for _ in range(2):
            attn = torch.einsum("bkd,bnd->bkn", self.q(slots), keys).mul(self.scale).softmax(dim=1)
            updates = torch.einsum("bkn,bnd->bkd", attn / attn.sum(-1, keepdim=True), values)
            slots = self.gru(updates.reshape(-1, d), slots.reshape(-1, d)).reshape(b, self.n_slots, d)
        return slots, attn
