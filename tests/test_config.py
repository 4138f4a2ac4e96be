"""AimeConfig: the seed's keys and defaults, derived sizes, validation naming the field, loading."""

import json

import pytest

from aimespec import AimeConfig, ConfigError

SEED_DEFAULTS = {
    "max_components": 15, "input_dim": 64, "latent_dim": 36, "hidden_dim": 512, "attention_dim": 64,
    "action_dim": 6, "sequence_length": 16, "num_latent_perceiver": 128, "num_latent_channels_perceiver": 256,
    "num_codebook_perceiver": 1024, "perceiver_code_dim": 256, "downsample_perceiver": 4,
    "attention_resolution": 21, "num_semantic_slots": 4, "batch_size": 8, "learning_rate": 0.0002,
    "grad_clip": 5.0, "warmup_epochs": 25,
}


def test_seed_keys_and_defaults():
    d = AimeConfig().to_dict()
    assert {k: d[k] for k in SEED_DEFAULTS} == SEED_DEFAULTS


def test_derived_sizes_at_default():
    c = AimeConfig()
    assert (c.context_dim, c.token_grid, c.encoded_length(16), c.num_positions) == (256, 8, 2, 441)
    assert (c.prior_input_dim, c.lstm_input_dim, c.component_params_dim) == (768, 298, 1080)
    assert [c.encoded_length(t) for t in (1, 7, 8, 9, 17)] == [1, 1, 1, 2, 3]


@pytest.mark.parametrize(("changes", "message"), [
    ({"latent_dim": -1}, "latent_dim: must be a positive integer, got -1"),
    ({"hidden_dim": 0}, "hidden_dim: must be a positive integer, got 0"),
    ({"input_dim": 60}, "input_dim: 60 is not divisible by the tokenizer's spatial stride 8"),
    ({"attention_resolution": 65}, "attention_resolution: 65 exceeds input_dim 64"),
    ({"downsample_perceiver": 3}, "downsample_perceiver: the tokenizer's spatial stride 6 must be a power of two"),
    ({"rgb_aggregation": "max"}, "rgb_aggregation: must be one of norm_weighted, mean, got 'max'"),
    ({"max_components": 1}, "max_components: must be at least 2"),
    ({"learning_rate": float("nan")}, "learning_rate: must be a finite non-negative number, got nan"),
    ({"vae_channels": ()}, "vae_channels: must be a non-empty list of integers"),
])
def test_invalid_values_raise_value_error_naming_the_field(changes, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        AimeConfig(**changes)


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match=r"^latnet_dim: is not a config key"):
        AimeConfig.from_mapping({"latnet_dim": 3})
    with pytest.raises(ValueError, match=r"^latnet_dim: is not a config key; see `aimespec spec` for the keys$"):
        AimeConfig(latnet_dim=3)


@pytest.mark.parametrize("res", range(1, 65))
def test_every_attention_resolution_is_valid(res):
    assert AimeConfig(attention_resolution=res).num_positions == res * res


def test_set_overrides_are_parsed_by_field_type():
    c = AimeConfig.load(None, ["latent_dim=16", "learning_rate=1e-3", "use_3d_conv=false",
                               "vae_channels=32,64,128,256", "rgb_aggregation=mean"])
    assert (c.latent_dim, c.learning_rate, c.use_3d_conv, c.vae_channels, c.rgb_aggregation) == (
        16, 1e-3, False, (32, 64, 128, 256), "mean")
    assert c.token_grid == 16
    with pytest.raises(ConfigError, match=r"^latent_dim: must be an integer, got 'x'$"):
        AimeConfig.load(None, ["latent_dim=x"])
    with pytest.raises(ConfigError, match=r"^latent_dim: is not KEY=VALUE"):
        AimeConfig.load(None, ["latent_dim"])


def test_toml_and_json_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('latent_dim = 16\nvae_channels = [8, 16]\nlearning_rate = 1\n')
    c = AimeConfig.from_file(toml)
    assert (c.latent_dim, c.vae_channels, c.learning_rate) == (16, (8, 16), 1.0)
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"hidden_dim": 128}))
    assert AimeConfig.load(js, ["hidden_dim=64"]).hidden_dim == 64  # --set wins over the file
    bad = tmp_path / "bad.toml"
    bad.write_text("latent_dim = ")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        AimeConfig.from_file(bad)
    with pytest.raises(ConfigError, match="is not a readable file"):
        AimeConfig.from_file(tmp_path / "missing.toml")


def test_zero_warmup_is_valid_but_not_negative():
    assert AimeConfig(warmup_epochs=0).warmup_epochs == 0
    with pytest.raises(ValueError, match=r"^warmup_epochs: must be a non-negative integer, got -1$"):
        AimeConfig(warmup_epochs=-1)


def test_replace_validates():
    assert AimeConfig().replace(action_dim=21).action_dim == 21
    with pytest.raises(ConfigError):
        AimeConfig().replace(action_dim=0)
