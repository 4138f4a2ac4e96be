"""`check` and `trace` run the user's model in a worker process (`aimespec.runtime.worker`).

The engines stay as they are; this wraps them at the top. In the worker, the model file is
imported under the time limit (`import_model`). In the parent, a worker that ended without a
result becomes: a usage error when it was still importing the file (exit 2, like any file that
cannot be imported), else a finding of the report (exit 1) saying how the process ended.
"""

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from aimespec.core.errors import UsageError
from aimespec.core.paths import display_path
from aimespec.runtime.deadline import CallTimeout, Deadline
from aimespec.runtime.discover import REFERENCE_PACKAGE, ModelSource, load_source
from aimespec.runtime.worker import WorkerLost, isolated, phase

R = TypeVar("R")
IMPORT_TIMEOUT = ("importing {label} did not finish within {seconds:g} s (--timeout): does the file run a loop "
                  "at import?")
IMPORT_LOST = "importing {label} {reason}"
LOST = "the model's code {reason}; the checks it had done are lost"


def label_of(path: str | Path | None) -> str:
    return REFERENCE_PACKAGE if path is None else display_path(path)


def import_model(path: str | Path | None, timeout: float) -> ModelSource:
    """`load_source(path)` under the time limit; in a worker, the parent hears that importing started."""
    phase("import")
    try:
        source = Deadline(timeout).run(lambda: load_source(path))
    except CallTimeout:
        raise UsageError(IMPORT_TIMEOUT.format(label=label_of(path), seconds=timeout)) from None
    phase("run")
    return source


def run_isolated(job: Callable[[], R], path: str | Path | None, *, timeout: float, max_memory: int | None,
                 lost: Callable[[WorkerLost], R]) -> R:
    """`job()` in a worker; a worker lost while importing is a `UsageError`, afterwards `lost(error)`."""
    try:
        return isolated(job, timeout=timeout, max_memory=max_memory)
    except WorkerLost as error:
        if error.phase in ("start", "import"):
            raise UsageError(IMPORT_LOST.format(label=label_of(path), reason=error.reason)) from None
        return lost(error)


def lost_message(error: WorkerLost) -> str:
    return LOST.format(reason=error.reason)


__all__ = ["import_model", "label_of", "lost_message", "run_isolated"]
