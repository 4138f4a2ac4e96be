"""Pillar 2 (VAE): the hierarchical encoder q(z_t | x_t, c_t) and the attention-modulated
decoder p(x_t | z_t, A_t) (Kingma & Welling 2014; layout of the seed's section 5).

Encoder: `len(vae_channels)` stages of ResBlock + stride-2 convolution
(`[B, 64, 32, 32] -> ... -> [B, 512, 4, 4]` at the default), flattened, concatenated with
the context, then linear layers to `mu` and `logvar`. Decoder: the mirror image with
nearest-neighbour upsampling; the attention map modulates the features after the first
two up-stages (`8x8` and `16x16` at the default).
"""

from typing import Annotated

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from aimespec import AimeConfig, checked
from contracts.vae import ZParams

LOGVAR_MIN, LOGVAR_MAX = -10.0, 5.0


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (per example): never BatchNorm, whose statistics mix examples."""
    return nn.GroupNorm(min(32, channels) if channels % min(32, channels) == 0 else 1, channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, 3x3 conv) twice, plus a (1x1) skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _norm(in_ch),
            nn.SiLU(),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),  # a GroupNorm follows: a bias would be dead
            _norm(out_ch),
            nn.SiLU(),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1),
        )
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Float[Tensor, "B c h w"]) -> Float[Tensor, "B c2 h w"]:
        return self.skip(x) + self.net(x)


def soft_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """A smooth clamp to (low, high): identity-like near the middle, gradients everywhere."""
    mid, half = (high + low) / 2, (high - low) / 2
    return mid + half * torch.tanh((x - mid) / half)


class VAEEncoder(nn.Module):
    """x_t `[B, C, H, W]` and context `[B, context_dim]` -> `{"mu", "logvar"}`, each `[B, D]`.

    `self.stages[i]` outputs `[B, vae_channels[i], H / 2**(i+1), W / 2**(i+1)]`.
    """

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = cfg.vae_channels
        self.stem = nn.Conv2d(cfg.image_channels, chans[0], 3, 1, 1)
        self.stages = nn.ModuleList(
            nn.Sequential(ResBlock(in_ch, out_ch), nn.Conv2d(out_ch, out_ch, 4, 2, 1))
            for in_ch, out_ch in zip((chans[0], *chans[:-1]), chans, strict=True)
        )
        side = cfg.input_dim // 2 ** len(chans)
        hidden = max(chans[-1], 2 * cfg.latent_dim)
        self.head = nn.Sequential(
            nn.Linear(chans[-1] * side * side + cfg.context_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * cfg.latent_dim),
        )

    @checked("VAEEncoder.forward")
    def forward(self, x: Float[Tensor, "B C H W"], context: Float[Tensor, "B context_dim"]) -> ZParams:
        """x [B, C, H, W], context [B, context_dim] -> z_params {mu, logvar} [B, D]."""
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        h = torch.cat([rearrange(F.silu(h), "b c h w -> b (c h w)"), context], dim=-1)
        mu, raw_logvar = self.head(h).chunk(2, dim=-1)
        return {"mu": mu, "logvar": soft_clamp(raw_logvar, LOGVAR_MIN, LOGVAR_MAX)}


class AttentionModulation(nn.Module):
    """`feat * (1 + gain * a)`, with `a` the attention map resized to the features.

    The map sums to 1 over its `H_att * W_att` cells, so each cell is about
    `1 / (H_att * W_att)`: multiplying features by it alone would shrink them toward zero
    (and by a factor that depends on the resolution). It is first rescaled to mean 1
    (`a = map * H_att * W_att`, uniform attention -> all ones), and enters as a learned
    per-channel gain on top of the identity, so the decoder keeps its signal and learns
    how strongly attended regions are emphasised.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((1, channels, 1, 1), 0.5))

    def forward(
        self, feat: Float[Tensor, "B c h w"], attention_map: Float[Tensor, "B H_att W_att"]
    ) -> Float[Tensor, "B c h w"]:
        cells = attention_map.shape[-1] * attention_map.shape[-2]
        att = F.interpolate(
            attention_map.unsqueeze(1) * cells,
            size=feat.shape[-2:],
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )  # [B, 1, h, w], mean about 1
        return feat * (1 + self.gain * att)


class VAEDecoder(nn.Module):
    """z_t `[B, D]` and the attention map `[B, H_att, W_att]` -> the frame `[B, C, H, W]` in [0, 1].

    `self.stages[i]` outputs `[B, c_i, s * 2**(i+1), s * 2**(i+1)]` with `c = (256, 128, 64, 64)`
    at the default (`s = 4`); the attention map modulates the outputs of stages 0 and 1.
    """

    modulated_stages = 2

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = cfg.vae_channels
        self.side = cfg.input_dim // 2 ** len(chans)
        outs = [*chans[-2::-1], chans[0]]  # mirrored: 512 -> 256 -> 128 -> 64 -> 64
        self.project = nn.Linear(cfg.latent_dim, chans[-1] * self.side * self.side)
        self.stages = nn.ModuleList(
            nn.Sequential(
                ResBlock(in_ch, out_ch), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(out_ch, out_ch, 3, 1, 1)
            )
            for in_ch, out_ch in zip((chans[-1], *outs[:-1]), outs, strict=True)
        )
        self.modulations = nn.ModuleList(AttentionModulation(c) for c in outs[: self.modulated_stages])
        self.out = nn.Sequential(_norm(outs[-1]), nn.SiLU(), nn.Conv2d(outs[-1], cfg.image_channels, 3, 1, 1))

    @checked("VAEDecoder.forward")
    def forward(
        self, z: Float[Tensor, "B D"], attention_map: Float[Tensor, "B H_att W_att"]
    ) -> Annotated[Float[Tensor, "B C H W"], "reconstruction"]:
        """z [B, D], attention_map [B, H_att, W_att] -> reconstruction [B, C, H, W]."""
        h = rearrange(self.project(z), "b (c h w) -> b c h w", h=self.side, w=self.side)
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i < len(self.modulations):
                h = self.modulations[i](h, attention_map)
        return torch.sigmoid(self.out(h))
