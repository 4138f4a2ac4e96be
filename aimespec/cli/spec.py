"""`aimespec spec`: the symbol table and key tensor shapes for the current config."""

from pathlib import Path
from typing import Annotated

import typer

from aimespec.cli.options import ConfigOpt, EnvOpt, JsonOpt, SetOpt, VerboseOpt, config_request
from aimespec.cli.terminal import Terminal


def spec(
    path: Annotated[Path | None, typer.Argument(
        metavar="PATH", help="A model file (imported: its code runs): its own symbols and contracts are shown too.",
        show_default=False)] = None,
    json_: JsonOpt = False,
    markdown: bool = typer.Option(False, "--markdown", help="Print Markdown tables."),
    set_: SetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The symbol table and key tensor shapes at the current config, generated from the contracts (and PATH's)."""
    from aimespec.commands.spec import spec_of  # reads the contracts: imports torch

    term = Terminal(verbose)
    if json_ and markdown:
        term.fail("--json and --markdown are two different outputs: give one of them")
    with term.guard():
        request = config_request(config, set_, env)  # built with PATH's config class, when it has one
        with term.quiet_stdout(json_ or markdown):  # the file's own prints must not mix into the document
            report = spec_of(str(path) if path is not None else None, request)
    if json_:
        term.json(report.to_json())
    elif markdown:
        term.text(report.to_markdown())
    else:
        term.show(report)
