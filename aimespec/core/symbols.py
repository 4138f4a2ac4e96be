"""The dimension symbols: one table, the single source of the seed's "Standard Dimensions".

Each symbol says what it means, where its value comes from (a config field or an
expression of fields) and how to compute it. `B` and `T` are free per call (their
value at a config is `batch_size` / `sequence_length`); every other symbol is bound.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

from aimespec.core.config import AimeConfig


@dataclass(frozen=True)
class Symbol:
    name: str  # as written in contracts: `B`, `K_slots`, `hidden_dim`
    meaning: str  # the seed's "Meaning" column
    source: str  # the config field or expression it comes from
    value: Callable[[AimeConfig], int]  # its value at a config
    free: bool = False  # free per call (B, T): consistent within one call only
    seed: bool = True  # a row of the seed's Standard Dimensions table (else derived)
    description: str = ""


SYMBOLS: tuple[Symbol, ...] = (
    Symbol("B", "Batch size", "batch_size", lambda c: c.batch_size, free=True,
           description="Number of sequences per batch"),
    Symbol("T", "Sequence length", "sequence_length", lambda c: c.sequence_length, free=True,
           description="Number of frames per sequence"),
    Symbol("C", "Image channels", "image_channels", lambda c: c.image_channels, description="RGB channels"),
    Symbol("H", "Image height", "input_dim", lambda c: c.input_dim, description="Original image height"),
    Symbol("W", "Image width", "input_dim", lambda c: c.input_dim, description="Original image width"),
    Symbol("D", "Latent dim", "latent_dim", lambda c: c.latent_dim,
           description="Dimensionality of latent variable z"),
    Symbol("K", "Max DPGMM components", "max_components", lambda c: c.max_components,
           description="Maximum mixture components"),
    Symbol("K_slots", "Attention slots", "num_semantic_slots", lambda c: c.num_semantic_slots,
           description="Number of attention slots"),
    Symbol("H_att", "Attention resolution", "attention_resolution", lambda c: c.attention_resolution,
           description="Spatial resolution of attention maps"),
    Symbol("W_att", "Attention resolution", "attention_resolution", lambda c: c.attention_resolution,
           description="Spatial resolution of attention maps"),
    Symbol("H_t", "Token height", "input_dim // (downsample_perceiver * (2 if use_3d_conv else 1))",
           lambda c: c.token_grid, description="VQ token grid height (H / downsample)"),
    Symbol("W_t", "Token width", "input_dim // (downsample_perceiver * (2 if use_3d_conv else 1))",
           lambda c: c.token_grid, description="VQ token grid width (W / downsample)"),
    Symbol("A", "Action dim", "action_dim", lambda c: c.action_dim,
           description="Action space dimensionality (6: walker/cheetah; DMC humanoid: 21)"),
    Symbol("hidden_dim", "LSTM hidden", "hidden_dim", lambda c: c.hidden_dim, description="LSTM hidden state size"),
    Symbol("context_dim", "Perceiver context", "num_latent_channels_perceiver", lambda c: c.context_dim,
           description="Context vector size"),
    # --- derived sizes the contracts use -------------------------------------------------
    Symbol("attention_dim", "Slot feature dim", "attention_dim", lambda c: c.attention_dim, seed=False,
           description="Slot feature / attention feature channels"),
    Symbol("N", "Attention positions", "attention_resolution ** 2", lambda c: c.num_positions, seed=False,
           description="H_att * W_att positions seen by slot attention"),
    Symbol("T_enc", "Encoded time length", "ceil(sequence_length / temporal_downsample)",
           lambda c: c.encoded_length(c.sequence_length), seed=False,
           description="Tokenizer time axis after causal temporal downsampling (for T)"),
    Symbol("num_codes", "Codebook size", "num_codebook_perceiver", lambda c: c.num_codes, seed=False,
           description="VQ codebook entries"),
    Symbol("code_dim", "Code dim", "perceiver_code_dim", lambda c: c.code_dim, seed=False,
           description="VQ embedding dimension"),
    Symbol("num_latents", "Perceiver latents", "num_latent_perceiver", lambda c: c.num_latent_perceiver,
           seed=False, description="Learned latent queries"),
    Symbol("num_layers", "LSTM layers", "lstm_layers", lambda c: c.lstm_layers, seed=False,
           description="Stacked LSTM layers"),
)

BY_NAME: dict[str, Symbol] = {s.name: s for s in SYMBOLS}
FREE: frozenset[str] = frozenset(s.name for s in SYMBOLS if s.free)


def bound_values(cfg: AimeConfig) -> dict[str, int]:
    """Every config-bound symbol's value (free symbols excluded); a fresh dict the caller may change."""
    return dict(_bound_values(cfg))


@functools.lru_cache(maxsize=64)
def _bound_values(cfg: AimeConfig) -> dict[str, int]:  # the config is frozen: compute once per config
    return {s.name: s.value(cfg) for s in SYMBOLS if not s.free}


def symbol_values(cfg: AimeConfig, B: int | None = None, T: int | None = None) -> dict[str, int]:
    """Every symbol's value; B and T default to the config's batch_size / sequence_length."""
    B = cfg.batch_size if B is None else B
    T = cfg.sequence_length if T is None else T
    values = {s.name: s.value(cfg) for s in SYMBOLS}
    values.update(B=B, T=T, T_enc=cfg.encoded_length(T))
    return values
