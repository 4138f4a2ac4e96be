"""`AimeConfig`: the seed's config keys and defaults, the fields it implies, derived sizes.

Every size in the project is a field here or one expression of fields (a property);
`aimespec.core.symbols` turns them into the dimension symbols of the seed's tables.
"""

import dataclasses
import functools
import json
import math
import sys
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimespec.core.errors import ConfigError, UnknownConfigKey
from aimespec.core.limits import MAX_SIZE

RGB_AGGREGATIONS = ("norm_weighted", "mean")
MAX_STAGES = 16  # stages of a channel list (2**16 pixels of input already)
TOO_LARGE = "must be at most {most} (a size beyond any model that fits in memory), got {value}"
UNKNOWN_KEY = "is not a config key; see `aimespec spec` for the keys"


@dataclass(frozen=True)
class AimeConfig:
    """The AIME world model's configuration (seed: `VRNN/dpgmm_stickbreaking_prior_vrnn.py:698-732`).

    A user's model adds its own fields in a subclass (a frozen dataclass, made one if the
    `@dataclass(frozen=True)` is left out); `--set`, `--config` and `spec` then accept them:

        class RewardConfig(AimeConfig):
            n_bins: int = 51

    Integer fields are sizes (>= 1) unless named in `zero_ok`; tuple fields take any sequence.
    """

    zero_ok = frozenset({"warmup_epochs"})  # counts that may be 0 (no annotation: not a field)

    def __reduce__(self) -> Any:
        """A user's config class crosses processes as its fields: the parent never imports the model file."""
        cls = type(self)
        if cls is AimeConfig:
            return object.__reduce__(self)
        base = {f.name for f in dataclasses.fields(AimeConfig)}
        extra = tuple((f.name, _hints(cls)[f.name], f.default) for f in dataclasses.fields(self) if f.name not in base)
        return _restore, (cls.__module__, cls.__qualname__, extra, cls.zero_ok, self.to_dict())

    def __new__(cls, *args: Any, **kwargs: Any) -> "AimeConfig":
        names = {f.name for f in config_fields(cls)}
        for key in kwargs:  # an unknown keyword is a ValueError naming it, like every config error
            if key not in names:
                raise UnknownConfigKey(key, UNKNOWN_KEY)
        return super().__new__(cls)

    # --- the seed's keys, spelled and defaulted as in the seed -------------------------
    max_components: int = 15  # K: maximum DPGMM mixture components
    input_dim: int = 64  # H = W: square image side
    latent_dim: int = 36  # D: latent z
    hidden_dim: int = 512  # LSTM hidden size
    attention_dim: int = 64  # slot feature dimension (channels of attention features)
    action_dim: int = 6  # A (walker/cheetah: 6, humanoid: 21)
    sequence_length: int = 16  # T
    num_latent_perceiver: int = 128  # Perceiver IO latent queries
    num_latent_channels_perceiver: int = 256  # context_dim
    num_codebook_perceiver: int = 1024  # VQ codebook size (num_codes)
    perceiver_code_dim: int = 256  # VQ embedding dimension (code_dim)
    downsample_perceiver: int = 4  # spatial downsample factor of the 2-D stem
    attention_resolution: int = 21  # H_att = W_att
    num_semantic_slots: int = 4  # K_slots
    batch_size: int = 8  # B
    learning_rate: float = 0.0002
    grad_clip: float = 5.0
    warmup_epochs: int = 25

    # --- fields the seed implies ----------------------------------------------------------
    image_channels: int = 3  # C
    use_3d_conv: bool = True  # the 3-D tokenizer halves space once more: H_t = H // (4 * 2)
    temporal_downsample: int = 8  # causal temporal stride of the tokenizer: T' = ceil(T / 8)
    slot_iterations: int = 3  # slot attention refinement iterations
    slot_mlp_hidden: int = 128  # hidden width of the slot update MLP
    lstm_layers: int = 1  # num_layers of the LSTM
    prior_alpha_samples: int = 10  # n_samples: concentration draws per step
    vq_beta: float = 0.25  # commitment weight

    # --- architecture widths and depths (document's values by default) ------------------
    tokenizer_width: int = 64  # channels of the tokenizer's first stage (doubled per stage)
    perceiver_blocks: int = 1  # latent self-attention blocks after the cross-attention
    perceiver_heads: int = 4  # attention heads in the perceiver
    vae_channels: tuple[int, ...] = (64, 128, 256, 512)  # encoder stages (decoder mirrors)
    prior_hidden: int = 256  # hidden width of the stick / component / concentration nets
    disc_channels: tuple[int, ...] = (64, 128, 256)  # discriminator stages

    # --- RGB gradient balancing -------------------------------------------------------------
    rgb_aggregation: str = "norm_weighted"  # "norm_weighted" (document) or "mean" (public code)
    rgb_mu: float = 0.9  # consensus momentum
    rgb_lambda: float = 1.0  # proximity weight
    rgb_steps: int = 3  # inner steps of the rotation solve
    rgb_lr: float = 0.2  # inner step size

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = hints[f.name]
            if kind == tuple[int, ...] and isinstance(value, Sequence) and not isinstance(value, (str, tuple)):
                value = tuple(value)  # [8, 16] from Python, as from TOML
                object.__setattr__(self, f.name, value)
            if kind is bool:
                if not isinstance(value, bool):
                    raise ConfigError(f.name, f"must be true or false, got {value!r}")
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f.name, f"must be an integer, got {value!r}")
                if value < (0 if f.name in self.zero_ok else 1):
                    expected = "a non-negative" if f.name in self.zero_ok else "a positive"
                    raise ConfigError(f.name, f"must be {expected} integer, got {value}")
                if value > MAX_SIZE:
                    raise ConfigError(f.name, TOO_LARGE.format(most=MAX_SIZE, value=_short(value)))
            elif kind is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f.name, f"must be a number, got {value!r}")
                if not math.isfinite(value) or value < 0:
                    raise ConfigError(f.name, f"must be a finite non-negative number, got {value}")
            elif kind == tuple[int, ...]:
                if not isinstance(value, tuple) or not value:
                    raise ConfigError(f.name, f"must be a non-empty list of integers, got {value!r}")
                if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
                    raise ConfigError(f.name, f"must hold positive integers, got {list(value)}")
                if len(value) > MAX_STAGES or max(value) > MAX_SIZE:
                    raise ConfigError(f.name, f"must hold at most {MAX_STAGES} integers of at most {MAX_SIZE}, "
                                              f"got {_short(list(value))}")
        self._check_relations()

    def _check_relations(self) -> None:
        if self.max_components < 2:
            raise ConfigError("max_components", "must be at least 2 (K-1 sticks are broken)")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate", f"must be positive, got {self.learning_rate}")
        if self.grad_clip <= 0:
            raise ConfigError("grad_clip", f"must be positive, got {self.grad_clip}")
        if not 0 <= self.rgb_mu < 1:
            raise ConfigError("rgb_mu", f"must lie in [0, 1), got {self.rgb_mu}")
        if self.rgb_aggregation not in RGB_AGGREGATIONS:
            raise ConfigError(
                "rgb_aggregation", f"must be one of {', '.join(RGB_AGGREGATIONS)}, got {self.rgb_aggregation!r}"
            )
        down = self.token_downsample
        if down & (down - 1):
            raise ConfigError(
                "downsample_perceiver", f"the tokenizer's spatial stride {down} must be a power of two"
            )
        if self.input_dim % down:
            raise ConfigError(
                "input_dim",
                f"{self.input_dim} is not divisible by the tokenizer's spatial stride {down} "
                f"(downsample_perceiver={self.downsample_perceiver}, use_3d_conv={self.use_3d_conv})",
            )
        vae_down = 2 ** len(self.vae_channels)
        if self.input_dim % vae_down:
            raise ConfigError(
                "input_dim",
                f"{self.input_dim} is not divisible by 2**len(vae_channels) = {vae_down}: "
                "the VAE encoder cannot reach its bottleneck",
            )
        if self.attention_resolution > self.input_dim:
            raise ConfigError(
                "attention_resolution",
                f"{self.attention_resolution} exceeds input_dim {self.input_dim}: it must lie in [1, input_dim]",
            )
        if self.num_latent_channels_perceiver % self.perceiver_heads:
            raise ConfigError(
                "perceiver_heads",
                f"{self.perceiver_heads} does not divide num_latent_channels_perceiver "
                f"{self.num_latent_channels_perceiver}",
            )

    # --- derived sizes: one expression each -----------------------------------------------
    @property
    def context_dim(self) -> int:
        return self.num_latent_channels_perceiver

    @property
    def num_codes(self) -> int:
        return self.num_codebook_perceiver

    @property
    def code_dim(self) -> int:
        return self.perceiver_code_dim

    @property
    def token_downsample(self) -> int:
        """The tokenizer's total spatial stride: `downsample_perceiver`, doubled by the 3-D stage."""
        return self.downsample_perceiver * (2 if self.use_3d_conv else 1)

    @property
    def token_grid(self) -> int:
        """H_t = W_t = H // token_downsample (64 // 8 = 8 at the default)."""
        return self.input_dim // self.token_downsample

    def encoded_length(self, T: int) -> int:
        """T_enc: the tokenizer's time length for T frames, ceil(T / temporal_downsample)."""
        return -(-T // self.temporal_downsample)

    @property
    def num_positions(self) -> int:
        """N = H_att * W_att: positions seen by slot attention."""
        return self.attention_resolution**2

    @property
    def prior_input_dim(self) -> int:
        """The prior's input width: hidden_dim + context_dim."""
        return self.hidden_dim + self.context_dim

    @property
    def lstm_input_dim(self) -> int:
        """The LSTM's input width: D + context_dim + A."""
        return self.latent_dim + self.context_dim + self.action_dim

    @property
    def component_params_dim(self) -> int:
        """Width of the component network's output: 2 * K * D."""
        return 2 * self.max_components * self.latent_dim

    @classmethod
    def small(cls, **changes: Any) -> "AimeConfig":
        """A small model with the same structure (a fraction of a second a step on a CPU)."""
        values: dict[str, Any] = dict(
            max_components=5, input_dim=32, latent_dim=8, hidden_dim=32, attention_dim=16,
            sequence_length=8, num_latent_perceiver=8, num_latent_channels_perceiver=32,
            num_codebook_perceiver=32, perceiver_code_dim=16, attention_resolution=7,
            num_semantic_slots=3, batch_size=4, temporal_downsample=4, slot_mlp_hidden=16,
            prior_alpha_samples=4, tokenizer_width=8, perceiver_heads=2, vae_channels=(8, 16),
            prior_hidden=32, disc_channels=(8, 16),
        )
        values.update(changes)
        return cls.from_mapping(values)

    # --- loading ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> "AimeConfig":
        return self.from_mapping({**self.to_dict(), **changes})

    @classmethod
    def from_mapping(cls, values: dict[str, Any], *, source: str = "config") -> "AimeConfig":
        """Build from a mapping of field names to values (strings are parsed by field type)."""
        known = {f.name for f in config_fields(cls)}
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in known:
                raise ConfigError(key, f"is not a config key ({source}); see `aimespec spec` for the keys")
            kwargs[key] = _coerce(key, hints[key], raw)
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> "AimeConfig":
        return cls.from_mapping(load_config_file(path), source=str(path))

    @classmethod
    def load(
        cls, config_file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
    ) -> "AimeConfig":
        """The CLI's loading rule: defaults, then `--config FILE`, then each `--set KEY=VALUE`."""
        values: dict[str, Any] = dict(load_config_file(config_file)) if config_file else {}
        values.update(parse_overrides(overrides))
        return cls.from_mapping(values, source=str(config_file) if config_file else "--set")


def _restore(module: str, qualname: str, extra: tuple, zero_ok: frozenset[str], values: dict[str, Any]) -> AimeConfig:
    """Unpickle a config: its own class when that module is loaded here, else a stand-in with the same fields."""
    cls = getattr(sys.modules.get(module), qualname, None)
    if not (isinstance(cls, type) and issubclass(cls, AimeConfig)):
        cls = _stand_in(module, qualname, extra, zero_ok)
    obj = object.__new__(cls)
    hints = _hints(cls)
    for name, value in values.items():  # the worker validated them; lists back to tuples
        object.__setattr__(obj, name, tuple(value) if hints.get(name) == tuple[int, ...] else value)
    return obj


@functools.cache
def _stand_in(module: str, qualname: str, extra: tuple, zero_ok: frozenset[str]) -> type[AimeConfig]:
    fields = [(name, kind, dataclasses.field(default=default)) for name, kind, default in extra]
    cls = dataclasses.make_dataclass(qualname.rpartition(".")[2], fields, bases=(AimeConfig,), frozen=True,
                                     namespace={"zero_ok": zero_ok})
    cls.__module__ = module
    return cls


def config_fields(cls: type[AimeConfig]) -> tuple[dataclasses.Field, ...]:
    """The fields of a config class; a subclass written without `@dataclass(frozen=True)` becomes one here."""
    if "__dataclass_fields__" not in cls.__dict__ and "__annotations__" in cls.__dict__:
        dataclass(frozen=True)(cls)  # its own annotations are fields (the decorator is optional)
    return dataclasses.fields(cls)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclass(frozen=True)
class ConfigRequest:
    """A config not built yet: `--config FILE`, `--set` items and values fixed before (`--env`).

    A model file may define its own config class, known only once the file is loaded: the
    command builds the request with that class (`build(cls)`), so that `--set n_bins=51`
    reaches a user's own field.
    """

    file: str | Path | None = None
    overrides: tuple[str, ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()  # e.g. (("action_dim", 21),) from --env

    def build(self, cls: "type[AimeConfig]" = AimeConfig, *, lenient: bool = False) -> "AimeConfig":
        """The config of class `cls`; `lenient` leaves out keys `cls` lacks (checking the rest early)."""
        known = {f.name for f in config_fields(cls)}
        values: dict[str, Any] = {}
        for label, items in ((str(self.file), load_config_file(self.file) if self.file else {}),
                             ("--set", parse_overrides(self.overrides))):
            for key in list(items):
                if key not in known and lenient:
                    del items[key]
                elif key not in known:
                    raise ConfigError(key, f"is not a config key ({label}); see `aimespec spec` for the keys")
            values.update(items)
            if label != "--set":
                values.update(self.fixed)
        return cls.from_mapping(values, source="--set" if self.overrides else str(self.file or "config"))


def as_config(cfg: "AimeConfig | ConfigRequest", cls: "type[AimeConfig]", *, lenient: bool = False) -> "AimeConfig":
    """The config a model file is checked at: a request built with its class, a base config lifted to it.

    `lenient` leaves out the keys `cls` lacks (the parent process's view of a user's config).
    """
    if isinstance(cfg, ConfigRequest):
        return cfg.build(cls, lenient=lenient)
    if isinstance(cfg, cls) or not issubclass(cls, type(cfg)):
        return cfg
    return cls.from_mapping(cfg.to_dict())  # AimeConfig() given for a file with its own config: defaults added


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`["latent_dim=16", ...]` -> `{"latent_dim": "16"}`; a malformed item names itself."""
    out: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "is not KEY=VALUE (write e.g. --set latent_dim=16)")
        out[key.strip()] = value.strip()
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "is not a readable file (give a .toml or .json config)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"is not UTF-8 text (byte {exc.start} is not): give a .toml or .json config") \
            from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), f"is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must hold a table of config keys")
    return data


def _coerce(key: str, kind: Any, raw: Any) -> Any:
    if not isinstance(raw, str):
        if kind == tuple[int, ...] and isinstance(raw, Sequence):
            return tuple(raw)
        if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        return raw
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind == tuple[int, ...]:
            parts = text.strip("[]()").replace(",", " ").split()
            return tuple(int(p) for p in parts)
    except ValueError:
        expected = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "integers like 64,128")
        raise ConfigError(key, f"must be {expected}, got {raw!r}") from None
    return text


def _short(value: Any, most: int = 60) -> str:
    """A value as shown in a message, cut to `most` characters (a 3000-digit number is not a sentence)."""
    big = isinstance(value, int) and value.bit_length() > 10_000  # past Python's int-to-string limit
    text = f"a {value.bit_length()}-bit number" if big else str(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


__all__ = ["AimeConfig", "ConfigRequest", "as_config", "config_fields", "load_config_file", "parse_overrides"]
