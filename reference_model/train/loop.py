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

ProgressFn = Callable[[int, int, dict[str, float]], None]  # (step, total steps, the step's report)
TASKS = ("elbo", "perceiver", "predictive", "adversarial")


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


def _nonfinite_guard(trainer: Any, d: ddp.Distributed) -> None:
    """Make the Trainer's finiteness check name the bad terms and agree across processes
    (every rank stops at the same step, none waits in a collective for a rank that stopped)."""
    from reference_model.trainer import NonFiniteLoss

    def ensure_finite(losses: Any) -> None:
        items = losses.items()
        values = torch.stack([v.detach().reshape(()).float() for v in items.values()]).cpu()
        status = ddp.worst(d, torch.isinf(values).float() + 2 * torch.isnan(values).float())
        bad = {name: (math.nan if s >= 2 else math.inf) for name, s in zip(items, status.tolist(), strict=True) if s}
        if bad:
            raise NonFiniteLoss(f"non-finite loss at step {trainer.step_count}: "
                                + ", ".join(f"{k}={v}" for k, v in bad.items()), bad)

    trainer.ensure_finite = ensure_finite


def _stopped(exc: Exception, step: int, kept: int | None, ckpt: Path) -> TrainingStopped:
    """One sentence: the term(s), the step, and the checkpoint left on disk."""
    from reference_model.losses import TERMS

    bad: dict[str, float] = getattr(exc, "terms", None) or {}  # carried by NonFiniteLoss, never parsed
    terms = [k for k in bad if k in TERMS or k not in TASKS] or list(bad) or ["unknown"]
    kind = "NaN" if any(math.isnan(bad.get(k, math.nan)) for k in terms) else "infinite"
    named = ", ".join(terms)
    tasks = [k for k in bad if k in TASKS and k not in terms]
    also = f" (so is {', '.join(tasks)})" if tasks else ""
    where = (f"the last good checkpoint {ckpt} (step {kept}) is kept" if kept is not None
             else "no checkpoint was written")
    message = f"training stopped at step {step}: loss term {named} is {kind}{also}; {where}."
    return TrainingStopped(message, step=step, terms=terms, checkpoint_step=kept)


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
) -> TrainResult:
    """Train `AimeWorldModel(cfg)` on the episodes in `data_path` until `steps` steps are done.

    `cfg=None`: the checkpoint's config on a resume, else `AimeConfig()`. `seed` (default 0)
    fixes the initial weights, the data order and the noise. `deterministic`: per-example
    noise keyed by the loader's row seeds and `torch.use_deterministic_algorithms` (a run is
    then reproducible and independent of how the batch is split over processes; per-example
    noise is always on under torchrun). `figure_every` / `checkpoint_every` (0: only at the
    end). Raises `DataError`/`UsageError` (exit 2) for bad input, `TrainingStopped` (exit 1)
    when a loss becomes NaN/Inf, keeping the last good checkpoint.
    """
    from reference_model.trainer import NonFiniteLoss, Trainer
    from reference_model.world import build_model

    if not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps!r}.")
    for name, every in (("figure_every", figure_every), ("checkpoint_every", checkpoint_every),
                        ("log_every", log_every)):
        if not isinstance(every, int) or every < 0:
            raise UsageError(f"{name} must be a non-negative integer, got {every!r}.")
    out = check_run_folder(Path(out_dir))  # a file, a device, a read-only folder: exit 2 before any work
    if isinstance(device, str):
        device = device_name(device)
    if seed is not None:
        seed_value(seed)
    ckpt_path, log_path = out / CHECKPOINT, out / LOG
    state: dict[str, Any] | None = None
    if resume:
        state = load_checkpoint(ckpt_path)
        cfg, seed, deterministic = _resume_settings(state, cfg, seed, deterministic)
    elif ckpt_path.exists():
        raise UsageError(f"{out} already holds a checkpoint: pass --resume to continue it, or train into a new --out.")
    cfg = cfg if cfg is not None else AimeConfig()
    seed = 0 if seed is None else int(seed)
    deterministic = bool(deterministic)
    if seed < 0:
        raise UsageError(f"the seed must be a non-negative integer, got {seed}.")

    data = _load_data(data_path, cfg)
    if state is not None and state["data"]["shape"] != [data.num_episodes, data.length, data.action_dim]:
        raise UsageError(
            f"the checkpoint was trained on episodes [N, T, A] = {state['data']['shape']} but {data_path} holds "
            f"{[data.num_episodes, data.length, data.action_dim]}: resume on the same data."
        )
    d = ddp.setup(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    clean = False
    try:
        rows = batch_size_for(data, cfg.batch_size, replacement)
        mine = ddp.shard(d, rows)
        local_rows = mine.stop - mine.start
        per_example = deterministic or d.enabled
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
            torch.use_deterministic_algorithms(True)

        torch.manual_seed(seed)
        model = build_model(cfg).to(d.device)
        ddp.broadcast_parameters(d, model)
        reducer = ddp.make_grad_reducer(d, local_rows, rows) if d.enabled else None
        trainer = Trainer(model, cfg, grad_reducer=reducer, seed_base=seed)
        elapsed_before = 0.0
        if state is not None:
            restore_trainer(trainer, state, ckpt_path)  # also torch's RNG; a misfit is one sentence
            _balancer_to(trainer.balancer, d.device)
            if d.device.type == "cuda" and state["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            elapsed_before = float(state.get("elapsed", 0.0))
        _nonfinite_guard(trainer, d)
        first = trainer.step_count

        def snapshot() -> dict[str, Any]:
            cuda = torch.cuda.get_rng_state_all() if d.device.type == "cuda" else None
            return {
                "step": trainer.step_count, "trainer": trainer.state_dict(), "config": cfg.to_dict(), "seed": seed,
                "deterministic": deterministic, "rng": {"torch": torch.get_rng_state(), "cuda": cuda},
                "data": {"path": str(data_path), "task": data.task,
                         "shape": [data.num_episodes, data.length, data.action_dim]},
                "elapsed": elapsed_before + spent, "world_size": d.world_size,
            }

        fig_obs = torch.from_numpy(data.observations[:2, : cfg.sequence_length]).float().div(255).to(d.device)
        fig_act = torch.from_numpy(np.ascontiguousarray(data.actions[:2, : cfg.sequence_length])).to(d.device)

        def figure(step: int, report: dict[str, float]) -> Path:
            from reference_model import noise

            model.eval()
            with torch.no_grad(), noise.per_example([seed + i for i in range(fig_obs.shape[0])]):
                outputs = model.forward_sequence(fig_obs, fig_act)  # never touches the global RNG
            model.train()
            losses = "  ".join(f"{k} {report[k]:.4g}" for k in TASKS if k in report)
            task = f"  {data.task}" if data.task != "unknown" else ""  # files from elsewhere may not name one
            image = figures.render(fig_obs, outputs, title=f"step {step}{task}  {losses}")
            return figures.save(image, out / "figures" / f"step_{step:06d}.png")

        log = JsonLog(log_path, keep_until=first if state is not None else None) if d.is_main else None
        reporter = TrainProgress() if progress is True else progress if isinstance(progress, TrainProgress) else None
        callback = progress if callable(progress) and not isinstance(progress, TrainProgress) else None
        if reporter is not None and d.is_main:
            reporter.start(first, steps)
        written: list[Path] = []
        saved_step = first if state is not None else None
        report: dict[str, float] = {}
        spent = 0.0
        stream = batch_stream(data, cfg, seed, first, replacement)
        per_epoch = max(1, (-(-data.num_episodes // cfg.batch_size)) if replacement else data.num_episodes // rows)
        try:
            for step in range(first + 1, steps + 1):
                batch = next(stream)
                obs, act = batch.observations[mine].to(d.device), batch.actions[mine].to(d.device)
                ids = batch.seeds[mine].tolist() if per_example else None
                started = time.perf_counter()
                try:
                    local = trainer.step(obs, act, ids)
                except NonFiniteLoss as exc:
                    # the generator's check fires before any update: the state after step - 1 is good
                    # (every rank agreed on it, and their parameters are the same)
                    clean = hasattr(exc, "terms") and trainer.step_count == step - 1
                    if clean and step > 1 and saved_step != step - 1 and finite_parameters(model.state_dict()):
                        if d.is_main:
                            save_checkpoint(ckpt_path, snapshot())
                        saved_step = step - 1
                    if clean:
                        ddp.barrier(d)  # the others wait for rank 0's checkpoint before the group ends
                    raise _stopped(exc, step, saved_step, ckpt_path) from exc
                report = ddp.reduce_report(d, local, local_rows, rows)
                seconds = time.perf_counter() - started
                spent += seconds
                if log is not None and log_every and (step % log_every == 0 or step == steps):
                    record = {"step": step, "time": round(time.time(), 3), "elapsed": round(elapsed_before + spent, 4),
                              "seconds": round(seconds, 4), "epoch": (step - 1) // per_epoch, "rows": rows}
                    record.update({k: report[k] for k in TASKS if k in report})
                    record.update({k: v for k, v in report.items() if k not in record})
                    log.write(record)
                if d.is_main:
                    if reporter is not None:
                        reporter.update(step, report, seconds)
                    if callback is not None:
                        callback(step, steps, report)
                    if checkpoint_every and step % checkpoint_every == 0:
                        save_checkpoint(ckpt_path, snapshot())
                        saved_step = step
                    if figure_every and step % figure_every == 0:
                        written.append(figure(step, report))
            if d.is_main:
                if saved_step != trainer.step_count:
                    save_checkpoint(ckpt_path, snapshot())
                if not written or written[-1].name != f"step_{trainer.step_count:06d}.png":
                    written.append(figure(trainer.step_count, report))  # always one at the end
        finally:
            if reporter is not None and d.is_main:
                reporter.stop()
            if log is not None:
                log.close()
        clean = True
        return TrainResult(
            out_dir=out, first_step=first, step=trainer.step_count, losses=report, seconds=spent,
            log_path=log_path, checkpoint_path=ckpt_path, figures=written, world_size=d.world_size,
        )
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        ddp.teardown(d, clean=clean)


__all__ = ["TrainResult", "TrainingStopped", "batch_stream", "epoch_seed", "train"]
