"""All terminal output goes through here: results to stdout, errors and progress to stderr.

With `--json` stdout holds exactly one JSON document. Colour and rich layout only when
the stream is a terminal; plain text otherwise.
"""

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn

import typer
from rich.console import Console

from aimespec.core.errors import REPORT_BUG, UsageError

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
PIPE_WIDTH = 100  # columns when the stream is not a terminal (a CI log, a file, a pipe)


class Terminal:
    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.out = Console(soft_wrap=False, width=_width(sys.stdout), highlight=False)
        self.err = Console(stderr=True, highlight=False, width=_width(sys.stderr))

    def show(self, renderable: Any) -> None:
        self.out.print(renderable)

    def json(self, document: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(document, indent=2, default=_default) + "\n")
        sys.stdout.flush()

    def text(self, text: str) -> None:
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """A usage error (bad config, bad input) becomes one sentence and exit 2; anything else is our bug.

        Only `UsageError` and its subclasses are the user's: every other exception escaping the
        block is a bug of aimespec's own, shown with its traceback and exit 3 (`bug`).
        """
        try:
            yield
        except UsageError as exc:
            self.fail(str(exc), EXIT_USAGE, exc)
        except (typer.Exit, typer.Abort, click_exceptions().ClickException):  # typer's own pass through
            raise
        except Exception as exc:
            self.bug(exc)

    def bug(self, exc: BaseException) -> NoReturn:
        """A bug of ours: the traceback always, then one line asking to report it; exit 3."""
        sys.stderr.write("".join(traceback.format_exception(exc)))
        sys.stderr.write(f"error: {bug_line(exc)}\n")
        sys.stderr.flush()
        raise typer.Exit(EXIT_BUG)

    @staticmethod
    def quiet_stdout(json_: bool) -> contextlib.AbstractContextManager[object]:
        """With --json, what user code prints goes to stderr: stdout holds the one JSON document."""
        return contextlib.redirect_stdout(sys.stderr) if json_ else contextlib.nullcontext()

    def fail(self, message: str, code: int = EXIT_USAGE, exc: BaseException | None = None) -> NoReturn:
        """One clear sentence on stderr (the traceback too with --verbose), then exit."""
        if self.verbose and exc is not None:
            sys.stderr.write("".join(traceback.format_exception(exc)))
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
        raise typer.Exit(code)


def bug_line(exc: BaseException) -> str:
    """The one line that closes a bug report: what failed, and a request to report it."""
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return REPORT_BUG.format(error=text.splitlines()[0] if text else type(exc).__name__)


def click_exceptions() -> Any:
    """click's exceptions module (typer >= 0.20 vendors click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions
    return exceptions


def _width(stream: Any) -> int | None:
    """The terminal's own width; COLUMNS when set; else PIPE_WIDTH (rich would pick 80)."""
    return None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)
