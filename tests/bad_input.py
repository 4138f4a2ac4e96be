"""Helpers of the bad-input suite: run the `aimespec` console script in-process, and check its promises.

`cli(...)` runs `aimespec.cli.main` (what the console script runs: typer's usage errors become
one sentence) inside click's isolation, so stdout and stderr are captured apart and a crash of
ours is recorded as exit 3 with its traceback instead of escaping into the test.
"""

import json
import sys
import traceback
from dataclasses import dataclass
from typing import Any
from unittest import mock

from typer.testing import CliRunner

from aimespec.cli import main

runner = CliRunner()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def cli(*args: str, input: str | None = None) -> Run:
    with runner.isolation(input=input) as (out, err, _), mock.patch.object(sys, "argv", ["aimespec", *args]):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # a crash of ours: what the console script would show as a traceback
            sys.stderr.write(traceback.format_exc())
            code = 3
        sys.stdout.flush()
        sys.stderr.flush()  # what main() wrote to the isolation's text wrappers
        return Run(code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"))


def one_sentence(run: Run, code: int, *needles: str) -> str:
    """The run exited `code` with one `error: ...` line on stderr, no traceback, nothing on stdout."""
    assert run.code == code, run
    assert "Traceback" not in run.stderr, run
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, run
    assert run.stdout.strip() == "", run
    for needle in needles:
        assert needle in errors[0], (needle, str(run))
    return errors[0]


def pure_json(run: Run) -> dict[str, Any]:
    """stdout holds exactly one JSON document and nothing else."""
    assert "Traceback" not in run.stderr, run
    document = json.loads(run.stdout)
    assert isinstance(document, dict), run
    return document
