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
| `checksum` | SHA-256 over every other entry (keys, tensors' dtype, shape and bytes, plain values) |

Only tensors and plain data are stored, so the file is read with `torch.load(weights_only=True)`:
a pickle in it that would run code is refused, never run. The checksum is checked on every
load: a file with flipped bytes, cut short or written by something else is one sentence (exit 2),
never a silent resume on damaged weights.

`log.jsonl` holds one JSON object per logged step (see `reference_model.train` for the keys).
"""

import hashlib
import json
import math
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import torch

from aimespec import UsageError, output_folder, replace_into

FORMAT = "aimespec-checkpoint/2"
CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


NO_CHECKPOINT = "there is no checkpoint to resume from at {path}: train without --resume first."
UNREADABLE = "cannot read the checkpoint {path}: it is damaged or truncated ({detail}); train into a new --out."
UNSAFE = ("refusing to load the checkpoint {path}: it holds objects other than tensors and plain data "
          "(a pickle that could run code); only checkpoints aimespec wrote can be resumed.")
FOREIGN = "{path} is not an aimespec training checkpoint ({detail}); train into a new --out."
DAMAGED = ("the checkpoint {path} is damaged: its contents do not match the checksum written with it; "
           "train into a new --out or restore the file from a backup.")
MISFIT = "the checkpoint {path} does not fit the model its config builds ({detail}); train into a new --out."
# entry -> the type it must have (the checksum covers them, this catches a foreign file written with one)
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "step": int, "trainer": dict, "config": dict, "seed": int, "deterministic": bool, "data": dict, "rng": dict,
    "elapsed": (int, float),
}
TRAINER_KEYS = ("model", "optimizer", "disc_optimizer", "balancer", "step_count")


def checksum(value: Any) -> str:
    """SHA-256 over a tree of dicts, lists, tuples, tensors and plain values (order of dict keys included)."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(b"D" + struct.pack("<q", len(value)))
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)):
        h.update((b"L" if isinstance(value, list) else b"U") + struct.pack("<q", len(value)))
        for item in value:
            _feed(h, item)
    else:  # None, bool, int, float, str, torch.Size
        h.update(f"{type(value).__name__}:{value!r};".encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` to a temporary file beside `path`, flush it to disk, then rename it into place:
    a crash mid-write leaves the previous checkpoint intact. The checksum is written with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    body = {"format": FORMAT, **state}
    try:
        with tmp.open("wb") as fh:
            torch.save({**body, "checksum": checksum(body)}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        replace_into(tmp, path, "the checkpoint")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint this module wrote (onto the CPU, no code from it run) and verify its checksum;
    a foreign, damaged or unsafe file is one sentence (`UsageError`, exit 2)."""
    if not path.is_file():
        raise UsageError(NO_CHECKPOINT.format(path=path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: a pickle that would run code
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise UsageError(UNSAFE.format(path=path)) from exc
        raise UsageError(UNREADABLE.format(path=path, detail=_detail(exc))) from exc
    except Exception as exc:  # a damaged zip, a truncated file: torch raises many types
        raise UsageError(UNREADABLE.format(path=path, detail=_detail(exc))) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        detail = f"format {found!r}, expected {FORMAT!r}" if found else f"no {FORMAT!r} format tag"
        raise UsageError(FOREIGN.format(path=path, detail=detail))
    written = state.pop("checksum", None)
    if not isinstance(written, str):
        raise UsageError(FOREIGN.format(path=path, detail="no checksum"))
    if checksum(state) != written:
        raise UsageError(DAMAGED.format(path=path))
    _check_schema(state, path)
    return state


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}".rstrip(": ")


def _check_schema(state: dict[str, Any], path: Path) -> None:
    for key, kind in SCHEMA.items():
        if not isinstance(state.get(key), kind) or (kind is int and isinstance(state.get(key), bool)):
            raise UsageError(FOREIGN.format(path=path, detail=f"its {key!r} entry is missing or malformed"))
    missing = [k for k in TRAINER_KEYS if k not in state["trainer"]]
    if missing:
        raise UsageError(FOREIGN.format(path=path, detail=f"its trainer state lacks {', '.join(missing)}"))
    rng = state["rng"].get("torch")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.dim() != 1:
        raise UsageError(FOREIGN.format(path=path, detail="its random generator state is malformed"))
    shape = state["data"].get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) for n in shape)):
        raise UsageError(FOREIGN.format(path=path, detail="its data record is malformed"))


def restore_trainer(trainer: Any, state: dict[str, Any], path: Path) -> None:
    """`trainer.load_state_dict(state["trainer"])` and torch's RNG state; a checkpoint whose tensors do not
    fit the model (other shapes, missing or extra keys) is one sentence."""
    try:
        trainer.load_state_dict(state["trainer"])
        torch.set_rng_state(state["rng"]["torch"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise UsageError(MISFIT.format(path=path, detail=_detail(exc))) from exc


def check_run_folder(out: Path) -> Path:
    """The run folder can be written and holds nothing but regular files where the run writes its files."""
    output_folder(out, "the training run", files=(CHECKPOINT, LOG))
    return output_folder(out / "figures", "the training run's figures") and out


def finite_parameters(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether every floating tensor of a model state dict is finite."""
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())


def json_number(value: float) -> float | str:
    """A float JSON can hold (NaN/Inf, which JSON cannot, as strings)."""
    return value if math.isfinite(value) else str(value)


LOG_DAMAGED = ("the training log {path} is damaged ({detail}); move it away (or repair it) and resume again: "
               "it is kept as it is")


def _kept_lines(path: Path, keep_until: int) -> list[str]:
    """The log's lines up to step `keep_until`; only the last line may be cut short (a crash mid-write)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(LOG_DAMAGED.format(path=path, detail=f"byte {exc.start} is not UTF-8 text")) from None
    lines = text.splitlines()
    kept: list[str] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) and not text.endswith("\n"):
                continue  # the last line, cut short by a crash
            raise UsageError(LOG_DAMAGED.format(path=path, detail=f"line {number} is not JSON")) from None
        if not isinstance(record, dict) or isinstance(record.get("step"), bool) \
                or not isinstance(record.get("step"), int):
            raise UsageError(LOG_DAMAGED.format(path=path, detail=f"line {number} has no step number"))
        if record["step"] <= keep_until:
            kept.append(line)
    return kept


class JsonLog:
    """`log.jsonl`, one JSON object a line, flushed after every line."""

    def __init__(self, path: Path, *, keep_until: int | None) -> None:
        """`keep_until=None`: start a new log; a step: keep the lines up to it (a resume drops
        lines a failed run wrote after its last checkpoint, so that no step appears twice)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = _kept_lines(path, keep_until) if keep_until is not None and path.is_file() else []
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text("".join(f"{line}\n" for line in kept))
            replace_into(tmp, path, "the training log")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._fh = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: json_number(v) if isinstance(v, float) else v for k, v in record.items()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


__all__ = [
    "CHECKPOINT", "FORMAT", "LOG", "JsonLog", "check_run_folder", "checksum", "finite_parameters", "load_checkpoint",
    "restore_trainer", "save_checkpoint",
]
