"""`aimespec train`: train the reference world model on collected episodes.

    aimespec collect --env walker-walk --episodes 20 --length 32 --out walker.npz
    aimespec train --data walker.npz --steps 1000 --out runs/walker
    aimespec train --data walker.npz --steps 2000 --out runs/walker --resume
    torchrun --nproc_per_node=2 -m aimespec.cli train --data walker.npz --out runs/ddp --deterministic

Exit codes: 0 trained; 1 a loss became NaN/Inf (or a contract broke) and training stopped,
keeping the last good checkpoint; 2 bad input (data file, config, a mismatch between them).
Under torchrun only rank 0 prints.
"""

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from aimespec.cli.options import ConfigOpt, EnvOpt, JsonOpt, SetOpt, VerboseOpt, load_config
from aimespec.cli.terminal import EXIT_FOUND, EXIT_USAGE, Terminal


def _stop(term: Terminal, main_rank: bool, message: str, code: int, exc: BaseException) -> NoReturn:
    if main_rank:
        term.fail(message, code, exc)
    raise typer.Exit(code)


def train(
    data: Annotated[Path, typer.Option("--data", "-d", help="The episodes .npz (from `aimespec collect`).",
                                       metavar="FILE")],
    steps: Annotated[int, typer.Option("--steps", "-n", min=1, help="Train until this many steps are done.")] = 1000,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: log.jsonl, checkpoint.pt, figures/.",
                                      metavar="DIR")] = Path("runs/aime"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --out (step count, "
                                         "data order, noise).")] = False,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Initial weights, data order and noise "
                                             "(default 0; a resume keeps its own).")] = None,
    figure_every: Annotated[int, typer.Option("--figure-every", min=0, help="Write a figure every N steps "
                                              "(0: only at the end).")] = 100,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=0, help="Checkpoint every N steps "
                                                  "(0: only at the end).")] = 100,
    log_every: Annotated[int, typer.Option("--log-every", min=1, help="Append to log.jsonl every N steps.")] = 1,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Per-example noise from the data "
                                                "seeds and deterministic torch kernels: reproducible, "
                                                "independent of the process count.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    balance_at: Annotated[str, typer.Option("--balance-at", help="Where RGB balances the four tasks: parameters "
                                            "(the task gradients, exact) or outputs (approximate, one backward "
                                            "pass: ~2x faster at the default config).")] = "parameters",
    sets: SetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    json_: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train the reference AIME world model on collected episodes: live losses, log.jsonl, checkpoints, figures."""
    from aimespec import ContractViolation, UsageError, allocation_failure, disk_reason
    from reference_model.train import TrainingStopped
    from reference_model.train import train as run_training

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 speaks
    term = Terminal(verbose)
    try:
        cfg = None if resume and not (sets or config or env is not None) else load_config(config, sets, env)
        result = run_training(
            data, cfg, steps=steps, out_dir=out, resume=resume, seed=seed, figure_every=figure_every,
            checkpoint_every=checkpoint_every, log_every=log_every, progress=main_rank and not json_,
            deterministic=True if deterministic else None, device=device,
            balance_at=balance_at,  # type: ignore[arg-type]  # train() judges it (a UsageError: exit 2)
        )
    except (TrainingStopped, ContractViolation) as exc:
        _stop(term, main_rank, str(exc), EXIT_FOUND, exc)
    except UsageError as exc:  # the user's input (only these: any other exception is a bug, exit 3)
        _stop(term, main_rank, str(exc), EXIT_USAGE, exc)
    except OSError as exc:  # a full disk or a folder made read-only mid-run: every save was atomic
        where = f" {exc.filename}" if exc.filename else ""
        _stop(term, main_rank, f"could not write{where} ({disk_reason(exc)}); {out / 'checkpoint.pt'} keeps "
              "the last checkpoint written: free some space and continue with --resume.", EXIT_USAGE, exc)
    except (MemoryError, RuntimeError) as exc:
        failure = allocation_failure(exc)
        if failure is None:
            term.bug(exc)
        _stop(term, main_rank, f"{failure}: the model at this config does not fit in memory; lower its sizes "
              "(--set hidden_dim=..., batch_size=...).", EXIT_USAGE, exc)
    except KeyboardInterrupt as exc:
        _stop(term, main_rank, f"interrupted: {out / 'checkpoint.pt'} keeps the last checkpoint "
              "(continue with --resume).", 130, exc)
    except Exception as exc:  # not the user's input: a bug, shown with its traceback (exit 3)
        term.bug(exc)
    if not main_rank:
        return
    if json_:
        from aimespec import __version__

        term.json({"version": __version__, **result.to_json()})
        return
    losses = "  ".join(f"{k} {result.losses[k]:.4g}" for k in ("elbo", "perceiver", "predictive", "adversarial")
                       if k in result.losses)
    procs = f" on {result.world_size} processes" if result.world_size > 1 else ""
    if result.steps_run:
        term.text(f"trained steps {result.first_step + 1}..{result.step}{procs} in {result.seconds:.1f} s "
                  f"({result.seconds_per_step:.3f} s/step): {losses}")
    else:
        term.text(f"{out} is already at step {result.step} (asked for {steps}): nothing to train")
    figure = f", {result.figures[-1]}" if result.figures else ""
    term.text(f"wrote {result.log_path}, {result.checkpoint_path}{figure}")
