"""`VectorQuantizer`: the VQ-VAE bottleneck (van den Oord et al. 2017, "Neural Discrete
Representation Learning").

`k = argmin_j ||z_e - e_j||^2`, `z_q = e_k`, passed on straight-through
(`z_q = z_e + sg(e_k - z_e)`) so the encoder receives the decoder's gradient.
Loss `||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2` (codebook + commitment terms);
perplexity `exp(-sum_k p_k log p_k)` of the mean code usage over all quantised vectors,
which lies in `[1, num_codes]`. The codebook learns through its loss term (no EMA).
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn


class Quantized(NamedTuple):
    """One quantisation: straight-through codes, their indices, the VQ loss and perplexity."""

    quantized: Float[Tensor, "*batch code_dim"]  # z_e + sg(e_k - z_e): value e_k, gradient to z_e
    indices: Int[Tensor, "*batch"]  # k in [0, num_codes-1]
    loss: Float[Tensor, ""]
    perplexity: Float[Tensor, ""]


class VectorQuantizer(nn.Module):
    """A codebook `[num_codes, code_dim]` and nearest-neighbour quantisation of its last axis."""

    def __init__(self, num_codes: int, code_dim: int, beta: float) -> None:
        super().__init__()
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.beta = beta
        self.codebook = nn.Embedding(num_codes, code_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)

    def indices(self, z: Float[Tensor, "*batch code_dim"]) -> Int[Tensor, "*batch"]:
        """The index of the nearest code (squared Euclidean distance) of each vector."""
        flat = z.reshape(-1, self.code_dim)
        codes = self.codebook.weight
        # ||z||^2 - 2 z.e + ||e||^2: [N, num_codes]
        dist = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(-1)
        return dist.argmin(dim=-1).reshape(z.shape[:-1])

    def lookup(self, indices: Int[Tensor, "*batch"]) -> Float[Tensor, "*batch code_dim"]:
        """The codebook vectors of `indices`."""
        return self.codebook(indices)

    def forward(self, z: Float[Tensor, "*batch code_dim"]) -> Quantized:
        """Quantise `z` (any leading axes): straight-through codes, indices, loss, perplexity."""
        idx = self.indices(z)
        codes = self.lookup(idx)
        loss = F.mse_loss(codes, z.detach()) + self.beta * F.mse_loss(z, codes.detach())
        quantized = z + (codes - z).detach()
        flat = idx.flatten()  # scatter_add, not bincount: it also runs on the meta device (shape checks)
        counts = torch.zeros(self.num_codes, dtype=z.dtype, device=z.device).scatter_add_(
            0, flat, torch.ones_like(flat, dtype=z.dtype))
        usage = counts / counts.sum().clamp_min(1)
        perplexity = torch.exp(torch.special.entr(usage).sum())  # entr(p) = -p log p, 0 at p = 0
        return Quantized(quantized, idx, loss, perplexity)
