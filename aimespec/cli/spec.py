"""`aimespec spec`: the symbol table and key tensor shapes for the current config."""

import typer

from aimespec.cli.options import ConfigOpt, EnvOpt, JsonOpt, SetOpt, VerboseOpt, load_config
from aimespec.cli.terminal import Terminal


def spec(
    json_: JsonOpt = False,
    markdown: bool = typer.Option(False, "--markdown", help="Print Markdown tables."),
    set_: SetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The symbol table and key tensor shapes at the current config, generated from the contracts."""
    from aimespec.commands.spec import build_spec  # reads the contracts: imports torch

    term = Terminal(verbose)
    if json_ and markdown:
        term.fail("--json and --markdown are two different outputs: give one of them")
    with term.guard():
        report = build_spec(load_config(config, set_, env))
    if json_:
        term.json(report.to_json())
    elif markdown:
        term.text(report.to_markdown())
    else:
        term.show(report)
