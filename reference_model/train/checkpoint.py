"""A training run's files: `checkpoint.pt` (atomic, always a complete good state) and `log.jsonl`.

`checkpoint.pt` holds (a `torch.save` dict):

| key | what |
| --- | --- |
| `format` | `"aimespec-checkpoint/1"` |
| `step` | the completed steps (the Trainer's `step_count`) |
| `trainer` | `Trainer.state_dict()`: model (generator + discriminator), both Adams, RGB state, seed base |
| `config` | `AimeConfig.to_dict()` |
| `seed`, `deterministic` | the run's sampling seed and noise mode (a resume keeps both) |
| `data` | path, task and `[N, T, A]` of the episodes trained on |
| `rng` | torch's CPU (and CUDA) generator states, so that a resume draws the noise it would have |
| `elapsed` | training seconds so far, `version` | aimespec's version |

`log.jsonl` holds one JSON object per logged step (see `reference_model.train` for the keys).
"""

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from aimespec import UsageError

FORMAT = "aimespec-checkpoint/1"
CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` to a temporary file beside `path`, flush it to disk, then rename it into place:
    a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint this module wrote (onto the CPU); a foreign or damaged file is one sentence."""
    if not path.is_file():
        raise UsageError(f"there is no checkpoint to resume from at {path}: train without --resume first.")
    try:
        # our own file: it holds the balancer's plain-Python state beside tensors, so not weights_only
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise UsageError(f"cannot read the checkpoint {path} ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not an aimespec training checkpoint (no {FORMAT!r} format tag).")
    return state


def finite_parameters(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether every floating tensor of a model state dict is finite."""
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())


def json_number(value: float) -> float | str:
    """A float JSON can hold (NaN/Inf, which JSON cannot, as strings)."""
    return value if math.isfinite(value) else str(value)


class JsonLog:
    """`log.jsonl`, one JSON object a line, flushed after every line."""

    def __init__(self, path: Path, *, keep_until: int | None) -> None:
        """`keep_until=None`: start a new log; a step: keep the lines up to it (a resume drops
        lines a failed run wrote after its last checkpoint, so that no step appears twice)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if keep_until is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= keep_until:
                    kept.append(line)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text("".join(f"{line}\n" for line in kept))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._fh = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: json_number(v) if isinstance(v, float) else v for k, v in record.items()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


__all__ = ["CHECKPOINT", "FORMAT", "LOG", "JsonLog", "finite_parameters", "load_checkpoint", "save_checkpoint"]
