"""`aimespec check [PATH]`: hold a model file (default: the bundled reference model) to every contract."""

from pathlib import Path
from typing import Annotated

import typer

from aimespec.cli.options import ConfigOpt, EnvOpt, JsonOpt, MaxMemoryOpt, SetOpt, VerboseOpt, config_request
from aimespec.cli.terminal import EXIT_FOUND, EXIT_OK, EXIT_USAGE, Terminal

FORMATS = ("text", "json", "github")


def check(
    path: Annotated[Path | None, typer.Argument(
        metavar="PATH", help="A Python model file (imported: its code runs). Default: the reference model.",
        show_default=False)] = None,
    examples: Annotated[int, typer.Option("--examples", help="Random (B, T) examples besides the config's own.",
                                          metavar="N")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random (B, T) and of the inputs.")] = 0,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", metavar="SEC", show_default=False,
        help="Seconds a single component call may run. Default: 20 s for a small call; a larger (B, T) gets "
             "its share of a timed small call, four times over.")] = None,
    meta: Annotated[bool, typer.Option("--meta/--no-meta",
                                       help="Check the config's full-size (B, T) on the meta device where the code "
                                            "allows it (no FLOPs); --no-meta runs every example on real tensors.")
                    ] = True,
    format_: Annotated[str, typer.Option(
        "--format", metavar="FORMAT", help="text (default), json (= --json) or github: one GitHub Actions "
                                           "::error annotation per finding, nothing else on stdout.")] = "text",
    probes: Annotated[bool, typer.Option("--probes/--no-probes",
                                         help="Run the behavioural probes (batch, causal, config, repeat) once the "
                                              "shapes hold.")] = True,
    vary_config: Annotated[bool, typer.Option("--vary-config/--no-vary-config",
                                              help="Run the config probe: rebuild every component at a second "
                                                   "config whose widths all differ, and check it again.")] = True,
    max_memory: MaxMemoryOpt = None,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Check every contract the model implements: shapes, dtypes and value invariants, on generated inputs."""
    from aimespec.commands.check import check as run_check
    from aimespec.core.limits import memory_bytes
    from aimespec.runtime.worker import mark_fresh

    mark_fresh()  # nothing has run torch's thread pool here yet: the worker may use every thread

    term = Terminal(verbose)
    if format_ not in FORMATS:
        term.fail(f"--format must be one of {', '.join(FORMATS)}, not {format_!r}", EXIT_USAGE)
    if json_ and format_ == "github":
        term.fail("choose one of --json and --format github", EXIT_USAGE)
    fmt = "json" if json_ else format_
    with term.guard():
        cfg = config_request(config, set_, env)  # built with the model file's config class
        with term.quiet_stdout(fmt != "text"):  # the model's own prints must not break the JSON document
            report = run_check(path, cfg, examples=examples, seed=seed, timeout=timeout, meta=meta,
                               probes=probes, vary_config=vary_config, max_memory=memory_bytes(max_memory))
    report.verbose = verbose
    if fmt == "json":
        term.json(report.to_json(tracebacks=verbose))
    elif fmt == "github":
        term.text(report.github())
    else:
        term.show(report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FOUND)

