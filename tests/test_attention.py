"""Slot attention and the attention schema: contracts, simplex invariants, symmetries, warping."""

import pytest
import torch
from einops import rearrange
from hypothesis import given
from hypothesis import strategies as st

import aimespec
from aimespec import AimeConfig, ContractViolation
from contracts.attention import SchemaResult, SlotResult
from reference_model import noise
from reference_model.attention import AttentionSchema, SchemaOutput, SlotAttention, coordinate_grid, diversity

SMALL = AimeConfig.small()
torch.manual_seed(0)
SLOTS = SlotAttention(SMALL)
SCHEMA = AttentionSchema(SMALL)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _schema_inputs(cfg: AimeConfig, B: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    obs = torch.rand(B, cfg.image_channels, cfg.input_dim, cfg.input_dim, generator=g)
    return obs, torch.randn(B, cfg.hidden_dim, generator=g), torch.randn(B, cfg.context_dim, generator=g)


# --- slot attention -----------------------------------------------------------------------------
@given(B=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_slot_attention_holds_its_contract(B: int, seed: int) -> None:
    assert aimespec.hold(SLOTS, "SlotAttention.forward", SMALL, B, 1, seed) == []
    x = torch.randn(B, SMALL.num_positions, SMALL.attention_dim, generator=_gen(seed))
    result = SLOTS(x)
    assert isinstance(result, SlotResult)
    assert result.slots.shape == (B, SMALL.num_semantic_slots, SMALL.attention_dim)
    assert result.attn.shape == (B, SMALL.num_semantic_slots, SMALL.num_positions)
    torch.testing.assert_close(result.attn.sum(1), torch.ones(B, SMALL.num_positions))
    assert (result.attn >= 0).all()


def test_slot_attention_is_permutation_equivariant() -> None:
    B, K, N, D = 2, SMALL.num_semantic_slots, SMALL.num_positions, SMALL.attention_dim
    x = torch.randn(B, N, D, generator=_gen(1))
    seeds = torch.randn(B, K, D, generator=_gen(2))
    base = SLOTS(x, seeds)
    # permuting the seed slots permutes the slots and their attention rows
    perm = torch.tensor([2, 0, 1])
    swapped = SLOTS(x, seeds[:, perm])
    torch.testing.assert_close(swapped.slots, base.slots[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(swapped.attn, base.attn[:, perm], atol=1e-5, rtol=1e-5)
    # permuting the input positions leaves the slots unchanged and permutes the attention columns
    order = torch.randperm(N, generator=_gen(3))
    shuffled = SLOTS(x[:, order], seeds)
    torch.testing.assert_close(shuffled.slots, base.slots, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shuffled.attn, base.attn[:, :, order], atol=1e-5, rtol=1e-5)


def test_slot_initialisation_draws_from_the_noise_source() -> None:
    x = torch.randn(3, SMALL.num_positions, SMALL.attention_dim, generator=_gen(4))
    with noise.per_example([5, 6, 7]):
        batch = SLOTS(x)
    with noise.per_example([6]):
        alone = SLOTS(x[1:2])
    torch.testing.assert_close(alone.slots[0], batch.slots[1], atol=1e-5, rtol=1e-5)
    with noise.per_example([8]):
        other = SLOTS(x[1:2])
    assert not torch.allclose(other.slots, alone.slots)


def test_unflattened_features_are_error_5() -> None:
    feat = torch.randn(2, SMALL.attention_dim, SMALL.attention_resolution, SMALL.attention_resolution)
    with pytest.raises(ContractViolation, match=r"x expected 3 dims"):
        SLOTS(feat)


# --- the attention schema -----------------------------------------------------------------------
@given(B=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_attention_schema_holds_its_contract(B: int, seed: int) -> None:
    assert aimespec.hold(SCHEMA, "AttentionSchema.forward", SMALL, B, 1, seed) == []
    obs, h, c = _schema_inputs(SMALL, B, seed)
    result = SCHEMA(obs, h, c)
    R, K = SMALL.attention_resolution, SMALL.num_semantic_slots
    assert isinstance(result, SchemaResult)
    probs, coords = result
    assert probs.shape == (B, R, R) and coords.shape == (B, 2)
    torch.testing.assert_close(probs.sum((-2, -1)), torch.ones(B))
    assert ((probs >= 0) & (probs <= 1)).all()
    assert ((coords >= -1) & (coords <= 1)).all()
    # the coordinates are the attention-weighted mean of the pixel-centre grid (x, y)
    grid = coordinate_grid(R, probs)
    torch.testing.assert_close(coords, torch.einsum("bhw,chw->bc", probs, grid))
    torch.manual_seed(seed)
    aux = SCHEMA.attend(obs, h, c)
    torch.manual_seed(seed)
    assert isinstance(aux, SchemaOutput)
    torch.testing.assert_close(tuple(aux.result()), tuple(SCHEMA(obs, h, c)))  # forward is attend's contract view
    assert aux.slots.shape == (B, K, SMALL.attention_dim)
    assert aux.slot_masks.shape == (B, K, R, R)
    torch.testing.assert_close(aux.slot_masks.sum(1), torch.ones(B, R, R))
    assert aux.motion_field.shape == (B, 2, R, R)
    assert aux.diversity_loss.shape == () and aux.diversity_loss >= 0
    torch.testing.assert_close(aux.diversity_loss, diversity(aux.slots))
    assert not hasattr(SCHEMA, "last") and not hasattr(SCHEMA, "diversity_loss")  # nothing stashed


@pytest.mark.parametrize("resolution", [1, 2, 7, 21, 32])
def test_any_attention_resolution_up_to_the_image_works(resolution: int) -> None:
    cfg = SMALL.replace(attention_resolution=resolution)
    schema = AttentionSchema(cfg)
    assert aimespec.hold(schema, "AttentionSchema.forward", cfg, 2, 1, 0) == []
    probs, coords = schema(*_schema_inputs(cfg, 2, 1))
    assert probs.shape == (2, resolution, resolution)
    if resolution == 1:
        assert torch.equal(probs, torch.ones(2, 1, 1)) and torch.equal(coords, torch.zeros(2, 2))


def test_fused_features_skip_the_extractor() -> None:
    cfg = SMALL
    schema = AttentionSchema(cfg)
    obs, h, c = _schema_inputs(cfg, 2, 2)
    feat = schema.features(obs)
    with noise.per_example([1, 2]):
        direct = schema(obs, h, c)

    def refuse(*_: object) -> None:
        raise AssertionError("the feature extractor ran although fused_feat was given")

    schema.features.forward = refuse  # type: ignore[method-assign]
    with noise.per_example([1, 2]):
        fused = schema(obs, h, c, feat)
    torch.testing.assert_close(fused.attention_probs_2d, direct.attention_probs_2d)


def test_diversity_is_zero_for_orthogonal_and_one_for_identical_slots() -> None:
    eye = torch.eye(4)[None, :3]  # three orthogonal slots
    assert diversity(eye).item() == pytest.approx(0.0)
    same = torch.ones(2, 3, 4)
    assert diversity(same).item() == pytest.approx(1.0)
    assert diversity(torch.randn(2, 1, 4)).item() == 0.0


def test_predict_next_moves_attention_along_the_motion_field() -> None:
    R = 7
    attn = torch.zeros(1, R, R)
    attn[0, 3, 2] = 1.0
    still = SCHEMA.predict_next(attn, torch.zeros(1, 2, R, R))
    torch.testing.assert_close(still, attn, atol=1e-5, rtol=0)
    right = torch.zeros(1, 2, R, R)
    right[:, 0] = 2.0 / R  # one pixel in normalised x
    moved = SCHEMA.predict_next(attn, right)
    assert moved.sum().item() == pytest.approx(1.0)
    assert moved[0, 3, 3].item() == pytest.approx(1.0, abs=1e-4)
    assert moved[0, 3, 2].item() == pytest.approx(0.0, abs=1e-4)


def test_dynamics_loss_is_a_non_negative_kl() -> None:
    g = _gen(5)
    p = torch.softmax(torch.randn(4, 49, generator=g), -1).reshape(4, 7, 7)
    q = torch.softmax(torch.randn(4, 49, generator=g) * 5, -1).reshape(4, 7, 7)
    assert SCHEMA.dynamics_loss(p, p).item() == pytest.approx(0.0, abs=1e-6)
    loss = SCHEMA.dynamics_loss(q, p)
    assert loss.shape == () and loss.item() > 0
    onehot = torch.zeros(4, 7, 7)
    onehot[:, 0, 0] = 1
    extreme = SCHEMA.dynamics_loss(torch.zeros(4, 7, 7), onehot)
    assert torch.isfinite(extreme) and extreme >= 0
    # the warped map against the observed next map: a loss with gradients to the motion field
    motion = torch.zeros(4, 2, 7, 7, requires_grad=True)
    SCHEMA.dynamics_loss(SCHEMA.predict_next(p, motion), q).backward()
    assert torch.isfinite(motion.grad).all() and motion.grad.abs().sum() > 0


@pytest.mark.slow
def test_attention_at_the_default_config(cfg: AimeConfig) -> None:
    slots = SlotAttention(cfg)
    result = slots(torch.randn(8, 441, 64))
    assert result.slots.shape == (8, 4, 64) and result.attn.shape == (8, 4, 441)
    schema = AttentionSchema(cfg)
    obs, h, c = _schema_inputs(cfg, 8, 0)
    assert schema.features(obs).shape == (8, 64, 21, 21)
    out = schema.attend(obs, h, c)
    assert out.attention_probs_2d.shape == (8, 21, 21) and out.regularized_coords.shape == (8, 2)
    assert out.motion_field.shape == (8, 2, 21, 21)
    assert rearrange(out.slot_masks, "b k h w -> b k (h w)").shape == (8, 4, 441)
    assert aimespec.hold(schema, "AttentionSchema.forward", cfg, 8, 16, 0) == []
