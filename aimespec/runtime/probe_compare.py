"""What the probes compare: a call's output tensors, their differences, and the patterns of them.

Tolerances are relative to each output's scale (its largest magnitude in the first call),
far above float32 round-off: `RTOL` of the scale plus `ATOL`. Integer and boolean outputs
(token indices) must match exactly. NaN where the first call had NaN counts as unchanged.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from aimespec.core.contract import MethodContract
from aimespec.core.dims import DictNode, Leaf, Node, TupleNode
from aimespec.core.validate import _walk

RTOL = 1e-3  # a change counts above this fraction of the output's scale ...
ATOL = 1e-6  # ... plus this much (an all-zero output)


@dataclass(frozen=True)
class Output:
    """One output tensor of a call, by its contract path."""

    leaf: Leaf
    value: torch.Tensor

    def axis(self, symbol: str) -> int | None:
        """The axis written as exactly `symbol` (`B`, `T`), when the tensor has the contract's rank."""
        dims = self.leaf.dims
        if symbol not in dims or self.value.dim() != len(dims):
            return None
        return dims.index(symbol)


def outputs(contract: MethodContract, result: Any) -> dict[str, Output]:
    """Every output tensor the contract names, found in `result`."""
    found = {}
    for node, value, present in _walk(contract.returns, result):
        if isinstance(node, Leaf) and present and isinstance(value, torch.Tensor):
            found[node.path] = Output(node, value.detach())
    return found


def input_leaves(contract: MethodContract, args: tuple[Any, ...]) -> list[tuple[Leaf, torch.Tensor]]:
    found = []
    for p, arg in zip(contract.params, args, strict=False):
        for node, value, present in _walk(p.node, arg):
            if isinstance(node, Leaf) and present and isinstance(value, torch.Tensor):
                found.append((node, value))
    return found


def replace_inputs(contract: MethodContract, args: tuple[Any, ...], fresh: tuple[Any, ...], edit) -> tuple:
    """The arguments with `edit(leaf, tensor, fresh_tensor)` applied to every input tensor."""
    return tuple(_replace(p.node, a, f, edit) for p, a, f in zip(contract.params, args, fresh, strict=False))


def _replace(node: Node, value: Any, fresh: Any, edit) -> Any:
    if isinstance(node, Leaf) and isinstance(value, torch.Tensor) and isinstance(fresh, torch.Tensor):
        return edit(node, value, fresh)
    if isinstance(node, TupleNode) and isinstance(value, (tuple, list)) and isinstance(fresh, (tuple, list)):
        items = [_replace(n, v, f, edit) for n, v, f in zip(node.items, value, fresh, strict=False)]
        return type(value)(items) if type(value) in (tuple, list) else tuple(items)
    if isinstance(node, DictNode) and isinstance(value, dict) and isinstance(fresh, dict):
        out = dict(value)
        for key, item, _required in node.entries:
            if key in value and key in fresh:
                out[key] = _replace(item, value[key], fresh[key], edit)
        return out
    return value


def change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| elementwise as float; NaN in both places is no change, NaN in one is an infinite one."""
    a32, b32 = a.detach().double(), b.detach().double()
    diff = (a32 - b32).abs()
    both = torch.isnan(a32) & torch.isnan(b32)
    diff = torch.where(both, torch.zeros_like(diff), diff)
    return torch.nan_to_num(diff, nan=float("inf"))


def tolerance(a: torch.Tensor) -> float:
    """How much `a` may change: exact for integers and booleans, else relative to its scale."""
    if not (a.is_floating_point() or a.is_complex()):
        return 0.0
    finite = a.detach()[torch.isfinite(a.detach())]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return RTOL * scale + ATOL


def scale_of(a: torch.Tensor) -> float:
    finite = a.detach().double()
    finite = finite[torch.isfinite(finite)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def largest(pairs: Iterable[tuple[str, float]]) -> tuple[str | None, float]:
    best: tuple[str | None, float] = (None, 0.0)
    for name, value in pairs:
        if value > best[1]:
            best = (name, value)
    return best


def per_index(diff: torch.Tensor, axis: int) -> torch.Tensor:
    """The largest change at each index of `axis`."""
    moved = diff.movedim(axis, 0)
    return moved.reshape(moved.shape[0], -1).amax(dim=1) if moved.numel() else torch.zeros(moved.shape[0])


def cells(diff: torch.Tensor, b_axis: int, t_axis: int) -> torch.Tensor:
    """The largest change in each (example, step) cell: `[B, T]`."""
    moved = diff.movedim((b_axis, t_axis), (0, 1))
    B, T = moved.shape[:2]
    return moved.reshape(B, T, -1).amax(dim=2) if moved.numel() else torch.zeros(B, T)


def fold_pattern(masks: list[torch.Tensor], j: int) -> bool:
    """True when the (example, step) cells that changed are those a `[B*T, ...]` tensor folded in the
    wrong order mixes in: example j's frames landing in other examples' later steps.

    `masks` are `[B, T]` booleans (cell changed). Folding b-major rows `b*T + t` as `(T, B)`
    puts the frame of example `(t*B + b) // T` at cell (b, t); folding t-major rows as `(B, T)`
    puts that of example `(b*T + t) % B`. Each affected example's first changed step must be
    the first step the fold hands it from example j (mixing after the fold may spread later).
    """
    if not masks:
        return False
    B, T = masks[0].shape
    b = torch.arange(B)[:, None]
    t = torch.arange(T)[None, :]
    for pred in (((t * B + b) // T) == j, ((b * T + t) % B) == j):
        seen, ok = False, True
        for mask in masks:
            for ex in range(B):
                if ex == j or not bool(mask[ex].any()):
                    continue
                seen = True
                if not bool(pred[ex].any()):
                    ok = False
                    break
                first_seen = int(mask[ex].nonzero()[0])
                first_pred = int(pred[ex].nonzero()[0])
                if first_seen != first_pred or first_pred == 0:
                    ok = False
                    break
            if not ok:
                break
        if ok and seen:
            return True
    return False
