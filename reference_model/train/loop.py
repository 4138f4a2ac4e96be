"""The training loop: episodes on disk -> `Trainer.step` -> log, checkpoints, figures.

One step draws the global batch (`min(batch_size, N)` episodes cropped to `sequence_length`
frames, each epoch a fresh permutation from `(seed, epoch)`), keeps this process's slice
(all of it in a single process), runs one RGB-balanced `Trainer.step` and appends the global
batch's losses to `log.jsonl`. A resume reloads the whole training state and continues the
step count, the data order and the noise stream exactly where the checkpoint left them.
"""

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aimespec import AimeConfig, AimespecError, UsageError, device_name, seed_value
from aimespec.data import Batch, DataError, EpisodeData, batch_size_for, batches, load_episodes
from reference_model import noise
from reference_model.losses import TASKS, TERMS
from reference_model.train import distributed as ddp
from reference_model.train import figures as figures
from reference_model.train.checkpoint import (
    CHECKPOINT,
    LOG,
    JsonLog,
    check_run_folder,
    finite_parameters,
    load_checkpoint,
    restore_trainer,
    save_checkpoint,
)
from reference_model.train.progress import TrainProgress
from reference_model.trainer import BALANCE_AT, BalanceAt, NonFiniteLoss, Trainer
from reference_model.world import build_model

ProgressFn = Callable[[int, int, dict[str, float]], None]  # (step, total steps, the step's report)


class TrainingStopped(AimespecError):
    """A loss or sub-term became NaN/Inf: training stopped before updating on it (exit 1)."""

    def __init__(self, message: str, *, step: int, terms: list[str], checkpoint_step: int | None) -> None:
        super().__init__(message)
        self.step, self.terms, self.checkpoint_step = step, terms, checkpoint_step


@dataclass
class TrainResult:
    """What a run did: steps `first_step + 1 .. step`, the last step's losses, its files."""

    out_dir: Path
    first_step: int
    step: int
    losses: dict[str, float]
    seconds: float
    log_path: Path
    checkpoint_path: Path
    figures: list[Path] = field(default_factory=list)
    world_size: int = 1

    @property
    def steps_run(self) -> int:
        return self.step - self.first_step

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps_run, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir), "first_step": self.first_step, "step": self.step, "steps_run": self.steps_run,
            "seconds": round(self.seconds, 3), "seconds_per_step": round(self.seconds_per_step, 4),
            "losses": self.losses, "log": str(self.log_path), "checkpoint": str(self.checkpoint_path),
            "figures": [str(p) for p in self.figures], "world_size": self.world_size,
        }


def epoch_seed(seed: int, epoch: int) -> int:
    """The loader seed of one epoch: a resume can rebuild any epoch without replaying the others."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 2)


def batch_stream(data: EpisodeData, cfg: AimeConfig, seed: int, start: int, replacement: bool) -> Iterator[Batch]:
    """The global batches of steps `start + 1, start + 2, ...`, the same on every process and every resume."""
    n = data.num_episodes
    per_epoch = -(-n // cfg.batch_size) if replacement else n // batch_size_for(data, cfg.batch_size)
    epoch, skip = divmod(start, per_epoch)
    while True:
        stream = batches(data, cfg.batch_size, cfg.sequence_length, seed=epoch_seed(seed, epoch),
                         num_batches=per_epoch, replacement=replacement)
        for i, batch in enumerate(stream):
            if i >= skip:
                yield batch
        skip, epoch = 0, epoch + 1


def _load_data(data_path: str | Path, cfg: AimeConfig) -> EpisodeData:
    data = load_episodes(data_path, cfg)  # DataError (exit 2) names a mismatch and the --set that fixes it
    if data.length < cfg.sequence_length:
        raise DataError(
            f"{data_path} holds episodes of {data.length} frames but the config's sequence_length is "
            f"{cfg.sequence_length}: pass --set sequence_length={data.length} or collect with --length "
            f"{cfg.sequence_length}."
        )
    return data


def _resume_settings(state: dict[str, Any], cfg: AimeConfig | None, seed: int | None,
                     deterministic: bool | None) -> tuple[AimeConfig, int, bool]:
    saved = AimeConfig.from_mapping(state["config"], source="the checkpoint")
    if cfg is not None and cfg != saved:
        old, new = saved.to_dict(), cfg.to_dict()
        diff = ", ".join(f"{k} {old[k]} -> {new[k]}" for k in old if old[k] != new[k])
        raise UsageError(
            f"the checkpoint was trained with another config ({diff}): resume without --set/--config/--env "
            "or train into a new --out."
        )
    for name, given, kept in (("seed", seed, state["seed"]), ("deterministic", deterministic, state["deterministic"])):
        if given is not None and given != kept:
            raise UsageError(
                f"the checkpoint was trained with {name}={kept}, not {given}: resume with the same {name}."
            )
    return saved, int(state["seed"]), bool(state["deterministic"])


def _balancer_to(balancer: Any, device: torch.device) -> None:
    """The checkpoint is read onto the CPU: bring the balancer's carried tensors (RGB's consensus)
    to the training device (`Trainer.load_state_dict` restores them as saved)."""
    for key, value in vars(balancer).items():
        if torch.is_tensor(value) and value.device != device:
            setattr(balancer, key, value.to(device))


def _stopped(exc: NonFiniteLoss, step: int, kept: int | None, ckpt: Path) -> TrainingStopped:
    """One sentence: the term(s), the step, and the checkpoint left on disk."""
    bad = exc.terms
    terms = [k for k in bad if k in TERMS or k not in TASKS] or list(bad) or ["unknown"]
    kind = "NaN" if any(math.isnan(bad.get(k, math.nan)) for k in terms) else "infinite"
    named = ", ".join(terms)
    tasks = [k for k in bad if k in TASKS and k not in terms]
    also = f" (so is {', '.join(tasks)})" if tasks else ""
    where = (f"the last good checkpoint {ckpt} (step {kept}) is kept" if kept is not None
             else "no checkpoint was written")
    message = f"training stopped at step {step}: loss term {named} is {kind}{also}; {where}."
    return TrainingStopped(message, step=step, terms=terms, checkpoint_step=kept)


def _check_counts(steps: int, **every: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps!r}.")
    for name, value in every.items():
        if not isinstance(value, int) or value < 0:
            raise UsageError(f"{name} must be a non-negative integer, got {value!r}.")


@dataclass(frozen=True)
class _Settings:
    """What a run trains with: the config, seed and determinism (a resume's come from its checkpoint)."""

    cfg: AimeConfig
    seed: int
    deterministic: bool
    state: dict[str, Any] | None  # the checkpoint a resume continues


def _settings(out: Path, resume: bool, cfg: AimeConfig | None, seed: int | None,
              deterministic: bool | None) -> _Settings:
    ckpt_path = out / CHECKPOINT
    state: dict[str, Any] | None = None
    if resume:
        state = load_checkpoint(ckpt_path)
        cfg, seed, deterministic = _resume_settings(state, cfg, seed, deterministic)
    elif ckpt_path.exists():
        raise UsageError(f"{out} already holds a checkpoint: pass --resume to continue it, or train into a new --out.")
    seed = 0 if seed is None else int(seed)
    if seed < 0:
        raise UsageError(f"the seed must be a non-negative integer, got {seed}.")
    return _Settings(cfg if cfg is not None else AimeConfig(), seed, bool(deterministic), state)


def _check_same_data(state: dict[str, Any] | None, data: EpisodeData, data_path: str | Path) -> None:
    shape = [data.num_episodes, data.length, data.action_dim]
    if state is not None and state["data"]["shape"] != shape:
        raise UsageError(
            f"the checkpoint was trained on episodes [N, T, A] = {state['data']['shape']} but {data_path} holds "
            f"{shape}: resume on the same data."
        )


@dataclass
class _Run:
    """One training run in progress: the model and trainer, the data slice, logs and checkpoints."""

    settings: _Settings
    data: EpisodeData
    data_path: str | Path
    d: ddp.Distributed
    out: Path
    replacement: bool
    figure_every: int
    checkpoint_every: int
    log_every: int
    balance_at: BalanceAt = "parameters"
    trainer: Trainer = field(init=False)
    rows: int = field(init=False)
    mine: slice = field(init=False)
    first: int = 0
    elapsed_before: float = 0.0
    spent: float = 0.0
    saved_step: int | None = None
    report: dict[str, float] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    clean: bool = False  # the run ended where every process agrees (teardown may wait for the others)
    log: JsonLog | None = None
    reporter: TrainProgress | None = None
    callback: ProgressFn | None = None

    @property
    def cfg(self) -> AimeConfig:
        return self.settings.cfg

    @property
    def ckpt_path(self) -> Path:
        return self.out / CHECKPOINT

    @property
    def log_path(self) -> Path:
        return self.out / LOG

    @property
    def local_rows(self) -> int:
        return self.mine.stop - self.mine.start

    # --- setting up ---------------------------------------------------------------------
    def build(self) -> None:
        """The model, its trainer (restored on a resume) and this process's rows of each batch."""
        cfg, d, state = self.cfg, self.d, self.settings.state
        self.rows = batch_size_for(self.data, cfg.batch_size, self.replacement)
        self.mine = ddp.shard(d, self.rows)
        if self.settings.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(self.settings.seed)
        model = build_model(cfg).to(d.device)
        ddp.broadcast_parameters(d, model)
        reducer = ddp.make_grad_reducer(self.local_rows, self.rows) if d.enabled else None
        self.trainer = Trainer(model, cfg, grad_reducer=reducer, status_reducer=lambda s: ddp.worst(d, s),
                               balance_at=self.balance_at, seed_base=self.settings.seed)
        if state is not None:
            self.restore(state)
        self.first = self.trainer.step_count
        self.saved_step = self.first if state is not None else None

    def restore(self, state: dict[str, Any]) -> None:
        restore_trainer(self.trainer, state, self.ckpt_path)  # also torch's RNG; a misfit is one sentence
        _balancer_to(self.trainer.balancer, self.d.device)
        if self.d.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.elapsed_before = float(state.get("elapsed", 0.0))

    def open_outputs(self, steps: int, progress: bool | ProgressFn | TrainProgress) -> None:
        """The log (continued on a resume) and the progress display, on the main process."""
        if not self.d.is_main:
            return
        keep = self.first if self.settings.state is not None else None
        self.log = JsonLog(self.log_path, keep_until=keep)
        if progress is True:
            self.reporter = TrainProgress()
        elif isinstance(progress, TrainProgress):
            self.reporter = progress
        elif callable(progress):
            self.callback = progress
        if self.reporter is not None:
            self.reporter.start(self.first, steps)

    def close_outputs(self) -> None:
        if self.reporter is not None:
            self.reporter.stop()
        if self.log is not None:
            self.log.close()

    # --- what a run writes ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        d, data, s = self.d, self.data, self.settings
        cuda = torch.cuda.get_rng_state_all() if d.device.type == "cuda" else None
        return {
            "step": self.trainer.step_count, "trainer": self.trainer.state_dict(), "config": self.cfg.to_dict(),
            "seed": s.seed, "deterministic": s.deterministic, "rng": {"torch": torch.get_rng_state(), "cuda": cuda},
            "data": {"path": str(self.data_path), "task": data.task,
                     "shape": [data.num_episodes, data.length, data.action_dim]},
            "elapsed": self.elapsed_before + self.spent, "world_size": d.world_size,
        }

    def save(self) -> None:
        save_checkpoint(self.ckpt_path, self.snapshot())
        self.saved_step = self.trainer.step_count

    def figure(self, step: int) -> Path:
        """The first two episodes through the model (per-example noise: the global RNG is untouched)."""
        cfg, data, model = self.cfg, self.data, self.trainer.model
        obs = torch.from_numpy(data.observations[:2, : cfg.sequence_length]).float().div(255).to(self.d.device)
        act = torch.from_numpy(np.ascontiguousarray(data.actions[:2, : cfg.sequence_length])).to(self.d.device)
        model.eval()
        with torch.no_grad(), noise.per_example([self.settings.seed + i for i in range(obs.shape[0])]):
            outputs = model.forward_sequence(obs, act)
        model.train()
        losses = "  ".join(f"{k} {self.report[k]:.4g}" for k in TASKS if k in self.report)
        task = f"  {data.task}" if data.task != "unknown" else ""  # files from elsewhere may not name one
        image = figures.render(obs, outputs, title=f"step {step}{task}  {losses}")
        return figures.save(image, self.out / "figures" / f"step_{step:06d}.png")

    def write_log(self, step: int, steps: int, seconds: float) -> None:
        if self.log is None or not self.log_every or (step % self.log_every and step != steps):
            return
        per_epoch = max(1, -(-self.data.num_episodes // self.cfg.batch_size) if self.replacement
                        else self.data.num_episodes // self.rows)
        record: dict[str, Any] = {
            "step": step, "time": round(time.time(), 3), "elapsed": round(self.elapsed_before + self.spent, 4),
            "seconds": round(seconds, 4), "epoch": (step - 1) // per_epoch, "rows": self.rows,
        }
        record.update({k: self.report[k] for k in TASKS if k in self.report})
        record.update({k: v for k, v in self.report.items() if k not in record})
        self.log.write(record)

    # --- the loop ---------------------------------------------------------------------------
    def step(self, step: int, batch: Batch) -> float:
        """One `Trainer.step` on this process's rows; the global batch's report; its seconds."""
        d, mine = self.d, self.mine
        obs, act = batch.observations[mine].to(d.device), batch.actions[mine].to(d.device)
        per_example = self.settings.deterministic or d.enabled
        ids = batch.seeds[mine].tolist() if per_example else None
        started = time.perf_counter()
        try:
            local = self.trainer.step(obs, act, ids)
        except NonFiniteLoss as exc:
            raise self.stop(exc, step) from exc
        self.report = ddp.reduce_report(d, local, self.local_rows, self.rows)
        seconds = time.perf_counter() - started
        self.spent += seconds
        return seconds

    def stop(self, exc: NonFiniteLoss, step: int) -> TrainingStopped:
        """The losses' check fires before any update, agreed by every rank: the state after
        step - 1 is good (and the same everywhere), so it is checkpointed unless it already is."""
        self.clean = exc.stage == "losses" and self.trainer.step_count == step - 1
        if self.clean:
            if step > 1 and self.saved_step != step - 1 and finite_parameters(self.trainer.model.state_dict()):
                if self.d.is_main:
                    save_checkpoint(self.ckpt_path, self.snapshot())
                self.saved_step = step - 1
            ddp.barrier(self.d)  # the others wait for rank 0's checkpoint before the group ends
        return _stopped(exc, step, self.saved_step, self.ckpt_path)

    def after_step(self, step: int, steps: int, seconds: float) -> None:
        self.write_log(step, steps, seconds)
        if not self.d.is_main:
            return
        if self.reporter is not None:
            self.reporter.update(step, self.report)
        if self.callback is not None:
            self.callback(step, steps, self.report)
        if self.checkpoint_every and step % self.checkpoint_every == 0:
            self.save()
        if self.figure_every and step % self.figure_every == 0:
            self.written.append(self.figure(step))

    def finish(self) -> None:
        """The final checkpoint and figure (on the main process), unless the last step wrote them."""
        if not self.d.is_main:
            return
        step = self.trainer.step_count
        if self.saved_step != step:
            self.save()
        if not self.written or self.written[-1].name != f"step_{step:06d}.png":
            self.written.append(self.figure(step))  # always one at the end

    def run(self, steps: int) -> TrainResult:
        stream = batch_stream(self.data, self.cfg, self.settings.seed, self.first, self.replacement)
        for step in range(self.first + 1, steps + 1):
            seconds = self.step(step, next(stream))
            self.after_step(step, steps, seconds)
        self.finish()
        return TrainResult(
            out_dir=self.out, first_step=self.first, step=self.trainer.step_count, losses=self.report,
            seconds=self.spent, log_path=self.log_path, checkpoint_path=self.ckpt_path, figures=self.written,
            world_size=self.d.world_size,
        )


def train(
    data_path: str | Path,
    cfg: AimeConfig | None = None,
    *,
    steps: int,
    out_dir: str | Path,
    resume: bool = False,
    seed: int | None = None,
    figure_every: int = 100,
    checkpoint_every: int = 100,
    log_every: int = 1,
    progress: bool | ProgressFn | TrainProgress = True,
    deterministic: bool | None = None,
    device: str | torch.device | None = None,
    replacement: bool = False,
    balance_at: BalanceAt = "parameters",
) -> TrainResult:
    """Train `AimeWorldModel(cfg)` on the episodes in `data_path` until `steps` steps are done.

    `cfg=None`: the checkpoint's config on a resume, else `AimeConfig()`. `seed` (default 0)
    fixes the initial weights, the data order and the noise. `deterministic`: per-example
    noise keyed by the loader's row seeds and `torch.use_deterministic_algorithms` (a run is
    then reproducible and independent of how the batch is split over processes; per-example
    noise is always on under torchrun). `figure_every` / `checkpoint_every` (0: only at the
    end). `balance_at`: "parameters" (RGB over the task gradients, the seed's method) or
    "outputs" (approximate and ~2x faster at the default config: see `reference_model.trainer`).
    Raises `DataError`/`UsageError` (exit 2) for bad input, `TrainingStopped` (exit 1)
    when a loss becomes NaN/Inf, keeping the last good checkpoint.
    """
    if balance_at not in BALANCE_AT:
        raise UsageError(f"balance_at must be one of {', '.join(BALANCE_AT)}, got {balance_at!r}.")
    _check_counts(steps, figure_every=figure_every, checkpoint_every=checkpoint_every, log_every=log_every)
    out = check_run_folder(Path(out_dir))  # a file, a device, a read-only folder: exit 2 before any work
    if isinstance(device, str):
        device = device_name(device)
    if seed is not None:
        seed_value(seed)
    settings = _settings(out, resume, cfg, seed, deterministic)
    data = _load_data(data_path, settings.cfg)
    _check_same_data(settings.state, data, data_path)
    d = ddp.setup(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    run = _Run(settings, data, data_path, d, out, replacement, figure_every, checkpoint_every, log_every, balance_at)
    try:
        run.build()
        run.open_outputs(steps, progress)
        try:
            result = run.run(steps)
        finally:
            run.close_outputs()
        run.clean = True
        return result
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        ddp.teardown(d, clean=run.clean)


__all__ = ["TrainResult", "TrainingStopped", "batch_stream", "epoch_seed", "train"]
