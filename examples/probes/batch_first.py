"""Probe `batch` catches this: an input self-attention left at `batch_first=False`.

`nn.MultiheadAttention(dim, heads)` expects `[L, B, E]`; given `x [B, N, attention_dim]` it
takes the batch axis for the sequence, so each position attends across the examples of the
batch. Every shape is right. `batch_first_fixed.py` is the twin that passes.

    aimespec check examples/probes/batch_first.py
"""

import torch
from torch import nn


class SlotAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg.attention_dim
        self.n_slots, self.scale = cfg.num_semantic_slots, dim**-0.5
        self.context = nn.MultiheadAttention(dim, 4)  # BUG: batch_first left at False
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
