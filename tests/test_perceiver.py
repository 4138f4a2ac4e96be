"""The reference VQ tokenizer and causal Perceiver IO: contract shapes, VQ values, causality."""

import functools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aimespec import AimeConfig, hold
from reference_model.perceiver import CausalPerceiverIO, PerceiverOutput, VQPTTokenizer
from reference_model.vq import VectorQuantizer

SMALL = AimeConfig.small()
batches = st.integers(1, 8)
lengths = st.integers(1, 24)
seeds = st.integers(0, 2**16)


@functools.cache
def _perceiver() -> CausalPerceiverIO:
    torch.manual_seed(0)
    return CausalPerceiverIO(SMALL).eval()


def _video(cfg: AimeConfig, B: int, T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, cfg.image_channels, cfg.input_dim, cfg.input_dim, generator=g)


# --- contract shapes --------------------------------------------------------------------------
@given(B=batches, T=lengths, seed=seeds)
def test_encode_holds_its_contract(B: int, T: int, seed: int) -> None:
    tokenizer = _perceiver().tokenizer
    assert hold(tokenizer, "VQPTTokenizer.encode", SMALL, B, T, seed) == []
    with torch.no_grad():
        tokens, vq_loss, perplexity = tokenizer.encode(_video(SMALL, B, T, seed))
        encoded = tokenizer.encode_latents(_video(SMALL, B, T, seed))
    grid = SMALL.token_grid
    assert tokens.shape == (B, T, grid, grid) and tokens.dtype == torch.int64
    assert 0 <= tokens.min() and tokens.max() <= SMALL.num_codes - 1
    assert vq_loss.shape == () and vq_loss.item() >= 0
    assert perplexity.shape == () and 1 - 1e-6 <= perplexity.item() <= SMALL.num_codes + 1e-4
    assert encoded.shape == (B, SMALL.code_dim, SMALL.encoded_length(T), grid, grid)


@given(B=batches, T=lengths, seed=seeds)
def test_decode_holds_its_contract(B: int, T: int, seed: int) -> None:
    tokenizer = _perceiver().tokenizer
    assert hold(tokenizer, "VQPTTokenizer.decode", SMALL, B, T, seed) == []
    tokens = torch.randint(0, SMALL.num_codes, (B, T, SMALL.token_grid, SMALL.token_grid))
    with torch.no_grad():
        frames = tokenizer.decode(tokens)
    assert frames.shape == (B, T, SMALL.image_channels, SMALL.input_dim, SMALL.input_dim)
    assert 0 <= frames.min() and frames.max() <= 1


@given(B=batches, T=lengths, seed=seeds)
def test_extract_context_holds_its_contract(B: int, T: int, seed: int) -> None:
    perceiver = _perceiver()
    assert hold(perceiver, "CausalPerceiverIO.extract_context", SMALL, B, T, seed) == []
    video = _video(SMALL, B, T, seed)
    with torch.no_grad():
        context = perceiver.extract_context(video)
        out = perceiver.perceive(video)
    assert context.shape == (B, T, SMALL.context_dim)
    assert isinstance(out, PerceiverOutput)
    torch.testing.assert_close(out.context, context)  # extract_context is perceive's contract view
    assert out.quantized.shape == (B, T, SMALL.code_dim, SMALL.token_grid, SMALL.token_grid)
    assert not hasattr(perceiver, "last_output") and not hasattr(perceiver.tokenizer, "last_quantized")
    assert out.tokens.shape == (B, T, SMALL.token_grid, SMALL.token_grid)
    assert out.vq_loss.shape == () and out.perplexity.shape == ()


@pytest.mark.slow
def test_full_config_shapes(cfg: AimeConfig) -> None:
    torch.manual_seed(0)
    perceiver = CausalPerceiverIO(cfg).eval()
    seen = []
    perceiver.tokenizer.to_code.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        out = perceiver.perceive(_video(cfg, 8, 16))
    context = out.context
    assert seen == [(8, 256, 2, 8, 8)]
    assert out.tokens.shape == (8, 16, 8, 8)
    assert context.shape == (8, 16, 256)
    assert perceiver.tokenizer.vq.codebook.weight.shape == (cfg.num_codes, cfg.code_dim) == (1024, 256)


# --- causal temporal layout ---------------------------------------------------------------------
def test_frame_blocks_are_the_latest_block_ending_at_or_before_the_frame() -> None:
    s = SMALL.temporal_downsample
    tokenizer = _perceiver().tokenizer
    for T in (1, 3, 4, 5, 9, 13):
        blocks = tokenizer.frame_blocks(T).tolist()
        assert len(blocks) == T and max(blocks) == SMALL.encoded_length(T) - 1
        for t, j in enumerate(blocks):
            assert s * j <= t < s * (j + 1)  # block j ends at frame s*j <= t; the next ends after t


@pytest.mark.parametrize("T", [5, 8, 9])
def test_each_frame_feeds_exactly_the_block_that_covers_it(T: int) -> None:
    """Block j covers frames s*j-(s-1) .. s*j; frames after the last block end feed none."""
    s = SMALL.temporal_downsample
    tokenizer = _perceiver().tokenizer
    video = _video(SMALL, 2, T, 1)
    with torch.no_grad():
        base = tokenizer.encode_latents(video)
        for f in range(T):
            changed = video.clone()
            changed[:, f] = torch.rand_like(changed[:, f])
            moved = [
                not torch.equal(a, b)
                for a, b in zip(tokenizer.encode_latents(changed).unbind(2), base.unbind(2), strict=True)
            ]
            owner = -(-f // s)
            assert moved == [j == owner for j in range(base.shape[2])], (f, moved)


@pytest.mark.parametrize("T", [1, 4, 6, 9, 11])
def test_past_tokens_and_context_ignore_the_future(T: int) -> None:
    perceiver = _perceiver()
    video = _video(SMALL, 3, T, 2)
    with torch.no_grad():
        context, tokens, *_ = perceiver.perceive(video)
        future_moved = False
        for t in range(T - 1):
            changed = video.clone()
            changed[:, t + 1 :] = torch.rand_like(changed[:, t + 1 :])
            context2, tokens2, *_ = perceiver.perceive(changed)
            assert torch.equal(tokens2[:, : t + 1], tokens[:, : t + 1])
            torch.testing.assert_close(context2[:, : t + 1], context[:, : t + 1], rtol=0, atol=1e-5)
            future_moved |= not torch.allclose(context2[:, t + 1 :], context[:, t + 1 :])
    assert future_moved or T < SMALL.temporal_downsample + 1  # the perturbation did reach later frames


def test_an_example_does_not_depend_on_the_rest_of_the_batch() -> None:
    perceiver = _perceiver()
    video = _video(SMALL, 4, 6, 3)
    with torch.no_grad():
        together = perceiver.extract_context(video)
        alone = perceiver.extract_context(video[1:2])
    torch.testing.assert_close(alone, together[1:2], rtol=0, atol=1e-5)


# --- vector quantisation ---------------------------------------------------------------------------
def test_quantizer_against_its_definition() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=6, code_dim=3, beta=0.25)
    codes = vq.codebook.weight.detach()
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    exact = vq(codes[perm].clone())
    assert exact.indices.tolist() == perm.tolist()
    assert exact.loss.item() == pytest.approx(0.0, abs=1e-12)
    assert exact.perplexity.item() == pytest.approx(6.0)  # uniform usage of all codes
    one = vq(codes[[2, 2, 2]].clone())
    assert one.perplexity.item() == pytest.approx(1.0)
    z = torch.randn(5, 3, requires_grad=True)
    q = vq(z)
    naive = torch.stack([((codes - row) ** 2).sum(-1).argmin() for row in z.detach()])
    assert torch.equal(q.indices, naive)
    e = codes[naive]
    assert q.loss.item() == pytest.approx(1.25 * ((z.detach() - e) ** 2).mean().item(), rel=1e-5)
    torch.testing.assert_close(q.quantized.detach(), e)
    q.quantized.sum().backward()  # straight-through: d quantized / d z = identity
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_decoding_the_quantized_latents_reaches_the_encoder() -> None:
    torch.manual_seed(1)
    perceiver = CausalPerceiverIO(SMALL)
    video = _video(SMALL, 2, 5, 4)
    out = perceiver.perceive(video)
    recon = perceiver.tokenizer.decode_latents(out.quantized)
    assert recon.shape == video.shape
    torch.testing.assert_close(recon.detach(), perceiver.tokenizer.decode(out.tokens).detach())
    (recon - video).pow(2).mean().backward()
    first_conv = perceiver.tokenizer.frame_encoder.net[0]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert torch.isfinite(first_conv.weight.grad).all()


def test_vq_loss_trains_the_codebook_and_encoder() -> None:
    torch.manual_seed(2)
    tokenizer = VQPTTokenizer(SMALL)
    _, vq_loss, _ = tokenizer.encode(_video(SMALL, 2, 4, 5))
    vq_loss.backward()
    assert tokenizer.vq.codebook.weight.grad.abs().sum() > 0
    assert tokenizer.temporal.weight.grad.abs().sum() > 0
