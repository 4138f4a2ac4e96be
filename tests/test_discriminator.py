"""The reference video discriminator: contract shape, scores in (0, 1), its logits."""

import functools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aimespec import AimeConfig, hold
from reference_model.adversarial import Discriminator

SMALL = AimeConfig.small()


@functools.cache
def _disc() -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(SMALL).eval()


def _video(cfg: AimeConfig, B: int, T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, cfg.image_channels, cfg.input_dim, cfg.input_dim, generator=g)


@given(B=st.integers(1, 8), T=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_discriminator_holds_its_contract(B: int, T: int, seed: int) -> None:
    disc = _disc()
    assert hold(disc, "Discriminator.forward", SMALL, B, T, seed) == []
    video = _video(SMALL, B, T, seed)
    with torch.no_grad():
        score, logits = disc(video), disc.logits(video)
    assert score.shape == logits.shape == (B, 1)
    assert 0 < score.min() and score.max() < 1
    torch.testing.assert_close(score, torch.sigmoid(logits))


@pytest.mark.slow
def test_full_config_score(cfg: AimeConfig) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        score = Discriminator(cfg)(_video(cfg, 8, 16))
    assert score.shape == (8, 1)


def test_score_is_a_mean_over_time_and_per_example() -> None:
    disc = _disc()
    video = _video(SMALL, 3, 4, 1)
    with torch.no_grad():
        once = disc.logits(video[:, :1])
        repeated = disc.logits(video[:, :1].repeat(1, 5, 1, 1, 1))  # the same frame five times
        torch.testing.assert_close(repeated, once, rtol=0, atol=1e-5)
        torch.testing.assert_close(disc.logits(video[1:2]), disc.logits(video)[1:2], rtol=0, atol=1e-5)
        assert not torch.allclose(disc.logits(video), disc.logits(video.flip(0)))  # scores differ per video


def test_gradients_reach_the_first_layer_and_the_input() -> None:
    torch.manual_seed(1)
    disc = Discriminator(SMALL)
    video = _video(SMALL, 2, 3).requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(disc.logits(video), torch.ones(2, 1))
    loss.backward()
    assert disc.frames[0].weight.grad.abs().sum() > 0
    assert video.grad.abs().sum() > 0
