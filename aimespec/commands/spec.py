"""`aimespec spec`: the symbol table and key tensor shapes at a config, generated from the contracts."""

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
class SpecReport:
    cfg: AimeConfig
    values: dict[str, int]
    symbol_rows: list[dict[str, Any]]
    tensor_rows: list[dict[str, Any]]
    contract_rows: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {
            "version": __version__,
            "config": self.cfg.to_dict(),
            "symbols": {row["symbol"]: row["value"] for row in self.symbol_rows},
            "symbol_table": self.symbol_rows,
            "tensors": self.tensor_rows,
            "contracts": self.contract_rows,
        }

    def to_markdown(self) -> str:
        lines = ["### Standard Dimensions", "", "| Symbol | Meaning | Value | Source |", "|---|---|---|---|"]
        lines += [f"| `{r['symbol']}` | {r['meaning']} | {r['value']} | `{r['source']}` |" for r in self.symbol_rows]
        lines += ["", "### Key Tensor Shapes", "", "| Tensor | Symbolic | Shape | Location |", "|---|---|---|---|"]
        lines += [
            f"| {r['name']} | `{r['symbolic']}` | `{format_shape(r['shape'])}` | {r['location']} |"
            for r in self.tensor_rows
        ]
        lines += ["", "### Contracts", "", "| Contract | Tensor | Symbolic | Shape |", "|---|---|---|---|"]
        for c in self.contract_rows:
            for t in c["tensors"]:
                lines.append(f"| {c['contract']} | {t['name']} | `{t['symbolic']}` | `{format_shape(t['shape'])}` |")
        return "\n".join(lines) + "\n"

    def __rich__(self) -> Group:
        symbols = Table(title="Standard Dimensions", title_justify="left")
        for col in ("Symbol", "Meaning", "Value", "Source"):
            symbols.add_column(col, justify="right" if col == "Value" else "left")
        for r in self.symbol_rows:
            symbols.add_row(r["symbol"], r["meaning"], str(r["value"]), r["source"])
        tensors = Table(title="Key Tensor Shapes", title_justify="left")
        for col in ("Tensor", "Symbolic", "Shape", "Location"):
            tensors.add_column(col)
        for r in self.tensor_rows:
            tensors.add_row(r["name"], r["symbolic"], format_shape(r["shape"]), r["location"])
        return Group(symbols, tensors)


def build_spec(cfg: AimeConfig) -> SpecReport:
    values = symbol_values(cfg)
    symbol_rows = [
        {"symbol": s.name, "meaning": s.meaning, "source": s.source, "value": values[s.name],
         "free": s.free, "seed": s.seed, "description": s.description}
        for s in SYMBOLS
    ]
    tensor_rows = []
    for (row, _path, location, description), leaf in zip(KEY_TENSORS, key_tensor_leaves().values(), strict=True):
        tensor_rows.append({
            "name": row, "symbolic": leaf.symbolic, "shape": [evaluate(d, values) for d in leaf.dims],
            "location": location, "description": description, "contract_tensor": leaf.path,
        })
    contract_rows = []
    for m in all_methods():
        vals = {**values, **m.free_dims, **m.default_values()}
        tensors = []
        for p in m.params:
            tensors += [_tensor_row(leaf, vals, "input") for leaf in leaves(p.node)]
        tensors += [_tensor_row(leaf, vals, "output") for leaf in m.output_leaves()]
        contract_rows.append({
            "contract": m.name, "pillar": m.pillar, "tensors": tensors,
            "invariants": [inv.describe() for inv in m.invariants],
        })
    return SpecReport(cfg, values, symbol_rows, tensor_rows, contract_rows)


def _tensor_row(leaf: Leaf, values: dict[str, int], role: str) -> dict[str, Any]:
    return {"name": leaf.path, "role": role, "symbolic": leaf.symbolic, "dtype": leaf.dtype,
            "shape": [evaluate(d, values) for d in leaf.dims], "optional": leaf.optional}
