"""The reference VAE encoder and attention-modulated decoder: contract shapes, stages, values."""

import functools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aimespec import AimeConfig, hold
from reference_model.vae import LOGVAR_MAX, LOGVAR_MIN, VAEDecoder, VAEEncoder, soft_clamp

SMALL = AimeConfig.small()
batches = st.integers(1, 8)
lengths = st.integers(1, 24)
seeds = st.integers(0, 2**16)


@functools.cache
def _encoder() -> VAEEncoder:
    torch.manual_seed(0)
    return VAEEncoder(SMALL).eval()


@functools.cache
def _decoder(cfg: AimeConfig = SMALL) -> VAEDecoder:
    torch.manual_seed(0)
    return VAEDecoder(cfg).eval()


def _attention(B: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(B, side * side, generator=g), dim=-1).reshape(B, side, side)


@given(B=batches, T=lengths, seed=seeds)
def test_encoder_holds_its_contract(B: int, T: int, seed: int) -> None:
    encoder = _encoder()
    assert hold(encoder, "VAEEncoder.forward", SMALL, B, T, seed) == []
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, SMALL.image_channels, SMALL.input_dim, SMALL.input_dim, generator=g)
    with torch.no_grad():
        z = encoder(x, torch.randn(B, SMALL.context_dim, generator=g))
    assert set(z) == {"mu", "logvar"}
    assert z["mu"].shape == z["logvar"].shape == (B, SMALL.latent_dim)
    assert LOGVAR_MIN <= z["logvar"].min() and z["logvar"].max() <= LOGVAR_MAX


@given(B=batches, T=lengths, seed=seeds)
def test_decoder_holds_its_contract(B: int, T: int, seed: int) -> None:
    decoder = _decoder()
    assert hold(decoder, "VAEDecoder.forward", SMALL, B, T, seed) == []
    with torch.no_grad():
        x = decoder(torch.randn(B, SMALL.latent_dim), _attention(B, SMALL.attention_resolution, seed))
    assert x.shape == (B, SMALL.image_channels, SMALL.input_dim, SMALL.input_dim)
    assert 0 <= x.min() and x.max() <= 1


@pytest.mark.slow
def test_full_config_stages(cfg: AimeConfig) -> None:
    torch.manual_seed(0)
    encoder, decoder = VAEEncoder(cfg).eval(), VAEDecoder(cfg).eval()
    enc_shapes, dec_shapes = [], []
    for stage in encoder.stages:
        stage.register_forward_hook(lambda m, i, o: enc_shapes.append(tuple(o.shape)))
    for stage in decoder.stages:
        stage.register_forward_hook(lambda m, i, o: dec_shapes.append(tuple(o.shape)))
    with torch.no_grad():
        z = encoder(torch.rand(8, 3, 64, 64), torch.randn(8, 256))
        x = decoder(z["mu"], _attention(8, cfg.attention_resolution))
    assert enc_shapes == [(8, 64, 32, 32), (8, 128, 16, 16), (8, 256, 8, 8), (8, 512, 4, 4)]
    assert z["mu"].shape == z["logvar"].shape == (8, 36)
    assert dec_shapes == [(8, 256, 8, 8), (8, 128, 16, 16), (8, 64, 32, 32), (8, 64, 64, 64)]
    assert x.shape == (8, 3, 64, 64)


@pytest.mark.parametrize("resolution", [1, 2, 7, SMALL.input_dim])
def test_decoder_takes_any_attention_resolution(resolution: int) -> None:
    cfg = SMALL.replace(attention_resolution=resolution)
    decoder = _decoder(cfg)
    assert hold(decoder, "VAEDecoder.forward", cfg, 3, 1, 0) == []
    z = torch.randn(3, cfg.latent_dim)
    attention = _attention(3, resolution, 1).requires_grad_(True)
    x = decoder(z, attention)
    assert x.shape == (3, cfg.image_channels, cfg.input_dim, cfg.input_dim)
    if resolution > 1:  # a one-cell map is always 1: nothing to learn from it
        x.sum().backward()
        assert attention.grad.abs().sum() > 0
        with torch.no_grad():
            other = decoder(z, _attention(3, resolution, 2))
        assert not torch.allclose(other, x.detach())  # the map modulates the picture


def test_uniform_attention_keeps_the_signal() -> None:
    """A uniform map rescaled to mean 1: features scaled by (1 + gain), not by 1 / (H_att * W_att)."""
    decoder = _decoder()
    modulation = decoder.modulations[0]
    feat = torch.randn(2, modulation.gain.shape[1], 8, 8)
    side = SMALL.attention_resolution
    uniform = torch.full((2, side, side), 1.0 / side**2)
    with torch.no_grad():
        torch.testing.assert_close(modulation(feat, uniform), feat * (1 + modulation.gain))


def test_logvar_is_bounded_smoothly() -> None:
    raw = torch.tensor([-1e6, -50.0, -2.5, 0.0, 3.0, 50.0, 1e6], requires_grad=True)
    out = soft_clamp(raw, LOGVAR_MIN, LOGVAR_MAX)
    assert LOGVAR_MIN <= out.min() and out.max() <= LOGVAR_MAX
    assert torch.all(out[1:] >= out[:-1])  # monotone
    out[2:5].sum().backward()
    assert torch.all(raw.grad[2:5] > 0.5)  # near-identity in the useful range
    encoder = VAEEncoder(SMALL)
    with torch.no_grad():
        encoder.head[-1].bias.fill_(1e4)
        z = encoder(torch.rand(2, 3, 32, 32), torch.randn(2, SMALL.context_dim))
    assert z["logvar"].max() <= LOGVAR_MAX and torch.isfinite(z["logvar"]).all()


def test_an_example_does_not_depend_on_the_rest_of_the_batch() -> None:
    encoder, decoder = _encoder(), _decoder()
    x, c = torch.rand(4, 3, 32, 32), torch.randn(4, SMALL.context_dim)
    z, att = torch.randn(4, SMALL.latent_dim), _attention(4, SMALL.attention_resolution)
    with torch.no_grad():
        together, alone = encoder(x, c), encoder(x[2:3], c[2:3])
        torch.testing.assert_close(alone["mu"], together["mu"][2:3], rtol=0, atol=1e-5)
        torch.testing.assert_close(decoder(z[2:3], att[2:3]), decoder(z, att)[2:3], rtol=0, atol=1e-5)
