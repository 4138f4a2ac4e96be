"""Training batches from episodes: `[B, T, 3, H, W]` float32 in [0, 1] and `[B, T, A]` float32.

Each batch also says where its rows came from (`indices`: the episode, `starts`: the first
frame of the time crop) and carries one `seeds` entry per row, drawn from the loader's own
generator: hand them to `reference_model.noise.per_example(batch.seeds)` and every row's
sampling noise is fixed by the loader seed alone, however the batch is later split.
"""

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int64

from aimespec.data._episodes import DataError, EpisodeData

SEED_BOUND = 2**62


class Batch(NamedTuple):
    observations: Float[torch.Tensor, "B T C H W"]  # float32 in [0, 1]
    actions: Float[torch.Tensor, "B T A"]
    indices: Int64[torch.Tensor, "B"]  # the episode each row comes from
    starts: Int64[torch.Tensor, "B"]  # the first frame of each row's time crop
    seeds: Int64[torch.Tensor, "B"]  # per-row noise seeds, in [0, 2**62)


def batch_size_for(data: EpisodeData, batch_size: int, replacement: bool = False) -> int:
    """Rows per batch: `batch_size`, or every episode (`min(B, N)`) when there are fewer, unless sampling
    with replacement."""
    return batch_size if replacement else min(batch_size, data.num_episodes)


def batches(
    data: EpisodeData,
    batch_size: int,
    seq_len: int | None = None,
    *,
    seed: int = 0,
    num_batches: int | None = None,
    replacement: bool = False,
    shuffle: bool = True,
    device: torch.device | str | None = None,
) -> Iterator[Batch]:
    """Yield batches of `min(batch_size, N)` episodes (or `batch_size` drawn with replacement).

    Without replacement each epoch visits the episodes in a fresh order and yields
    `N // rows` full batches; `num_batches=None` is one epoch, a number runs as many epochs as
    it takes. With replacement every batch draws `batch_size` episodes independently (one epoch
    is then `ceil(N / batch_size)` batches). Episodes longer than `seq_len` are cropped to a
    random window of `seq_len` frames; `seq_len=None` keeps the whole episode. The same
    `seed` gives the same batches.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"the batch size must be a positive integer, got {batch_size!r}.")
    length = data.length if seq_len is None else seq_len
    if not isinstance(length, int) or length < 1:
        raise DataError(f"the sequence length must be a positive integer, got {seq_len!r}.")
    if length > data.length:
        raise DataError(
            f"the sequence length {length} exceeds the episodes' length {data.length}: "
            f"collect longer episodes (--length {length}) or ask for at most T = {data.length}."
        )
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 0):
        raise DataError(f"num_batches must be a non-negative integer or None, got {num_batches!r}.")
    n = data.num_episodes
    rows = batch_size_for(data, batch_size, replacement)
    if num_batches is None:
        num_batches = -(-n // batch_size) if replacement else n // rows
    rng = np.random.default_rng(seed)
    order: list[np.ndarray] = []
    for _ in range(num_batches):
        if replacement:
            idx = rng.integers(0, n, size=rows)
        else:
            if not order:
                perm = rng.permutation(n) if shuffle else np.arange(n)
                order = [perm[i : i + rows] for i in range(0, n - rows + 1, rows)]
            idx = order.pop(0)
        starts = rng.integers(0, data.length - length + 1, size=rows)
        seeds = rng.integers(0, SEED_BOUND, size=rows)
        yield _gather(data, idx, starts, length, seeds, device)


def _gather(
    data: EpisodeData, idx: np.ndarray, starts: np.ndarray, length: int, seeds: np.ndarray,
    device: torch.device | str | None,
) -> Batch:
    window = starts[:, None] + np.arange(length)[None, :]  # [B, T]
    episodes = idx[:, None]
    obs = torch.from_numpy(data.observations[episodes, window]).to(device).float().div_(255.0)
    act = torch.from_numpy(np.ascontiguousarray(data.actions[episodes, window])).to(device)
    as_long = lambda a: torch.as_tensor(a, dtype=torch.int64, device=device)  # noqa: E731
    return Batch(obs, act, as_long(idx), as_long(starts), as_long(seeds))
