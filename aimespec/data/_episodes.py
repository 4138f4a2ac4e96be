"""Episodes on disk: one `.npz` holding `observations`, `actions` and a JSON metadata record.

Layout (a zip-compressed `.npz`; every entry a plain array, no pickles):

| key | dtype | shape | meaning |
| --- | --- | --- | --- |
| `observations` | uint8 | `[N, T, 3, H, W]` | RGB frames, channels first |
| `actions` | float32 | `[N, T, A]` | `actions[:, t]` is the action taken after seeing `observations[:, t]` |
| `action_min`, `action_max` | float32 | `[A]` | the task's `action_spec()` bounds (optional) |
| `metadata` | str (0-d) | | JSON: task, seed, action_repeat, image_size, policy, camera_id, aimespec version |

Only `observations` and `actions` are required, so that data from elsewhere loads too;
everything read is validated and a bad file is one sentence saying why (`DataError`, exit 2).
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Float32, UInt8

from aimespec.core.errors import UsageError
from aimespec.core.files import OutputError, disk_reason, kind_of, output_file, replace_into

if TYPE_CHECKING:
    from aimespec.core.config import AimeConfig

FORMAT = "aimespec-episodes/1"


class DataError(UsageError):
    """A data file or a collection request aimespec cannot use; the message says why (exit 2)."""


@dataclass(frozen=True, eq=False)
class EpisodeData:
    """`N` episodes of `T` frames: uint8 RGB observations and float32 actions, with their provenance."""

    observations: UInt8[np.ndarray, "N T C H W"]
    actions: Float32[np.ndarray, "N T A"]
    task: str = "unknown"
    action_min: Float32[np.ndarray, "A"] | None = None
    action_max: Float32[np.ndarray, "A"] | None = None
    seed: int | None = None
    action_repeat: int | None = None
    policy: str | None = None
    camera_id: int | None = None
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self.observations, self.actions, self.action_min, self.action_max, "episode data")

    @classmethod
    def from_float(cls, observations: Any, actions: Any, **metadata: Any) -> "EpisodeData":
        """Episodes from float videos in [0, 1] `[N, T, C, H, W]` (array or CPU tensor) and actions `[N, T, A]`.

        Frames are stored as uint8 (x 255, rounded), as `collect` stores rendered pixels.
        """
        frames = (np.clip(np.asarray(observations, dtype=np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)
        return cls(frames, np.asarray(actions, dtype=np.float32), **metadata)

    @property
    def num_episodes(self) -> int:
        return int(self.observations.shape[0])

    @property
    def length(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[2])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.observations.shape[3]), int(self.observations.shape[4])

    def metadata(self) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {
            **self.extra,
            "format": FORMAT,
            "task": self.task,
            "seed": self.seed,
            "action_repeat": self.action_repeat,
            "policy": self.policy,
            "camera_id": self.camera_id,
            "image_size": list(self.image_size),
            "episodes": self.num_episodes,
            "length": self.length,
            "action_dim": self.action_dim,
            "version": self.version or __version__,
        }

    def check(self, cfg: "AimeConfig", source: str = "the data") -> None:
        """Raise `DataError` unless these episodes fit `cfg` (action_dim, image_channels, input_dim)."""
        what = f"{source} ({self.task})" if self.task != "unknown" else source
        if self.action_dim != cfg.action_dim:
            hint = f"--env {self.task} or " if self.task != "unknown" else ""
            raise DataError(
                f"{what} holds actions with A = {self.action_dim} but the config's action_dim is "
                f"{cfg.action_dim}: pass {hint}--set action_dim={self.action_dim}."
            )
        channels = int(self.observations.shape[2])
        if channels != cfg.image_channels:
            raise DataError(
                f"{what} holds {channels}-channel frames but the config's image_channels is {cfg.image_channels}."
            )
        h, w = self.image_size
        if h != cfg.input_dim or w != cfg.input_dim:
            raise DataError(
                f"{what} holds {h}x{w} frames but the config's input_dim is {cfg.input_dim}: "
                f"collect with --size {cfg.input_dim} or pass --set input_dim={h}."
            )

    def save(self, path: str | Path) -> Path:
        """Write the `.npz` atomically (a temporary file renamed into place); returns the path.

        Never replaces anything but a regular file (a device, a folder: `OutputError`).
        """
        path = output_file(path, "the episodes")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {  # keyword arguments of savez_compressed
            "observations": self.observations,
            "actions": self.actions,
            "metadata": np.array(json.dumps(self.metadata())),
        }
        if self.action_min is not None and self.action_max is not None:
            arrays["action_min"] = self.action_min
            arrays["action_max"] = self.action_max
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **arrays)  # a file object: numpy appends no ".npz"
            replace_into(tmp, path, "the episodes")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


RESCUED = ("could not write {out} ({reason}); the {n} episode{s} recorded were saved to {rescue} instead: "
           "move that file where you want it")
LOST = "could not write {out} ({reason}) nor a rescue copy in {folder}: free some space and record again"


def save_or_rescue(data: EpisodeData, out: str | Path) -> Path:
    """`data.save(out)`; when that fails (a full disk, a folder made read-only meanwhile), save a copy in
    the temporary folder and raise `DataError` saying where it is: recorded episodes are never lost."""
    try:
        return data.save(out)
    except OSError as exc:
        reason = disk_reason(exc)
    folder = Path(tempfile.gettempdir())
    try:
        fd, name = tempfile.mkstemp(prefix=f"aimespec-rescued-{Path(out).stem}-", suffix=".npz", dir=folder)
        os.close(fd)
        rescue = data.save(name)
    except (OSError, OutputError):
        raise DataError(LOST.format(out=out, reason=reason, folder=folder)) from None
    n = data.num_episodes
    raise DataError(RESCUED.format(out=out, reason=reason, n=n, s="" if n == 1 else "s", rescue=rescue))


def load_episodes(path: str | Path, cfg: "AimeConfig | None" = None, *, action_dim: int | None = None) -> EpisodeData:
    """Read and validate an episodes `.npz`; with `cfg` (or `action_dim`) also check that it fits."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise DataError(f"data file {name} does not exist.")
    if path.is_dir():
        raise DataError(f"data file {name} is a directory, not an .npz file.")
    if not path.is_file():  # a FIFO or a device: opening it could block or read forever
        raise DataError(f"data file {name} is {kind_of(path.stat().st_mode)}, not an .npz file.")
    with path.open("rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(f"{name} is a single .npy array, not an .npz holding observations and actions.")
    if not magic.startswith(b"PK"):
        raise DataError(f"{name} is not an .npz file (a zip archive of numpy arrays).")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # a damaged archive fails in the zip, zlib, header-parsing or allocation layer
        reason = "it holds pickled object arrays" if "pickle" in str(exc).lower() else "it is damaged or truncated"
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"cannot read {name}: {reason} ({type(exc).__name__}: {detail}).") from exc
    missing = [key for key in ("observations", "actions") if key not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise DataError(f"{name} has no {' or '.join(repr(m) for m in missing)} array (it holds {found}).")
    meta = _metadata(arrays.get("metadata"), name)
    bounds: list[np.ndarray | None] = [arrays.get("action_min"), arrays.get("action_max")]
    if (bounds[0] is None) != (bounds[1] is None):
        raise DataError(f"{name} holds only one of action_min and action_max.")
    for i, key in enumerate(("action_min", "action_max")):
        if (bound := bounds[i]) is not None:
            bounds[i] = _float32(bound, key, name)
    known = {"task", "seed", "action_repeat", "policy", "camera_id", "version"}
    derived = {"format", "image_size", "episodes", "length", "action_dim"}
    _validate(arrays["observations"], arrays["actions"], bounds[0], bounds[1], name)
    data = EpisodeData(
        observations=arrays["observations"],
        actions=arrays["actions"],
        action_min=bounds[0],
        action_max=bounds[1],
        task=str(meta.get("task") or "unknown"),
        **{k: meta.get(k) for k in known - {"task"}},
        extra={k: v for k, v in meta.items() if k not in known | derived},
    )
    if cfg is not None:
        data.check(cfg, name)
    if action_dim is not None and data.action_dim != action_dim:
        raise DataError(f"{name} holds actions with A = {data.action_dim} but A = {action_dim} was expected.")
    return data


def _float32(array: np.ndarray, key: str, name: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{name}: {key} has dtype {array.dtype}, expected float32.")
    return array.astype(np.float32, copy=False)


def _metadata(raw: np.ndarray | None, name: str) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        meta = json.loads(str(raw.item() if raw.ndim == 0 else raw))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name}: its metadata is not a JSON record ({exc}).") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{name}: its metadata is a JSON {type(meta).__name__}, expected an object.")
    return meta


def _validate(obs: Any, act: Any, action_min: Any, action_max: Any, name: str) -> None:
    if not isinstance(obs, np.ndarray) or not isinstance(act, np.ndarray):
        raise DataError(f"{name}: observations and actions must be numpy arrays.")
    if obs.dtype != np.uint8:
        raise DataError(f"{name}: observations have dtype {obs.dtype}, expected uint8 RGB frames in [0, 255].")
    if obs.ndim != 5:
        raise DataError(f"{name}: observations have shape {list(obs.shape)}, expected 5 axes [N, T, 3, H, W].")
    if act.dtype != np.float32:
        raise DataError(f"{name}: actions have dtype {act.dtype}, expected float32.")
    if act.ndim != 3:
        raise DataError(f"{name}: actions have shape {list(act.shape)}, expected 3 axes [N, T, A].")
    n, t, c, h, w = obs.shape
    if obs.shape[:2] != act.shape[:2]:
        raise DataError(
            f"{name}: observations [N, T] = {list(obs.shape[:2])} but actions [N, T] = {list(act.shape[:2])}: "
            "they must hold the same episodes and frames."
        )
    if n < 1 or t < 1 or h < 1 or w < 1 or act.shape[2] < 1:
        raise DataError(f"{name}: observations {list(obs.shape)} / actions {list(act.shape)} have an empty axis.")
    if c != 3:
        raise DataError(
            f"{name}: observations have {c} channels on axis 2, expected 3 (RGB, channels first: [N, T, 3, H, W])."
        )
    if not np.isfinite(act).all():
        raise DataError(f"{name}: actions hold NaN or infinite values.")
    for key, bound in (("action_min", action_min), ("action_max", action_max)):
        if bound is not None and (bound.shape != (act.shape[2],) or bound.dtype != np.float32):
            raise DataError(
                f"{name}: {key} has shape {list(bound.shape)} ({bound.dtype}), expected [{act.shape[2]}] float32."
            )
