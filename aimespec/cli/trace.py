"""`aimespec trace [PATH]`: one forward pass, every component call in order with its shapes."""

from pathlib import Path
from typing import Annotated

import typer

from aimespec.cli.options import ConfigOpt, EnvOpt, JsonOpt, MaxMemoryOpt, SetOpt, VerboseOpt, config_request
from aimespec.cli.terminal import EXIT_FOUND, EXIT_OK, Terminal


def trace(
    path: Annotated[Path | None, typer.Argument(
        metavar="PATH", help="A Python model file with build_model(cfg). Default: the reference model.",
        show_default=False)] = None,
    batch: Annotated[int | None, typer.Option("--batch", metavar="B", help="B (default: batch_size).")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", metavar="T",
                                                help="T (default: sequence_length).")] = None,
    all_steps: Annotated[bool, typer.Option("--all-steps",
                                            help="Show every timestep, not the first and last.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SEC",
                                           help="Seconds the model may run without a component call.")] = 60.0,
    max_memory: MaxMemoryOpt = None,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a forward pass and print every component call in order, with symbolic and concrete shapes."""
    from aimespec.commands.trace import trace as run_trace
    from aimespec.core.limits import memory_bytes
    from aimespec.runtime.worker import mark_fresh

    mark_fresh()  # nothing has run torch's thread pool here yet: the worker may use every thread

    term = Terminal(verbose)
    with term.guard():
        cfg = config_request(config, set_, env)  # built with the model file's config class
        with term.quiet_stdout(json_):  # the model's own prints must not break the JSON document
            report = run_trace(path, cfg, batch=batch, seq_len=seq_len, timeout=timeout,
                               max_memory=memory_bytes(max_memory))
    report.all_steps = all_steps
    if json_:
        term.json(report.to_json())
    else:
        term.show(report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FOUND)

