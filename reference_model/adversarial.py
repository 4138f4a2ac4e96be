"""Pillar 5 (adversarial): the video discriminator (a GAN critic, Goodfellow et al. 2014).

Each frame goes through a stack of stride-2 convolutions (`disc_channels`), is pooled
to one vector, the vectors are averaged over time, and a linear layer gives one logit
per video. No normalisation layer mixes examples, so an example's score never depends
on the rest of the batch.
"""

from typing import Annotated

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from aimespec import AimeConfig, checked


class Discriminator(nn.Module):
    """video `[B, T, C, H, W]` -> probability that it is real, `[B, 1]` in (0, 1).

    `logits(video)` gives the pre-sigmoid score, for a numerically stable GAN loss
    (`F.binary_cross_entropy_with_logits`).
    """

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        in_ch, side = cfg.image_channels, cfg.input_dim
        for out_ch in cfg.disc_channels:
            # stride 2 while the frame is at least 2 pixels wide, then stride 1 (tiny inputs)
            conv = nn.Conv2d(in_ch, out_ch, 4, 2, 1) if side >= 2 else nn.Conv2d(in_ch, out_ch, 3, 1, 1)
            layers += [conv, nn.LeakyReLU(0.2)]
            in_ch, side = out_ch, max(side // 2, 1)
        self.frames = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch, 1)

    def logits(self, video: Float[Tensor, "B T C H W"]) -> Float[Tensor, "B 1"]:
        """The unnormalised score (a logit) of each video."""
        B = video.shape[0]
        feats = self.frames(rearrange(video, "b t c h w -> (b t) c h w"))
        pooled = rearrange(feats.mean(dim=(-2, -1)), "(b t) c -> b t c", b=B).mean(dim=1)  # [B, c]
        return self.head(pooled)

    @checked("Discriminator.forward")
    def forward(self, video: Float[Tensor, "B T C H W"]) -> Annotated[Float[Tensor, "B 1"], "score"]:
        """video [B, T, C, H, W] -> score [B, 1] in (0, 1)."""
        return torch.sigmoid(self.logits(video))
