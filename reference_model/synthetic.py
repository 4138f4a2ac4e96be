"""Synthetic moving-shapes videos whose motion is driven by the actions.

`moving_shapes(n, T, size, action_dim, seed)` draws `n` videos of `T` frames: one to
three coloured squares or discs on a dark background. Each shape moves by
`speed * (a_t[0], a_t[1])` pixels a frame (action dims beyond the first two are
distractors), reflecting off the borders. Small enough to learn in seconds, structured
enough that a world model must use its actions: tests, benchmarks and examples share it.
"""

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


def _smooth_actions(rng: np.random.Generator, n: int, T: int, action_dim: int) -> np.ndarray:
    """Actions in [-1, 1] that change slowly (a clipped random walk), [n, T, A]."""
    start = rng.uniform(-1.0, 1.0, size=(n, 1, action_dim))
    steps = rng.normal(0.0, 0.3, size=(n, T, action_dim))
    steps[:, 0] = 0.0
    return np.clip(start + np.cumsum(steps, axis=1), -1.0, 1.0).astype(np.float32)


def _reflect(pos: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold positions back into [low, high] as a ball bouncing off the walls would."""
    span = high - low
    if span <= 0:
        return np.full_like(pos, low)
    folded = np.mod(pos - low, 2 * span)
    return low + np.where(folded > span, 2 * span - folded, folded)


def moving_shapes(
    n: int, T: int, size: int = 64, action_dim: int = 6, seed: int = 0, *, max_shapes: int = 3,
    speed: float | None = None,
) -> tuple[Float[Tensor, "n T 3 size size"], Float[Tensor, "n T A"]]:
    """`n` videos `[n, T, 3, size, size]` in [0, 1] and their actions `[n, T, action_dim]`.

    Frame t shows the shapes after the actions a_0 .. a_{t-1} have moved them; a shape's
    velocity at step t is `speed * (a_t[0], a_t[1] if action_dim > 1 else 0)` pixels.
    """
    if n < 1 or T < 1 or size < 4 or action_dim < 1:
        raise ValueError(f"moving_shapes needs n, T, action_dim >= 1 and size >= 4, got {n=}, {T=}, {size=}, "
                         f"{action_dim=}")
    rng = np.random.default_rng(seed)
    speed = size / 12 if speed is None else speed
    actions = _smooth_actions(rng, n, T, action_dim)
    velocity = np.zeros((n, T, 2), dtype=np.float32)
    velocity[..., 0] = actions[..., 0]
    if action_dim > 1:
        velocity[..., 1] = actions[..., 1]

    yy, xx = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    video = np.zeros((n, T, 3, size, size), dtype=np.float32)
    video += rng.uniform(0.0, 0.15, size=(n, 1, 3, 1, 1)).astype(np.float32)  # background tint
    for i in range(n):
        for _ in range(int(rng.integers(1, max_shapes + 1))):
            radius = rng.uniform(size / 10, size / 5)
            colour = rng.uniform(0.4, 1.0, size=3).astype(np.float32)
            disc = bool(rng.integers(0, 2))
            # each shape follows the actions with its own gain (and sign), so shapes differ
            gain = rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
            start = rng.uniform(radius, size - radius, size=2)
            offsets = np.concatenate([[0.0, 0.0], np.cumsum(velocity[i, :-1] * speed * gain, axis=0).ravel()])
            path = start + offsets.reshape(T, 2)
            path = _reflect(path, radius, size - radius)
            for t in range(T):
                cx, cy = path[t]
                if disc:
                    mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
                else:
                    mask = (np.abs(xx - cx) <= radius) & (np.abs(yy - cy) <= radius)
                video[i, t][:, mask] = colour[:, None]
    return torch.from_numpy(np.clip(video, 0.0, 1.0)), torch.from_numpy(actions)


__all__ = ["moving_shapes"]
