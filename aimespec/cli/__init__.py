"""The `aimespec` command: a thin typer app over the library's engines, one module a command.

Commands that belong to an implementation rather than to the toolkit plug in through the
`aimespec.commands` entry-point group (the reference model's `train` does: see pyproject.toml),
so the toolkit never imports a particular model. A plugin is loaded only when its command is
named (or the command list is shown): the reference model's imports torch, and `aimespec
diagnose --explain` must start without it.
"""

import functools
import os
import sys
import traceback
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import typer
from typer.core import TyperGroup

from aimespec.cli.check import check
from aimespec.cli.collect import collect
from aimespec.cli.diagnose import diagnose
from aimespec.cli.spec import spec
from aimespec.cli.terminal import EXIT_BUG, bug_line, click_exceptions
from aimespec.cli.trace import trace
from aimespec.core.errors import UsageError


@functools.cache
def _plugin_entries() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in sorted(entry_points(group="aimespec.commands"), key=lambda e: e.name)}


def _plugin_command(name: str, entry: EntryPoint) -> Any:
    """The click command of one `aimespec.commands` entry point (name -> a typer command function)."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name)(entry.load())
    return typer.main.get_command(single)


class _Commands(TyperGroup):
    """The toolkit's commands, then each installed plugin command, loaded at first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        own = super().list_commands(ctx)
        return [*own, *(name for name in _plugin_entries() if name not in own)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = _plugin_entries().get(cmd_name)
        if cmd_name not in self.commands and entry is not None:
            self.add_command(_plugin_command(cmd_name, entry), cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=_Commands,
    name="aimespec",
    help="Shape-typed specifications for the AIME world model: check, trace, diagnose, spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("spec")(spec)
app.command("collect")(collect)
app.command("diagnose")(diagnose)
app.command("check")(check)
app.command("trace")(trace)


def _version(value: bool) -> None:
    if value:
        from aimespec.core.version import __version__

        typer.echo(f"aimespec {__version__}")
        raise typer.Exit()


# The toolkit's commands whose process may end without the interpreter's teardown once their output is
# flushed (`_end`), which costs ~0.3 s once torch is imported: nothing of theirs needs it. Not when a
# model file was imported in this process (`spec PATH`, or `check` where no worker can fork): its
# atexit hooks and buffered files are the user's. (`collect` and plugin commands such as `train`
# run libraries in this process and always end the usual way.)
QUICK_EXIT = frozenset({"check", "trace", "spec", "diagnose"})
_invoked: list[str] = []  # the command this process runs


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Shape-typed specifications for the AIME world model."""
    from aimespec.runtime.mode import current_mode

    if ctx.invoked_subcommand:
        _invoked.append(ctx.invoked_subcommand)

    try:
        current_mode()  # a bad AIMESPEC_CHECK is a usage error for every command, before any work
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def console() -> None:
    """The `aimespec` console script and `python -m aimespec`: `main()`, ended without the interpreter's
    teardown for a QUICK_EXIT command (this process is the command's own, nothing else runs in it)."""
    main(quick_exit=True)


def main(quick_exit: bool = False) -> None:
    """The command line: typer's usage errors (unknown option or command) become one sentence, exit 2.

    An exception that escapes a command (outside its guard) is a bug of ours: traceback, report line, exit 3.
    """
    _invoked.clear()
    exceptions = click_exceptions()
    try:
        code = app(standalone_mode=False)
    except exceptions.NoArgsIsHelpError:
        sys.exit(2)  # the help was shown
    except exceptions.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        sys.stderr.write(f"error: {exc.format_message()}{where}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except exceptions.ClickException as exc:  # e.g. a file option typer could not open
        sys.stderr.write(f"error: {exc.format_message()}\n")
        sys.exit(2)
    except Exception as exc:
        sys.stderr.write("".join(traceback.format_exception(exc)))
        sys.stderr.write(f"error: {bug_line(exc)}\n")
        sys.exit(EXIT_BUG)
    _end(code if isinstance(code, int) else 0, quick_exit)


def _end(code: int, quick_exit: bool) -> None:
    """Exit with `code`: with `quick_exit`, for a QUICK_EXIT command, `os._exit` once stdout and stderr are flushed."""
    from aimespec.core.paths import USER_MODULE_PREFIX

    if not (quick_exit and _invoked and _invoked[-1] in QUICK_EXIT) or any(
            name.startswith(USER_MODULE_PREFIX) for name in list(sys.modules)):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: what the usual exit would meet too
        sys.exit(code)
    os._exit(code)


__all__ = ["app", "console", "main"]
