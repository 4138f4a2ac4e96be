"""AimeWorldModel.forward_sequence: every output's shape for any (B, T), values, causality."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aimespec import AimeConfig, ContractViolation, checking
from reference_model import noise
from reference_model.synthetic import moving_shapes
from reference_model.world import AimeWorldModel, build_model

SMALL = AimeConfig.small()


def expected_shapes(cfg: AimeConfig, B: int, T: int) -> dict[str, tuple[int, ...]]:
    """Every key of forward_sequence with its concrete shape at (B, T)."""
    C, H, D, K = cfg.image_channels, cfg.input_dim, cfg.latent_dim, cfg.max_components
    att, slots, grid = cfg.attention_resolution, cfg.num_semantic_slots, cfg.token_grid
    return {
        "latents": (B, T, D),
        "reconstructions": (B, T, C, H, H),
        "attention_maps": (B, T, att, att),
        "context": (B, T, cfg.context_dim),
        "tokens": (B, T, grid, grid),
        "hidden_states": (B, T, cfg.hidden_dim),
        "mixture_weights": (B, T, K),
        "slot_features": (B, T, slots, cfg.attention_dim),
        "mu": (B, T, D),
        "logvar": (B, T, D),
        "prior_means": (B, T, K, D),
        "prior_log_vars": (B, T, K, D),
        "kumar_a": (B, T, K - 1),
        "kumar_b": (B, T, K - 1),
        "alpha": (B, T, cfg.prior_alpha_samples),
        "gamma_shape": (B, T),
        "gamma_rate": (B, T),
        "slot_masks": (B, T, slots, att, att),
        "motion_fields": (B, T, 2, att, att),
        "attention_coords": (B, T, 2),
        "vq_loss": (),
        "perplexity": (),
        "tokenizer_reconstructions": (B, T, C, H, H),
        "diversity_loss": (),
    }


def assert_outputs(out: dict, cfg: AimeConfig, B: int, T: int) -> None:
    for key, shape in expected_shapes(cfg, B, T).items():
        assert key in out, f"forward_sequence is missing {key}"
        assert tuple(out[key].shape) == shape, f"{key}: expected {shape}, got {tuple(out[key].shape)}"
    assert out["tokens"].dtype == torch.long
    assert 0 <= int(out["tokens"].min()) and int(out["tokens"].max()) < cfg.num_codes
    sums = out["attention_maps"].sum(dim=(-2, -1))
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["mixture_weights"].sum(-1), torch.ones(B, T), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["slot_masks"].sum(2), torch.ones(B, T, *out["slot_masks"].shape[-2:]),
                               atol=1e-4, rtol=0)
    assert out["reconstructions"].min() >= 0 and out["reconstructions"].max() <= 1
    assert out["attention_coords"].abs().max() <= 1
    assert (out["kumar_a"] > 0).all() and (out["kumar_b"] > 0).all() and (out["alpha"] > 0).all()
    for key, value in out.items():
        assert torch.isfinite(value).all(), f"{key} holds NaN or Inf"


@pytest.fixture(scope="module")
def small_model() -> AimeWorldModel:
    torch.manual_seed(0)
    return build_model(SMALL)


def inputs(cfg: AimeConfig, B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    obs, act = moving_shapes(B, T, cfg.input_dim, cfg.action_dim, seed)
    return obs, act


@settings(max_examples=8)
@given(B=st.integers(1, 8), T=st.integers(1, 24))
def test_forward_sequence_shapes_any_batch_and_length(small_model, B, T):
    obs, act = inputs(SMALL, B, T, seed=B * 100 + T)
    with torch.no_grad():
        out = small_model.forward_sequence(obs, act)  # full checking: every component call is held too
    assert_outputs(out, SMALL, B, T)


def test_build_model_and_config(small_model):
    assert isinstance(small_model, AimeWorldModel)
    assert small_model.cfg is SMALL
    names = {name for name, _ in small_model.named_children()}
    assert {"perceiver", "encoder", "prior", "lstm", "attention_schema", "decoder", "discriminator"} <= names
    disc = {id(p) for p in small_model.discriminator.parameters()}
    gen = small_model.generator_parameters()
    assert gen and not any(id(p) in disc for p in gen)
    assert len(gen) + len(disc) == len(list(small_model.parameters()))


def test_wrong_action_width_is_a_contract_violation(small_model):
    obs, act = inputs(SMALL, 2, 3)
    with pytest.raises(ContractViolation, match=r"actions expected \[B, T, A\] = \[2, 3, 6\], got \[2, 3, 5\]"):
        small_model.forward_sequence(obs, act[..., :5])


def test_observations_outside_unit_range_are_refused_in_full_mode(small_model):
    obs, act = inputs(SMALL, 2, 3)
    with pytest.raises(ContractViolation, match="observations must lie in"):
        small_model.forward_sequence(obs * 2 + 0.5, act)
    with checking("shapes"), torch.no_grad():
        assert small_model.forward_sequence(obs * 2 + 0.5, act)["latents"].shape == (2, 3, SMALL.latent_dim)


def test_gradients_reach_every_generator_parameter(small_model):
    from reference_model.losses import TASKS, compute_losses

    obs, act = inputs(SMALL, 2, 5, seed=3)
    out = small_model.forward_sequence(obs, act)
    losses = compute_losses(out, obs, small_model.discriminator)
    total = sum(losses.tasks[name] for name in TASKS)
    params = small_model.generator_parameters()
    grads = torch.autograd.grad(total, params, allow_unused=True)
    names = {id(p): n for n, p in small_model.named_parameters()}
    dead = [names[id(p)] for p, g in zip(params, grads, strict=True) if g is None]
    assert not dead, f"parameters no task loss reaches: {dead}"


@settings(max_examples=4)
@given(t=st.integers(0, 6), seed=st.integers(0, 1000))
def test_causality_future_frames_do_not_change_the_past(small_model, t, seed):
    """With the same per-example noise, frames after t change nothing up to t."""
    T = 8
    obs, act = inputs(SMALL, 2, T, seed=seed)
    changed_obs, changed_act = obs.clone(), act.clone()
    g = torch.Generator().manual_seed(seed)
    changed_obs[:, t + 1:] = torch.rand(changed_obs[:, t + 1:].shape, generator=g)
    changed_act[:, t + 1:] = torch.randn(changed_act[:, t + 1:].shape, generator=g)
    small_model.eval()
    try:
        with torch.no_grad(), noise.per_example([seed, seed + 1]):
            a = small_model.forward_sequence(obs, act)
        with torch.no_grad(), noise.per_example([seed, seed + 1]):
            b = small_model.forward_sequence(changed_obs, changed_act)
    finally:
        small_model.train()
    for key in ("context", "tokens", "latents", "hidden_states", "attention_maps", "reconstructions",
                "mixture_weights"):
        torch.testing.assert_close(a[key][:, : t + 1], b[key][:, : t + 1], msg=f"{key} up to t={t} changed")
    # and the perturbation did reach the future (the test can fail)
    assert not torch.allclose(a["latents"][:, t + 1:], b["latents"][:, t + 1:])


def test_per_example_noise_makes_rows_independent_of_the_batch(small_model):
    obs, act = inputs(SMALL, 4, 3, seed=7)
    with torch.no_grad(), noise.per_example([10, 11, 12, 13]):
        full = small_model.forward_sequence(obs, act)
    with torch.no_grad(), noise.per_example([12, 13]):
        half = small_model.forward_sequence(obs[2:], act[2:])
    for key in ("latents", "hidden_states", "mixture_weights", "alpha", "slot_features", "reconstructions"):
        torch.testing.assert_close(full[key][2:], half[key], atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.slow
def test_forward_sequence_at_the_default_config():
    cfg = AimeConfig()
    torch.manual_seed(0)
    model = AimeWorldModel(cfg)
    obs, act = inputs(cfg, 8, 16)
    with torch.no_grad():
        out = model.forward_sequence(obs, act)
    assert_outputs(out, cfg, 8, 16)
    assert out["latents"].shape == (8, 16, 36)
    assert out["reconstructions"].shape == (8, 16, 3, 64, 64)
    assert out["attention_maps"].shape == (8, 16, 21, 21)


def test_the_record_is_declared_field_by_field_in_the_contract(small_model):
    """`WorldOutputs` (what the reference returns) and `SequenceOutputs` (what the contract holds
    any model to) declare the same fields with the same shapes; the seed's keys still answer."""
    import dataclasses
    import typing

    from contracts.world import SequenceOutputs, WorldOutputs

    declared = typing.get_type_hints(SequenceOutputs)  # NotRequired[...] unwrapped
    record = {f.name: f.type for f in dataclasses.fields(WorldOutputs)}
    assert list(record) == list(declared)
    for name, hint in record.items():
        assert hint.dim_str == declared[name].dim_str and hint.dtypes == declared[name].dtypes, name
    assert SequenceOutputs.__required_keys__ == {"latents", "reconstructions", "attention_maps"}
    obs, act = inputs(SMALL, 2, 3)
    with torch.no_grad():
        out = small_model.forward_sequence(obs, act)
    assert isinstance(out, WorldOutputs)
    assert list(out) == list(record) and len(out) == len(record)
    for key in ("latents", "reconstructions", "attention_maps", "context", "tokens", "hidden_states",
                "mixture_weights", "slot_features"):
        assert out[key] is getattr(out, key)
    with pytest.raises(KeyError):
        out["not_a_field"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.latents = out.mu  # type: ignore[misc]


def _holds_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def test_no_component_keeps_what_a_forward_computed(small_model):
    """Nothing a forward computes is left on a module for a later reader (parameters and
    buffers live in their own registries, outside the module's plain attributes)."""
    obs, act = inputs(SMALL, 2, 3)
    small_model.forward_sequence(obs, act)
    kept = [f"{name}.{key}" for name, m in small_model.named_modules() for key, value in vars(m).items()
            if not key.startswith("_") and _holds_tensor(value)]
    assert kept == []
