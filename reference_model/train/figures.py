"""Training figures: what the model sees, rebuilds and attends to, as one PNG (numpy + Pillow).

For a few examples and evenly spaced timesteps, one column per timestep and, per example,
the rows

    frame            the observation x_t
    reconstruction   the decoder's x_hat_t
    attention        the attention map A_t [H_att, W_att], upsampled, as a heat overlay on x_t
    slot k           each of the K_slots slot masks, upsampled, lighting x_t where slot k attends

under a title line with the step and the four task losses.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image, ImageDraw, ImageFont

MIN_CELL = 64  # frames smaller than this are enlarged (nearest neighbour) to at least this size
GAP = 2  # pixels between cells
LABEL_WIDTH = 96
TITLE_HEIGHT = 18
# a perceptually ordered heat map (black -> purple -> orange -> pale yellow), as RGB anchors
_HEAT = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
     [252, 255, 164]],
    dtype=np.float32,
) / 255.0


def heat(values: Float[np.ndarray, "H W"]) -> Float[np.ndarray, "H W 3"]:
    """Map values in [0, 1] to heat-map RGB colours in [0, 1]."""
    x = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(_HEAT) - 1)
    low = np.floor(x).astype(int).clip(0, len(_HEAT) - 2)
    frac = (x - low)[..., None]
    return _HEAT[low] * (1 - frac) + _HEAT[low + 1] * frac


def _upsample(values: Float[np.ndarray, "h w"], size: tuple[int, int]) -> Float[np.ndarray, "H W"]:
    """Bilinear resize of a 2-D map to (H, W)."""
    image = Image.fromarray(np.ascontiguousarray(np.nan_to_num(values), dtype=np.float32))
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def _rgb(frame: Float[np.ndarray, "3 H W"]) -> Float[np.ndarray, "H W 3"]:
    return np.clip(np.nan_to_num(frame.transpose(1, 2, 0)), 0.0, 1.0)


def _timesteps(T: int, count: int) -> list[int]:
    return sorted({round(i * (T - 1) / max(count - 1, 1)) for i in range(min(count, T))})


def render(
    observations: Float[torch.Tensor, "B T C H W"],
    outputs: Mapping[str, torch.Tensor],
    *,
    title: str = "",
    examples: int = 2,
    timesteps: int = 6,
) -> Image.Image:
    """One RGB image: per example, frame / reconstruction / attention / slot-mask rows over time."""
    obs = observations.detach().float().cpu().numpy()
    recon = outputs["reconstructions"].detach().float().cpu().numpy()
    attn = outputs["attention_maps"].detach().float().cpu().numpy()
    masks = outputs.get("slot_masks")
    masks = masks.detach().float().cpu().numpy() if masks is not None else None
    B, T, _, H, W = obs.shape
    shown = list(range(min(examples, B)))
    steps = _timesteps(T, timesteps)
    scale = max(1, -(-MIN_CELL // max(H, W)))
    cell_h, cell_w = H * scale, W * scale

    rows: list[tuple[str, list[np.ndarray]]] = []
    for b in shown:
        frames = [_rgb(obs[b, t]) for t in steps]
        rows.append((f"#{b} frame", frames))
        rows.append((f"#{b} recon", [_rgb(recon[b, t]) for t in steps]))
        overlays = []
        for i, t in enumerate(steps):
            a = _upsample(attn[b, t], (H, W))
            a = a / max(float(a.max()), 1e-12)  # the map sums to 1: show it relative to its peak
            overlays.append(0.45 * frames[i] + 0.55 * heat(a))
        rows.append((f"#{b} attention", overlays))
        if masks is not None:
            for k in range(masks.shape[2]):
                lit = [frames[i] * (0.12 + 0.88 * np.clip(_upsample(masks[b, t, k], (H, W)), 0, 1)[..., None])
                       for i, t in enumerate(steps)]
                rows.append((f"#{b} slot {k}", lit))

    width = LABEL_WIDTH + len(steps) * (cell_w + GAP)
    height = TITLE_HEIGHT + 12 + len(rows) * (cell_h + GAP) + GAP * (len(shown) - 1) * 3
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((4, 3), title, fill=(235, 235, 235), font=font)
    for i, t in enumerate(steps):
        draw.text((LABEL_WIDTH + i * (cell_w + GAP) + 2, TITLE_HEIGHT), f"t={t}", fill=(180, 180, 180), font=font)
    y = TITLE_HEIGHT + 12
    for r, (label, cells) in enumerate(rows):
        if r and label.endswith("frame"):
            y += GAP * 3  # a wider gap between examples
        draw.text((4, y + cell_h // 2 - 6), label, fill=(220, 220, 220), font=font)
        for i, cell in enumerate(cells):
            pixels = (np.clip(cell, 0.0, 1.0) * 255).round().astype(np.uint8)
            tile = Image.fromarray(pixels).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            canvas.paste(tile, (LABEL_WIDTH + i * (cell_w + GAP), y))
        y += cell_h + GAP
    return canvas


def save(image: Image.Image, path: str | Path) -> Path:
    """Write the PNG atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path


__all__ = ["heat", "render", "save"]
