"""The `config` probe: every component rebuilt at a second config whose widths all differ.

A width written as the document's number (`nn.LSTM(36 + 256 + 6, ...)`) is right at the
default config and wrong at every other: rebuilt at `varied_config(cfg)` (every width of
`VARIED` different, the image size kept, small sizes so that it is cheap), the contracts
no longer hold, and the numbers of that failure read in the *first* config's symbols name
the field the code should have read (`298 = D + context_dim + A = 36 + 256 + 6`).
"""

import ast
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimespec.core.config import AimeConfig
from aimespec.core.errors import ConfigError
from aimespec.core.symbols import SYMBOLS, symbol, symbol_values
from aimespec.core.violation import Violation
from aimespec.explain.algebra import Algebra, Reading, readings

# the widths the probe varies, each to a value other than the first config's (SPEC's list)
VARIED = {"latent_dim": 24, "hidden_dim": 40, "num_latent_channels_perceiver": 48, "max_components": 5,
          "num_semantic_slots": 3, "attention_dim": 32, "action_dim": 7}
# sizes made small as well so that the second check is cheap (kept when the config refuses them)
SHRUNK = {"num_latent_perceiver": 8, "num_codebook_perceiver": 32, "perceiver_code_dim": 16, "tokenizer_width": 8,
          "prior_hidden": 32, "slot_mlp_hidden": 32, "batch_size": 2, "sequence_length": 3}
# the symbols a literal width may stand for: those bound to a varied field
WIDTH_SYMBOLS = frozenset(s.name for s in SYMBOLS if s.source in VARIED) | {"context_dim"}
LITERAL = ("{n} = {text} = {shown} at the first config, but at the varied config {text} is {shown2} = {n2}: "
           "the code wrote {n} where it should read {fields}")
_NAMES = frozenset(s.name for s in SYMBOLS)
LITERAL_FIX = "read the width from the config: {read} instead of {n}"


def varied_config(cfg: AimeConfig) -> tuple[AimeConfig, dict[str, Any]]:
    """The second config and the fields it changed (every field of VARIED differs from `cfg`)."""
    changes: dict[str, Any] = {}
    taken = {getattr(cfg, f) for f in VARIED}
    for name, value in VARIED.items():
        step = 1
        if name == "num_latent_channels_perceiver":  # the perceiver's heads must divide the context width
            step = cfg.perceiver_heads
            value = step * math.ceil(value / step)
        while value == getattr(cfg, name) or value in changes.values() or value in taken:
            value += step
        changes[name] = value
    for name, value in SHRUNK.items():
        if hasattr(cfg, name) and getattr(cfg, name) != value:
            changes[name] = value
    for name in ("vae_channels", "disc_channels"):
        old = getattr(cfg, name, None)
        if isinstance(old, tuple):
            changes[name] = tuple(min(8 * 2**i, 32) for i in range(len(old)))
    for optional in [*SHRUNK, "vae_channels", "disc_channels", None]:
        try:
            return cfg.replace(**changes), dict(changes)
        except (ConfigError, ValueError):
            if optional is None:
                raise
            changes.pop(optional, None)
    raise AssertionError("unreachable")  # pragma: no cover


def shown_config(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in changes.items())


def shown_widths(changes: dict[str, Any]) -> str:
    """The varied widths (the rest of the changes only make the second check cheaper)."""
    widths = shown_config({k: changes[k] for k in VARIED if k in changes})
    return widths + (" (smaller sizes elsewhere)" if len(changes) > len(VARIED) else "")


@dataclass(frozen=True)
class Literal:
    """A number in a failure at the varied config that is a width of the first config, written as a literal."""

    n: int
    reading: Reading
    at_varied: tuple[int, str]
    where: str | None

    def fields(self) -> list[str]:
        """The config fields the reading's symbols are bound to, in the reading's order."""
        ordered = sorted(self.reading.symbols, key=self.reading.text.find)
        return [symbol(s).source for s in ordered if s in _NAMES]

    def fix(self) -> str:
        return LITERAL_FIX.format(n=self.n, read=" + ".join(f"cfg.{f}" for f in self.fields()) or self.reading.text)

    def text(self) -> str:
        fields = " + ".join(self.fields())
        return LITERAL.format(n=self.n, text=self.reading.text, shown=self.reading.shown, shown2=self.at_varied[1],
                              n2=self.at_varied[0], fields=fields or self.reading.text)


def literal_width(v: Violation, cfg: AimeConfig, cfg2: AimeConfig, files: list[str]) -> Literal | None:
    """The number in `v` (a failure at `cfg2`) that reads as a width of `cfg` and is no size at `cfg2`."""
    a1 = Algebra(cfg, symbol_values(cfg))
    a2 = Algebra(cfg2, symbol_values(cfg2))
    numbers = [int(x) for x in re.findall(r"(?<![\w.])(\d+)(?![\w.])", v.message)]
    numbers += list(v.got or [])
    for n in dict.fromkeys(numbers):
        if n < 2 or _is_width(a2, n):
            continue  # a size of the varied config: not a literal of the first
        for r in readings(a1, n):
            if not r.symbols or not r.symbols <= WIDTH_SYMBOLS | {"K-1"} or r.kinds - {"width", "count"}:
                continue
            at2 = r.value_in(a2)
            if at2 is None or at2[0] == n:
                continue
            return Literal(n, r, at2, _literal_line(n, r, cfg, files))
    return None


def _is_width(algebra: Algebra, n: int) -> bool:
    found = readings(algebra, n)
    return bool(found) and found[0].symbols <= WIDTH_SYMBOLS and not (found[0].kinds - {"width", "count"})


def _literal_line(n: int, r: Reading, cfg: AimeConfig, files: list[str]) -> str | None:
    """file:line of the literal: `36 + 256 + 6` (the reading's numbers) first, else `298` itself."""
    wanted = sorted(int(x) for x in re.findall(r"\d+", r.shown))
    best: tuple[int, str] | None = None
    for file in files:
        try:
            tree = ast.parse(Path(file).read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            rank = _literal_rank(node, n, wanted)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, f"{_display(file)}:{node.lineno}")  # type: ignore[attr-defined]
    return best[1] if best else None


def _literal_rank(node: ast.AST, n: int, wanted: list[int]) -> int | None:
    if isinstance(node, ast.BinOp):
        consts = _constants(node)
        if consts is not None and sum(consts) == n and sorted(consts) == wanted:
            return 0
        return None
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value == n:
        return 1
    return None


def _constants(node: ast.AST) -> list[int] | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _constants(node.left), _constants(node.right)
        return None if left is None or right is None else left + right
    return None


def _display(file: str) -> str:
    from aimespec.core.paths import display_path

    return display_path(file)


def config_violation(v: Violation, changes: dict[str, Any], literal: Literal | None) -> Violation:
    """A finding at the varied config, as a `config` probe violation of the first."""
    body = v.message.split(": ", 1)[1] if v.message.startswith(v.contract + ": ") else v.message
    message = f"{v.contract}: at the varied config {body}"
    fix = v.fix
    if literal is not None:
        message += f"; {literal.text()}"
        fix = literal.fix()
    probe = {"config": dict(changes), "failed_as": v.kind,
             "changed": f"the config: every component rebuilt at {shown_widths(changes)}"}
    if literal is not None:
        probe["literal"] = {"number": literal.n, "reads": literal.reading.text, "at_varied": literal.at_varied[0]}
    return dataclasses.replace(v, kind="config", message=message, probe=probe, fix=fix,
                               where=(literal.where if literal and literal.where else v.where))
