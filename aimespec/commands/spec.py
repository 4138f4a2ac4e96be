"""`aimespec spec`: the symbol table and key tensor shapes at a config, generated from the contracts."""

import dataclasses
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table

from aimespec.core.config import AimeConfig
from aimespec.core.contract import all_methods, resolve
from aimespec.core.dims import Leaf, evaluate, format_shape, leaves
from aimespec.core.symbols import SYMBOLS, symbol_values

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

    def to_json(self) -> dict[str, Any]:
        return {"contract": self.contract, "pillar": self.pillar, "tensors": [t.to_json() for t in self.tensors],
                "invariants": self.invariants}


@dataclass(frozen=True)
class SpecReport:
    cfg: AimeConfig
    values: dict[str, int]
    symbol_rows: list[SymbolRow]
    tensor_rows: list[TensorRow]
    contract_rows: list[ContractRow]

    def to_json(self) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {
            "version": __version__,
            "config": self.cfg.to_dict(),
            "symbols": {row.symbol: row.value for row in self.symbol_rows},
            "symbol_table": [row.to_json() for row in self.symbol_rows],
            "tensors": [row.to_json() for row in self.tensor_rows],
            "contracts": [row.to_json() for row in self.contract_rows],
        }

    def to_markdown(self) -> str:
        lines = ["### Standard Dimensions", "", "| Symbol | Meaning | Value | Source |", "|---|---|---|---|"]
        lines += [f"| `{r.symbol}` | {r.meaning} | {r.value} | `{r.source}` |" for r in self.symbol_rows]
        lines += ["", "### Key Tensor Shapes", "", "| Tensor | Symbolic | Shape | Location |", "|---|---|---|---|"]
        lines += [f"| {r.name} | `{r.symbolic}` | `{format_shape(r.shape)}` | {r.location} |" for r in self.tensor_rows]
        lines += ["", "### Contracts", "", "| Contract | Tensor | Symbolic | Shape |", "|---|---|---|---|"]
        for c in self.contract_rows:
            for t in c.tensors:
                lines.append(f"| {c.contract} | {t.name} | `{t.symbolic}` | `{format_shape(t.shape)}` |")
        return "\n".join(lines) + "\n"

    def __rich__(self) -> Group:
        symbols = Table(title="Standard Dimensions", title_justify="left")
        for col in ("Symbol", "Meaning", "Value", "Source"):
            symbols.add_column(col, justify="right" if col == "Value" else "left")
        for r in self.symbol_rows:
            symbols.add_row(r.symbol, r.meaning, str(r.value), r.source)
        tensors = Table(title="Key Tensor Shapes", title_justify="left")
        for col in ("Tensor", "Symbolic", "Shape", "Location"):
            tensors.add_column(col)
        for t in self.tensor_rows:
            tensors.add_row(t.name, t.symbolic, format_shape(t.shape), t.location)
        return Group(symbols, tensors)


def build_spec(cfg: AimeConfig) -> SpecReport:
    values = symbol_values(cfg)
    symbol_rows = [SymbolRow(s.name, s.meaning, s.source, values[s.name], s.free, s.seed, s.description)
                   for s in SYMBOLS]
    tensor_rows = [
        TensorRow(row, leaf.symbolic, [evaluate(d, values) for d in leaf.dims], location, description, leaf.path)
        for (row, _path, location, description), leaf in zip(KEY_TENSORS, key_tensor_leaves().values(), strict=True)
    ]
    contract_rows = []
    for m in all_methods():
        vals = {**values, **m.free_dims, **m.default_values()}
        tensors = [_tensor_row(leaf, vals, "input") for p in m.params for leaf in leaves(p.node)]
        tensors += [_tensor_row(leaf, vals, "output") for leaf in m.output_leaves()]
        contract_rows.append(ContractRow(m.name, m.pillar, tensors, [inv.describe() for inv in m.invariants]))
    return SpecReport(cfg, values, symbol_rows, tensor_rows, contract_rows)


def _tensor_row(leaf: Leaf, values: dict[str, int], role: str) -> ContractTensor:
    return ContractTensor(leaf.path, role, leaf.symbolic, leaf.dtype, [evaluate(d, values) for d in leaf.dims],
                          leaf.optional)
