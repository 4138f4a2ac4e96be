"""The `aimespec` command: a thin typer app over the library's engines, one module a command."""

import typer

from aimespec.cli.check import check
from aimespec.cli.collect import collect
from aimespec.cli.diagnose import diagnose
from aimespec.cli.spec import spec
from aimespec.cli.trace import trace
from aimespec.cli.train import train

app = typer.Typer(
    name="aimespec",
    help="Shape-typed specifications for the AIME world model: check, trace, diagnose, spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("spec")(spec)
app.command("collect")(collect)
app.command("diagnose")(diagnose)
app.command("train")(train)
app.command("check")(check)
app.command("trace")(trace)


def _version(value: bool) -> None:
    if value:
        from aimespec import __version__

        typer.echo(f"aimespec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Shape-typed specifications for the AIME world model."""


def main() -> None:
    app()


__all__ = ["app", "main"]
