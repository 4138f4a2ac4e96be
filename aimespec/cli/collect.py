"""`aimespec collect`: record dm_control pixel episodes into an `.npz` the trainer loads."""

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from aimespec.cli.options import JsonOpt, VerboseOpt
from aimespec.cli.terminal import EXIT_USAGE, Terminal

if TYPE_CHECKING:
    from aimespec.data import PartialCollection


class PolicyName(StrEnum):
    random = "random"
    scripted = "scripted"


def collect(
    env: Annotated[str, typer.Option("--env", help="The dm_control task, DOMAIN-TASK (e.g. walker-walk).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .npz file to write.", metavar="FILE")],
    episodes: Annotated[int, typer.Option("--episodes", "-n", min=1, help="Episodes to record.")] = 10,
    length: Annotated[int, typer.Option("--length", "-T", min=1, help="Frames per episode.")] = 64,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Task and policy seed.")] = 0,
    size: Annotated[int, typer.Option("--size", min=1, max=480, help="Frame height and width in pixels.")] = 64,
    policy: Annotated[
        PolicyName, typer.Option("--policy", help="random: uniform actions; scripted: smooth sinusoids plus noise.")
    ] = PolicyName.random,
    action_repeat: Annotated[int, typer.Option("--action-repeat", min=1, help="Simulator steps per action.")] = 2,
    camera: Annotated[
        int | None, typer.Option("--camera", help="Camera id (default: 2 for quadruped, else 0).")
    ] = None,
    json_: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Record pixel episodes from a dm_control task: observations [N,T,3,S,S] uint8, actions [N,T,A] float32."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from aimespec.core.files import output_file
    from aimespec.data import PartialCollection, resolve_task, save_or_rescue
    from aimespec.data import collect as collect_episodes

    term = Terminal(verbose)
    with term.guard():
        output_file(out, "the episodes")  # a device, a folder or a read-only place fails before any work
        domain, task = resolve_task(env)  # an unknown task or missing dm_control fails before any work
        total = episodes * length
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} frames"),
            TextColumn("episode {task.fields[episode]}/{task.fields[episodes]}"),
            TextColumn("{task.fields[fps]:.1f} frames/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        started = time.perf_counter()
        with Progress(*columns, console=term.err, transient=True, disable=not term.err.is_terminal) as bar:
            job = bar.add_task(f"{domain}-{task}", total=total, episode=0, episodes=episodes, fps=0.0)

            def advance(n: int, t: int) -> None:
                done = n * length + t + 1
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(job, completed=done, episode=n + 1, fps=rate)

            try:
                data = collect_episodes(
                    env,
                    episodes,
                    length,
                    seed=seed,
                    size=size,
                    policy=policy.value,
                    action_repeat=action_repeat,
                    camera_id=camera,
                    progress=advance,
                )
            except PartialCollection as stopped:  # keep what was recorded, then say why it stopped
                _save_partial(term, stopped, out)
        elapsed = time.perf_counter() - started
        path = save_or_rescue(data, out)
    fps = total / max(elapsed, 1e-9)
    if json_:
        document = {
            "out": str(path),
            "bytes": path.stat().st_size,
            "seconds": round(elapsed, 3),
            "frames_per_second": round(fps, 2),
            "observations": list(data.observations.shape),
            "actions": list(data.actions.shape),
            **data.metadata(),
        }
        term.json(document)
    else:
        term.text(
            f"wrote {path}: {episodes} episodes x {length} frames of {data.task} "
            f"(observations {list(data.observations.shape)} uint8, actions {list(data.actions.shape)} float32, "
            f"policy {data.policy}, seed {seed}) in {elapsed:.1f} s, {fps:.1f} frames/s"
        )


def _save_partial(term: Terminal, stopped: "PartialCollection", out: Path) -> NoReturn:
    from aimespec.core.errors import UsageError
    from aimespec.data import save_or_rescue

    code = 130 if isinstance(stopped.cause, KeyboardInterrupt) else EXIT_USAGE
    try:
        path = save_or_rescue(stopped.data, out)
    except UsageError as exc:
        term.fail(f"{stopped}; {exc}", code, stopped.cause)
    term.fail(f"{stopped}; they were saved to {path}", code, stopped.cause)
