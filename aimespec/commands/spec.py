"""`aimespec spec`: the symbol table and key tensor shapes at a config, generated from the contracts.

`aimespec spec PATH` adds a model file's own symbols and contracts, in tables of their own
beside the seed's (rows carry `origin`: "aimespec" or the file), so a user's docs never go stale.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table

from aimespec.commands.coverage import check_symbol_fields
from aimespec.core.config import AimeConfig, ConfigRequest, as_config
from aimespec.core.contract import all_methods, is_contract_class, is_seed_contract, resolve
from aimespec.core.dims import Leaf, evaluate, format_shape, leaves
from aimespec.core.symbols import SYMBOLS, Symbol, declared_by, symbol_values
from aimespec.runtime.discover import ModelSource, load_source

OURS = "aimespec"  # the origin of the seed's symbols and contracts

# The seed's "Key Tensor Shapes at a Glance" rows: (row name, contract tensor, location, description).
# Shapes are not written here: they are read from the `AimeWorldModel.forward_sequence` contract.
KEY_TENSORS: tuple[tuple[str, str, str, str], ...] = (
    ("Observations", "observations", "Input", "Raw video frames"),
    ("Actions", "actions", "Input", "Action sequences"),
    ("VQ Tokens", "tokens", "Perceiver", "Discrete token indices"),
    ("Context", "context", "Perceiver", "Per-frame context vectors"),
    ("Latent z", "latents", "VAE Encoder", "Latent state variables"),
    ("LSTM hidden", "hidden_states", "VRNN", "Recurrent hidden states"),
    ("DPGMM weights", "mixture_weights", "Prior", "Mixture component weights"),
    ("Attention map", "attention_maps", "Attention", "Spatial attention probabilities"),
    ("Slot features", "slot_features", "Attention", "Per-slot feature vectors"),
    ("Reconstructions", "reconstructions", "Output", "Decoded video frames"),
)
WORLD = "AimeWorldModel.forward_sequence"


def key_tensor_leaves() -> dict[str, Leaf]:
    """Row name -> the contract leaf it shows."""
    contract = resolve(WORLD)
    by_path = {leaf.path: leaf for leaf in contract.input_leaves() + contract.output_leaves()}
    return {row: by_path[path] for row, path, _, _ in KEY_TENSORS}


@dataclass(frozen=True)
class SymbolRow:
    """One row of the Standard Dimensions table at a config."""

    symbol: str
    meaning: str
    source: str
    value: int
    free: bool
    seed: bool
    description: str
    origin: str = OURS  # "aimespec", or the model file that declared it

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TensorRow:
    """One of the seed's key tensors, read from the world model's contract."""

    name: str
    symbolic: str
    shape: list[int | None]
    location: str
    description: str
    contract_tensor: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ContractTensor:
    """One tensor of a contract method: an argument (`input`) or a returned entry (`output`)."""

    name: str
    role: str  # "input" | "output"
    symbolic: str
    dtype: str
    shape: list[int | None]
    optional: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ContractRow:
    contract: str
    pillar: str
    tensors: list[ContractTensor]
    invariants: list[str]
    origin: str = OURS  # "aimespec", or the model file that defined it

    def to_json(self) -> dict[str, Any]:
        return {"contract": self.contract, "pillar": self.pillar, "tensors": [t.to_json() for t in self.tensors],
                "invariants": self.invariants, "origin": self.origin}


@dataclass(frozen=True)
class SpecReport:
    cfg: AimeConfig
    values: dict[str, int]
    symbol_rows: list[SymbolRow]
    tensor_rows: list[TensorRow]
    contract_rows: list[ContractRow]
    source: str | None = None  # the model file whose own symbols and contracts are shown too

    def seeds(self) -> tuple[list[SymbolRow], list[ContractRow]]:
        return ([r for r in self.symbol_rows if r.origin == OURS], [r for r in self.contract_rows if r.origin == OURS])

    def own(self) -> tuple[list[SymbolRow], list[ContractRow]]:
        return ([r for r in self.symbol_rows if r.origin != OURS], [r for r in self.contract_rows if r.origin != OURS])

    def to_json(self) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {
            "version": __version__,
            **({"source": self.source} if self.source is not None else {}),
            "config": self.cfg.to_dict(),
            "symbols": {row.symbol: row.value for row in self.symbol_rows},
            "symbol_table": [row.to_json() for row in self.symbol_rows],
            "tensors": [row.to_json() for row in self.tensor_rows],
            "contracts": [row.to_json() for row in self.contract_rows],
        }

    def to_markdown(self) -> str:
        seed_symbols, seed_contracts = self.seeds()
        lines = _md_symbols("Standard Dimensions", seed_symbols)
        lines += ["", "### Key Tensor Shapes", "", "| Tensor | Symbolic | Shape | Location |", "|---|---|---|---|"]
        lines += [f"| {r.name} | `{r.symbolic}` | `{format_shape(r.shape)}` | {r.location} |" for r in self.tensor_rows]
        lines += ["", *_md_contracts("Contracts", seed_contracts)]
        if self.source is not None:
            own_symbols, own_contracts = self.own()
            lines += ["", *_md_symbols(f"Symbols of {self.source}", own_symbols)]
            lines += ["", *_md_contracts(f"Contracts of {self.source}", own_contracts)]
        return "\n".join(lines) + "\n"

    def __rich__(self) -> Group:
        symbols = _symbol_table("Standard Dimensions", self.seeds()[0])
        tensors = Table(title="Key Tensor Shapes", title_justify="left")
        for col in ("Tensor", "Symbolic", "Shape", "Location"):
            tensors.add_column(col)
        for t in self.tensor_rows:
            tensors.add_row(t.name, t.symbolic, format_shape(t.shape), t.location)
        if self.source is None:
            return Group(symbols, tensors)
        own_symbols, own_contracts = self.own()
        return Group(symbols, tensors, _symbol_table(f"Symbols of {self.source}", own_symbols),
                     _contract_table(f"Contracts of {self.source}", own_contracts))


def _md_symbols(title: str, rows: list[SymbolRow]) -> list[str]:
    lines = [f"### {title}", "", "| Symbol | Meaning | Value | Source |", "|---|---|---|---|"]
    return lines + [f"| `{r.symbol}` | {r.meaning} | {r.value} | `{r.source}` |" for r in rows]


def _md_contracts(title: str, rows: list[ContractRow]) -> list[str]:
    lines = [f"### {title}", "", "| Contract | Tensor | Symbolic | Shape |", "|---|---|---|---|"]
    return lines + [f"| {c.contract} | {t.name} | `{t.symbolic}` | `{format_shape(t.shape)}` |"
                    for c in rows for t in c.tensors]


def _symbol_table(title: str, rows: list[SymbolRow]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("Symbol", "Meaning", "Value", "Source"):
        table.add_column(col, justify="right" if col == "Value" else "left")
    for r in rows:
        table.add_row(r.symbol, r.meaning, str(r.value), r.source)
    return table


def _contract_table(title: str, rows: list[ContractRow]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("Contract", "Tensor", "Symbolic", "Shape", "Invariants"):
        table.add_column(col)
    for c in rows:
        for t in c.tensors:
            invariants = "; ".join(i for i in c.invariants if i.startswith(t.name + " "))
            table.add_row(c.contract, t.name, t.symbolic, format_shape(t.shape), invariants)
    return table


def build_spec(cfg: AimeConfig, source: ModelSource | None = None) -> SpecReport:
    """The spec at `cfg`: the seed's symbols, tensors and contracts, and a model file's own ones too."""
    values = symbol_values(cfg)
    label = source.label if source is not None and not source.is_reference else None
    mine = declared_by(source.module.__name__) if label is not None and source is not None else []
    symbol_rows = [_symbol_row(s, values, OURS) for s in SYMBOLS]
    symbol_rows += [_symbol_row(s, values, label or OURS) for s in mine if s.available(cfg)]
    own_contracts = {c.contract_name for c in source.classes if is_contract_class(c)} \
        if label is not None and source is not None else set()
    tensor_rows = [
        TensorRow(row, leaf.symbolic, [evaluate(d, values) for d in leaf.dims], location, description, leaf.path)
        for (row, _path, location, description), leaf in zip(KEY_TENSORS, key_tensor_leaves().values(), strict=True)
    ]
    contract_rows = []
    for m in all_methods():
        theirs = m.component in own_contracts
        if not theirs and not is_seed_contract(m.component):
            continue  # another file's contracts (loaded earlier in this process) are not this spec's
        vals = {**values, **m.free_dims, **m.default_values()}
        tensors = [_tensor_row(leaf, vals, "input") for p in m.params for leaf in leaves(p.node)]
        tensors += [_tensor_row(leaf, vals, "output") for leaf in m.output_leaves()]
        contract_rows.append(ContractRow(m.name, m.pillar, tensors, [inv.describe() for inv in m.invariants],
                                         origin=label if theirs and label is not None else OURS))
    return SpecReport(cfg, values, symbol_rows, tensor_rows, contract_rows, source=label)


def _symbol_row(s: Symbol, values: dict[str, int], origin: str) -> SymbolRow:
    return SymbolRow(s.name, s.meaning, s.source, values[s.name], s.free, s.seed, s.description, origin)


def _tensor_row(leaf: Leaf, values: dict[str, int], role: str) -> ContractTensor:
    return ContractTensor(leaf.path, role, leaf.symbolic, leaf.dtype, [evaluate(d, values) for d in leaf.dims],
                          leaf.optional)


def spec_of(path: str | None, cfg: AimeConfig | ConfigRequest) -> SpecReport:
    """`aimespec spec [PATH]`: a model file (or a module of contracts) is imported, its config class used."""
    if path is None:
        return build_spec(as_config(cfg, AimeConfig))
    source = load_source(path, require_components=False)
    config = as_config(cfg, source.config_class)
    check_symbol_fields(source, config)  # a declared symbol whose field the config lacks: one sentence
    return build_spec(config, source)
