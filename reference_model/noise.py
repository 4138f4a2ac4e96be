"""Where the reference model's randomness comes from.

Every stochastic draw in `reference_model` (reparameterisation noise, Kumaraswamy sticks,
Gamma concentration draws, slot initialisation) goes through `randn` / `rand` here.
By default they are plain `torch.randn` / `torch.rand`. Inside `per_example(seeds)`, row
`b` of every draw (the batch axis is axis 0) comes from its own generator seeded by
`seeds[b]` and a call counter, so that splitting a batch across processes, or
re-running one example alone, draws exactly the same noise for it.
"""

import contextlib
import contextvars
from collections.abc import Iterator

import torch


class _PerExample:
    def __init__(self, seeds: list[int]) -> None:
        self.seeds = seeds
        self.calls = 0

    def draw(self, kind: str, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if not shape or shape[0] != len(self.seeds):
            raise ValueError(
                f"per-example noise needs the batch axis first: shape {list(shape)} vs {len(self.seeds)} seeds"
            )
        self.calls += 1
        rows = []
        for seed in self.seeds:
            g = torch.Generator().manual_seed((int(seed) * 1_000_003 + self.calls * 7919) % (2**63 - 1))
            fn = torch.randn if kind == "randn" else torch.rand
            rows.append(fn(shape[1:], generator=g, dtype=dtype))
        return torch.stack(rows).to(device)


_source: contextvars.ContextVar[_PerExample | None] = contextvars.ContextVar("aime_noise", default=None)


@contextlib.contextmanager
def per_example(seeds: torch.Tensor | list[int]) -> Iterator[None]:
    """Draw noise per example: row b of each draw from a generator seeded by `seeds[b]`."""
    token = _source.set(_PerExample([int(s) for s in (seeds.tolist() if torch.is_tensor(seeds) else seeds)]))
    try:
        yield
    finally:
        _source.reset(token)


def randn(*shape: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of `shape`, on `like`'s device and dtype."""
    src = _source.get()
    if src is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return src.draw("randn", shape, like.device, like.dtype)


def rand(*shape: int, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise of `shape`, on `like`'s device and dtype."""
    src = _source.get()
    if src is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    return src.draw("rand", shape, like.device, like.dtype)
