"""dm_control suite tasks: name resolution, action specs, and pixel episode collection.

dm_control is an optional dependency (the `dmc` extra) and is imported only when a task is
named. Rendering is headless: `MUJOCO_GL` defaults to `egl` on Linux, and must be chosen
before dm_control is first imported, which is why every import goes through `_suite()`.

Collection follows the usual pixel world-model protocol (PlaNet, Dreamer, AIME): each
recorded frame is `physics.render(size, size, camera_id)` (camera 2 for quadruped, else 0),
each recorded action is held for `action_repeat` (default 2) simulator steps, and
`actions[t]` is the action taken after `observations[t]` was seen. Episodes run for exactly
`length` recorded frames (the task's time limit is lifted so that no episode is cut short).
"""

import difflib
import functools
import importlib
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from einops import rearrange

from aimespec.core.errors import UsageError
from aimespec.core.limits import fits_memory, human_bytes
from aimespec.data._episodes import DataError, EpisodeData

INSTALL = "dm_control is not installed: install it with pip install 'aimespec[dmc]' (dm_control and mujoco<4)."
POLICIES = ("random", "scripted")
CAMERAS = {"quadruped": 2}
MAX_SIZE = 480  # the suite models' offscreen framebuffer is 640x480


def _suite() -> Any:
    """`dm_control.suite`, imported headless; a missing or broken install is one sentence (exit 2)."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        suite = importlib.import_module("dm_control.suite")
    except ImportError as exc:
        raise DataError(INSTALL) from exc
    except Exception as exc:  # e.g. an incompatible mujoco (4.x breaks every suite task)
        raise DataError(
            f"dm_control failed to import ({type(exc).__name__}: {exc}): reinstall it with "
            "pip install 'aimespec[dmc]', which pins a compatible mujoco (<4)."
        ) from exc
    absl = logging.getLogger("absl")
    if _quiet not in absl.filters:
        absl.addFilter(_quiet)
    return suite


def _quiet(record: logging.LogRecord) -> bool:
    """Drop MuJoCo's model-compiler deprecation notes (humanoid's `settotalmass`): noise, not news."""
    return "is deprecated and will be removed" not in record.getMessage()


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def resolve_task(env: str) -> tuple[str, str]:
    """`"walker-walk"` -> `("walker", "walk")`; underscores and hyphens are interchangeable."""
    suite = _suite()
    tasks = {_key(f"{d}-{t}"): (d, t) for d, t in suite.ALL_TASKS}
    found = tasks.get(_key(env))
    if found is not None:
        return found
    names = sorted(f"{d}-{t}" for d, t in suite.ALL_TASKS)
    close = difflib.get_close_matches(_key(env), [_key(n) for n in names], n=3, cutoff=0.6)
    domains = sorted({d for d, _ in suite.ALL_TASKS})
    domain = next((d for d in domains if _key(env) == _key(d)), None)
    if domain is not None:
        own = [t for d, t in suite.ALL_TASKS if d == domain]
        hint = f"{domain} has the tasks {', '.join(own)}; name one as DOMAIN-TASK, e.g. {domain}-{own[0]}."
    elif close:
        hint = "did you mean " + " or ".join(f"{tasks[c][0]}-{tasks[c][1]}" for c in close) + "?"
    else:
        domain = next((d for d in domains if _key(env).startswith(_key(d) + "-")), None)
        if domain is not None:
            hint = f"{domain} has the tasks " + ", ".join(t for d, t in suite.ALL_TASKS if d == domain) + "."
        else:
            hint = "the domains are " + ", ".join(domains) + " (name a task as DOMAIN-TASK, e.g. walker-walk)."
    raise DataError(f"unknown dm_control task {env!r}: {hint}")


@dataclass(frozen=True)
class ActionSpec:
    minimum: np.ndarray  # float32 [A]
    maximum: np.ndarray  # float32 [A]

    @property
    def dim(self) -> int:
        return int(self.minimum.shape[0])


@functools.cache
def _spec(domain: str, task: str) -> ActionSpec:
    env = _load(domain, task, seed=0)
    try:
        return _action_spec(env)
    finally:
        env.close()


def action_spec(env: str) -> ActionSpec:
    """The task's action bounds (cached per process)."""
    return _spec(*resolve_task(env))


def action_dim_for(env: str) -> int:
    """`A` for a dm_control task, from its `action_spec()`: walker-walk 6, humanoid-walk 21."""
    return action_spec(env).dim


def _action_spec(env: Any) -> ActionSpec:
    spec = env.action_spec()
    shape = tuple(spec.shape)
    if len(shape) != 1:
        raise DataError(f"the task's action spec has shape {list(shape)}; aimespec needs a flat [A] action vector.")
    lo = np.broadcast_to(np.asarray(getattr(spec, "minimum", -1.0), np.float64), shape)
    hi = np.broadcast_to(np.asarray(getattr(spec, "maximum", 1.0), np.float64), shape)
    # Unbounded actuators get [-1, 1] for the exploration policies; suite tasks are all bounded.
    lo = np.where(np.isfinite(lo), lo, -1.0).astype(np.float32)
    hi = np.where(np.isfinite(hi), hi, 1.0).astype(np.float32)
    return ActionSpec(lo, hi)


def _load(domain: str, task: str, seed: int) -> Any:
    suite = _suite()
    kwargs: dict[str, Any] = {"random": seed, "time_limit": math.inf}
    try:
        return suite.load(domain, task, task_kwargs=kwargs)
    except TypeError:  # a task without a time_limit argument
        kwargs.pop("time_limit")
        return suite.load(domain, task, task_kwargs=kwargs)


class _Policy:
    """Exploration actions in the spec's bounds, reproducible from one numpy Generator.

    `random`: uniform in [min, max] at every recorded step.
    `scripted`: per episode and actuator, a sinusoid with random frequency and phase plus an
    Ornstein-Uhlenbeck (smoothed random) term; smooth, varied motion that explores more of
    a locomotion task's state space than independent uniform noise does.
    """

    def __init__(self, kind: str, spec: ActionSpec, rng: np.random.Generator) -> None:
        self.kind, self.spec, self.rng = kind, spec, rng

    def reset(self) -> None:
        a = self.spec.dim
        self.t = 0
        self.freq = self.rng.uniform(0.02, 0.15, a)  # cycles per recorded step
        self.phase = self.rng.uniform(0.0, 2 * np.pi, a)
        self.amp = self.rng.uniform(0.4, 1.0, a)
        self.ou = np.zeros(a)

    def __call__(self) -> np.ndarray:
        lo, hi = self.spec.minimum.astype(np.float64), self.spec.maximum.astype(np.float64)
        if self.kind == "random":
            unit = self.rng.uniform(-1.0, 1.0, self.spec.dim)
        else:
            self.ou += -0.15 * self.ou + 0.3 * self.rng.standard_normal(self.spec.dim)
            wave = self.amp * np.sin(2 * np.pi * self.freq * self.t + self.phase)
            unit = np.clip(wave + 0.5 * self.ou, -1.0, 1.0)
        self.t += 1
        return np.clip(lo + (unit + 1.0) * 0.5 * (hi - lo), lo, hi).astype(np.float32)


def collect(
    env: str,
    episodes: int,
    length: int,
    *,
    seed: int = 0,
    size: int = 64,
    policy: str = "random",
    action_repeat: int = 2,
    camera_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EpisodeData:
    """Collect `episodes` pixel episodes of `length` frames from a dm_control task.

    Returns `observations [episodes, length, 3, size, size] uint8` and
    `actions [episodes, length, A] float32`, reproducible from `seed` (task and policy
    randomness). `progress(episode, frame)` is called after every recorded frame.
    """
    _check_request(episodes, length, size, policy, action_repeat, seed)
    domain, task = resolve_task(env)
    name = f"{domain}-{task}"
    camera = CAMERAS.get(domain, 0) if camera_id is None else int(camera_id)
    denv = _load(domain, task, seed)
    n = 0
    try:
        spec = _action_spec(denv)
        pi = _Policy(policy, spec, np.random.default_rng([seed, 0x41494D45]))
        obs = _allocate((episodes, length, 3, size, size), np.uint8, "observations")
        act = _allocate((episodes, length, spec.dim), np.float32, "actions")
        for n in range(episodes):
            denv.reset()
            pi.reset()
            for t in range(length):
                obs[n, t] = _render(denv.physics, size, camera, name)
                act[n, t] = pi()
                if t + 1 < length:  # the last action is recorded but its outcome is not needed
                    for _ in range(action_repeat):
                        denv.step(act[n, t])
                if progress is not None:
                    progress(n, t)
    except BaseException as exc:  # keep the episodes already recorded: the caller saves them
        if n == 0 or "act" not in locals():
            raise
        partial = _episodes(obs[:n], act[:n], name, spec, seed, action_repeat, policy, camera)
        raise PartialCollection(partial, exc) from exc
    finally:
        denv.close()
    return _episodes(obs, act, name, spec, seed, action_repeat, policy, camera)


class PartialCollection(DataError):
    """Collection stopped after some complete episodes (`data`); `cause` is why (an error, an interrupt)."""

    def __init__(self, data: EpisodeData, cause: BaseException) -> None:
        self.data, self.cause = data, cause
        text = " ".join(str(cause).split()) or type(cause).__name__
        super().__init__(f"collection stopped after {data.num_episodes} complete episode"
                         f"{'' if data.num_episodes == 1 else 's'} ({text})")


def _allocate(shape: tuple[int, ...], dtype: Any, what: str) -> np.ndarray:
    size = math.prod(shape) * np.dtype(dtype).itemsize
    advice = "record fewer or shorter episodes, or smaller frames."
    try:
        fits_memory(size, f"the {what} {list(shape)}", advice)
        return np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError, UsageError) as exc:
        raise DataError(str(exc) if isinstance(exc, UsageError) else
                        f"cannot hold the {what} {list(shape)} ({human_bytes(size)}) in memory: {advice}") from exc


def _episodes(obs: np.ndarray, act: np.ndarray, name: str, spec: "ActionSpec", seed: int, action_repeat: int,
              policy: str, camera: int) -> EpisodeData:
    from aimespec.core.version import __version__

    return EpisodeData(
        observations=obs,
        actions=act,
        task=name,
        action_min=spec.minimum,
        action_max=spec.maximum,
        seed=seed,
        action_repeat=action_repeat,
        policy=policy,
        camera_id=camera,
        version=__version__,
    )


def _render(physics: Any, size: int, camera: int, name: str) -> np.ndarray:
    try:
        frame = physics.render(size, size, camera_id=camera)
    except Exception as exc:
        if isinstance(exc, ValueError):  # a camera the model lacks, or a frame larger than its framebuffer
            reason = str(exc).splitlines()[0]
            raise DataError(f"{name} cannot render {size}x{size} frames from camera {camera}: {reason}") from exc
        gl = os.environ.get("MUJOCO_GL", "unset")
        raise DataError(
            f"rendering {name} failed with MUJOCO_GL={gl} ({type(exc).__name__}: {exc}): "
            "try MUJOCO_GL=egl, osmesa or glfw."
        ) from exc
    return rearrange(frame, "h w c -> c h w")


def _check_request(episodes: int, length: int, size: int, policy: str, action_repeat: int, seed: int) -> None:
    for label, value in (("episodes", episodes), ("length", length), ("action_repeat", action_repeat)):
        if not isinstance(value, int) or value < 1:
            raise DataError(f"{label} must be a positive integer, got {value!r}.")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DataError(f"the seed must be an integer in [0, 2**32), got {seed!r}.")
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise DataError(f"the image size must be an integer in [1, {MAX_SIZE}], got {size!r}.")
    if policy not in POLICIES:
        raise DataError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}.")
