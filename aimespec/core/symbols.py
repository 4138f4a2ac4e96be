"""The dimension symbols: one table, the single source of the seed's "Standard Dimensions".

Each symbol says what it means, what *kind* of axis it measures (batch, time, spatial,
feature width, ...), where its value comes from (a config field or an expression of fields),
what it is made of in other symbols (`N = H_att*W_att`, `H_t = H // token_downsample`) and
how to compute it. `B` and `T` are free per call (their value at a config is `batch_size` /
`sequence_length`); every other symbol is bound. The explain algebra reads its atoms from
here too (`kind`, `twin`, `rarity`, `written`): there is no second table. A user's own
sizes join it with `aimespec.symbol(...)` (`aimespec.core.user_symbols`): they bind and check
like the seed's, and `spec PATH` lists them; the explain algebra keeps to the seed's table.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from aimespec.core.config import AimeConfig


class Kind(StrEnum):
    """What an axis of this size measures."""

    BATCH = "batch"  # independent sequences in a batch (B)
    TIME = "time"  # steps along a sequence (T, and T_enc after the tokenizer's temporal stride)
    SPATIAL = "spatial"  # an image or grid axis (H, W, H_att, H_t), or the positions of a flattened grid (N)
    CHANNEL = "channel"  # the colour channels of an image (C)
    WIDTH = "width"  # the width of a feature vector (D, hidden_dim, context_dim, A, attention_dim, code_dim)
    COUNT = "count"  # how many of a part: mixture components, slots, latent queries, layers
    CODEBOOK = "codebook"  # the entries of a discrete code book: index tensors take values below it


@dataclass(frozen=True)
class Symbol:
    name: str  # as written in contracts: `B`, `K_slots`, `hidden_dim`
    meaning: str  # the seed's "Meaning" column
    source: str  # the config field or expression it comes from
    value: Callable[[AimeConfig], int]  # its value at a config
    kind: Kind
    free: bool = False  # free per call (B, T): consistent within one call only
    seed: bool = True  # a row of the seed's Standard Dimensions table (else derived)
    description: str = ""
    made_of: str = ""  # what it is in other symbols and config properties ("" for a config field itself)
    twin: str | None = None  # the symbol it equals by construction along the other axis (W of H)
    rarity: float = 0.0  # how unlikely a size in a message is this symbol (0: the seed's core symbols)
    written: int = 0  # its place in a product as written: batch, time, counts, widths, then space
    origin: str = ""  # the module that declared it ("" for aimespec's own table)
    fields: tuple[str, ...] = ()  # the config fields it reads (a user's symbol: checked before use)

    def available(self, cfg: AimeConfig) -> bool:
        """Whether `cfg` has every field this symbol reads (aimespec's own symbols: always)."""
        return all(hasattr(cfg, f) for f in self.fields)

    @property
    def factors(self) -> tuple[str, ...]:
        """The symbols whose product it is (`N` -> H_att, W_att); just itself when it is not a product."""
        parts = [p.strip() for p in self.made_of.split("*")] if self.made_of else []
        if len(parts) > 1 and all(p in _NAMES for p in parts):
              return tuple(parts)
        return (self.name,)


_TOKEN = "input_dim // (downsample_perceiver * (2 if use_3d_conv else 1))"

SYMBOLS: tuple[Symbol, ...] = (
    Symbol("B", "Batch size", "batch_size", lambda c: c.batch_size, Kind.BATCH, written=0, free=True,
           description="Number of sequences per batch"),
    Symbol("T", "Sequence length", "sequence_length", lambda c: c.sequence_length, Kind.TIME, written=1, free=True,
           description="Number of frames per sequence"),
    Symbol("C", "Image channels", "image_channels", lambda c: c.image_channels, Kind.CHANNEL, written=8, rarity=0.2,
           description="RGB channels"),
    Symbol("H", "Image height", "input_dim", lambda c: c.input_dim, Kind.SPATIAL, written=15,
           description="Original image height"),
    Symbol("W", "Image width", "input_dim", lambda c: c.input_dim, Kind.SPATIAL, written=16, twin="H", rarity=0.05,
           description="Original image width"),
    Symbol("D", "Latent dim", "latent_dim", lambda c: c.latent_dim, Kind.WIDTH, written=11,
           description="Dimensionality of latent variable z"),
    Symbol("K", "Max DPGMM components", "max_components", lambda c: c.max_components, Kind.COUNT, written=3,
           description="Maximum mixture components"),
    Symbol("K_slots", "Attention slots", "num_semantic_slots", lambda c: c.num_semantic_slots, Kind.COUNT, written=4,
           rarity=0.1, description="Number of attention slots"),
    Symbol("H_att", "Attention resolution", "attention_resolution", lambda c: c.attention_resolution,
           Kind.SPATIAL, written=17, description="Spatial resolution of attention maps"),
    Symbol("W_att", "Attention resolution", "attention_resolution", lambda c: c.attention_resolution,
           Kind.SPATIAL, written=18, twin="H_att", rarity=0.05, description="Spatial resolution of attention maps"),
    Symbol("H_t", "Token height", _TOKEN, lambda c: c.token_grid, Kind.SPATIAL, written=20,
           made_of="H // token_downsample", description="VQ token grid height (H / downsample)"),
    Symbol("W_t", "Token width", _TOKEN, lambda c: c.token_grid, Kind.SPATIAL, written=21, twin="H_t",
           made_of="W // token_downsample", rarity=0.05, description="VQ token grid width (W / downsample)"),
    Symbol("A", "Action dim", "action_dim", lambda c: c.action_dim, Kind.WIDTH, written=13,
           description="Action space dimensionality (6: walker/cheetah; DMC humanoid: 21)"),
    Symbol("hidden_dim", "LSTM hidden", "hidden_dim", lambda c: c.hidden_dim, Kind.WIDTH, written=10,
           description="LSTM hidden state size"),
    Symbol("context_dim", "Perceiver context", "num_latent_channels_perceiver", lambda c: c.context_dim,
           Kind.WIDTH, written=12, description="Context vector size"),
    # --- derived sizes the contracts use -------------------------------------------------
    Symbol("attention_dim", "Slot feature dim", "attention_dim", lambda c: c.attention_dim, Kind.WIDTH, written=9,
           seed=False, rarity=0.1, description="Slot feature / attention feature channels"),
    Symbol("N", "Attention positions", "attention_resolution ** 2", lambda c: c.num_positions, Kind.SPATIAL, written=19,
           seed=False, made_of="H_att*W_att", rarity=0.1, description="H_att * W_att positions seen by slot attention"),
    Symbol("T_enc", "Encoded time length", "ceil(sequence_length / temporal_downsample)",
           lambda c: c.encoded_length(c.sequence_length), Kind.TIME, written=2, seed=False,
           made_of="(T + temporal_downsample - 1) // temporal_downsample", rarity=0.1,
           description="Tokenizer time axis after causal temporal downsampling (for T)"),
    Symbol("num_codes", "Codebook size", "num_codebook_perceiver", lambda c: c.num_codes, Kind.CODEBOOK, written=6,
           seed=False, rarity=0.3, description="VQ codebook entries"),
    Symbol("code_dim", "Code dim", "perceiver_code_dim", lambda c: c.code_dim, Kind.WIDTH, written=14, seed=False,
           rarity=0.3, description="VQ embedding dimension"),
    Symbol("num_latents", "Perceiver latents", "num_latent_perceiver", lambda c: c.num_latent_perceiver,
           Kind.COUNT, written=5, seed=False, rarity=0.3, description="Learned latent queries"),
    Symbol("num_layers", "LSTM layers", "lstm_layers", lambda c: c.lstm_layers, Kind.COUNT, written=7, seed=False,
           rarity=0.3, description="Stacked LSTM layers"),
)

_NAMES: frozenset[str] = frozenset(s.name for s in SYMBOLS)
FREE: frozenset[str] = frozenset(s.name for s in SYMBOLS if s.free)


@functools.cache
def symbol(name: str) -> Symbol:
    """The symbol called `name` (KeyError when there is none)."""
    for s in SYMBOLS:
        if s.name == name:
              return s
    raise KeyError(name)


def kind_of(name: str) -> Kind | None:
    """The kind of the symbol called `name`; None for a name that is no symbol."""
    return symbol(name).kind if name in _NAMES else None


def in_written_order() -> tuple[Symbol, ...]:
    """Every symbol in the order products are written (`B*T*K*hidden_dim*H_t*W_t`)."""
    return tuple(sorted(SYMBOLS, key=lambda s: s.written))


# --- users' own symbols -------------------------------------------------------------------
_USER: dict[str, Symbol] = {}  # symbols declared by users' modules, by name (see user_symbols.py)
_DECLARERS: dict[str, set[str]] = {}  # symbol name -> the modules that declared it (the same way)
_generation = [0]  # bumped whenever _USER changes: cached values are per (config, generation)


def all_symbols() -> tuple[Symbol, ...]:
    """The seed's table, its derived sizes, then every symbol users' modules declared."""
    return SYMBOLS + tuple(_USER.values())


def lookup(name: str) -> Symbol | None:
    """The seed's or a user's symbol called `name`, or None."""
    return symbol(name) if name in _NAMES else _USER.get(name)


def known_names() -> frozenset[str]:
    return _NAMES | frozenset(_USER)


def add_user_symbol(sym: Symbol, module: str) -> None:
    """Register `sym` (a declaration again the same way keeps the first) as declared by `module`."""
    if sym.name not in _USER:
        _USER[sym.name] = sym
        _generation[0] += 1
    _DECLARERS.setdefault(sym.name, set()).add(module)


def user_symbol(name: str) -> Symbol | None:
    return _USER.get(name)


def declared_by(module: str) -> list[Symbol]:
    """The symbols `module` declared, in declaration order."""
    return [s for name, s in _USER.items() if module in _DECLARERS.get(name, ())]


def forget_user_symbols(origin_prefix: str) -> None:
    """Forget the declarations of modules whose name starts with `origin_prefix` (a symbol goes with its last)."""
    for name in list(_USER):
        modules = _DECLARERS.get(name, set())
        modules.difference_update({m for m in modules if m.startswith(origin_prefix)})
        if not modules:
            del _USER[name]
            _DECLARERS.pop(name, None)
            _generation[0] += 1


def bound_values(cfg: AimeConfig) -> dict[str, int]:
    """Every config-bound symbol's value (free symbols excluded); a fresh dict the caller may change.

    A user's symbol is included when the config has the fields it reads.
    """
    return dict(_bound_values(cfg, _generation[0]))


def symbol_generation() -> int:
    """A number that changes whenever a user's symbol is declared or forgotten (for caches)."""
    return _generation[0]


_CONFIG_VALUES: dict[tuple[int, int], tuple[AimeConfig, frozenset[str], int, dict[str, int]]] = {}
_CONFIG_VALUES_MAX = 256  # distinct (config, free set) pairs kept; a test drawing many configs starts over


def config_values(cfg: AimeConfig, free: frozenset[str]) -> dict[str, int]:
    """The config-bound symbols' values less the `free` ones: shared, never to be changed (copy it).

    Once per (config, free set, symbol generation): by identity, not by hashing the config's
    fields at every call (a config is frozen; the generation moves when a user's symbol comes
    or goes, and the entry is computed again)."""
    key, generation = (id(cfg), id(free)), _generation[0]  # read once: see below
    hit = _CONFIG_VALUES.get(key)
    if hit is None or hit[0] is not cfg or hit[1] is not free or hit[2] != generation:
        values = dict(_bound_values(cfg, generation))
        for name in free:
            values.pop(name, None)
        if len(_CONFIG_VALUES) >= _CONFIG_VALUES_MAX:
            _CONFIG_VALUES.clear()
        # under the generation read before computing: a symbol declared meanwhile (another thread)
        # makes the next call compute again, instead of these values passing for the newer table's
        hit = _CONFIG_VALUES[key] = (cfg, free, generation, values)
    return hit[3]


@functools.lru_cache(maxsize=64)
def _bound_values(cfg: AimeConfig, generation: int) -> dict[str, int]:  # the config is frozen: once per config
    return {s.name: s.value(cfg) for s in all_symbols() if not s.free and s.available(cfg)}


def symbol_values(cfg: AimeConfig, B: int | None = None, T: int | None = None) -> dict[str, int]:
    """Every symbol's value; B and T default to the config's batch_size / sequence_length."""
    B = cfg.batch_size if B is None else B
    T = cfg.sequence_length if T is None else T
    values = {s.name: s.value(cfg) for s in all_symbols() if s.available(cfg)}
    values.update(B=B, T=T, T_enc=cfg.encoded_length(T))
    return values
