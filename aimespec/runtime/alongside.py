"""Work that runs alongside: `Alongside(job)` forks a process that runs `job()` while this one goes on.

Inside the worker process (`aimespec.runtime.worker`: the user's code is already isolated there),
`check` runs each contract's behavioural probes in such a process, started as soon as the object
is built, while it goes on with the shape checks: on a machine with two cores or more the probes
cost little wall clock. The forked process sees the object exactly as it was at the fork and can
change nothing here; it runs torch on one thread (OpenMP's pool does not survive a fork), sends
its result back pickled over a pipe and ends with `os._exit`. `result()` waits for it within a
time limit; a process that crashes, exits or outlives the limit is described in one sentence
(`AlongsideLost`), and `cancel()` stops one whose result is no longer wanted.
"""

import contextlib
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from aimespec.runtime import worker

MAX_RUNNING_PER_CPU = 2  # live processes per usable CPU before `Alongside.wait_for_room` waits
GRACE = 2.0  # seconds past the limit before the process is killed
_FAILED = 70  # exit status of a process whose result could not be pickled or sent

LOST_SIGNAL = "crashed the probes' process with {name} ({hint})"
LOST_EXIT = ("ended the probes' process with exit status {status} (the model's code called os._exit or exited "
             "from C code)")
LOST_TIMEOUT = "did not finish the probes within {seconds:g} s (a hang in C code): their process was stopped"
LOST_UNREADABLE = "sent a result from the probes' process that could not be read back ({error})"
_running: list["Alongside"] = []


class AlongsideLost(Exception):
    """The process ended without a result; the message completes "the model's code ..."."""

    def __init__(self, reason: str, *, stopped: bool = False) -> None:
        self.reason, self.stopped = reason, stopped
        super().__init__(reason)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available() -> bool:
    """Whether work can run alongside here: inside the isolating worker, on a POSIX fork, with a spare CPU."""
    torch = sys.modules.get("torch")
    return (worker.in_worker() and hasattr(os, "fork") and usable_cpus() >= 2
            and not (torch is not None and torch.cuda.is_initialized()))


class Alongside:
    """`job()` in a forked process, started now; `result()` is its return value (or its exception)."""

    def __init__(self, job: Callable[[], Any], *, limit: float) -> None:
        self.limit = limit
        self.started = time.monotonic()
        self._wait_for_room()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the forked process: never returns
            os.close(read)
            _child(job, write)
        os.close(write)
        self.pid, self.fd = pid, read
        self._done: tuple[bool, Any] | None = None
        _running.append(self)

    @staticmethod
    def _wait_for_room() -> None:
        while len(_running) >= MAX_RUNNING_PER_CPU * usable_cpus():
            _running[0]._finish()

    def result(self) -> Any:
        """The job's return value; its exception re-raised; `AlongsideLost` when the process ended without one."""
        self._finish()
        assert self._done is not None
        ok, value = self._done
        if ok:
            return value
        raise value

    def cancel(self) -> None:
        """Stop the process (its result is not wanted)."""
        if self._done is None:
            _kill(self.pid)
            self._close(False, AlongsideLost("was cancelled"))

    def _finish(self) -> None:
        if self._done is not None:
            return
        buffer = bytearray()
        expiry = self.started + self.limit + GRACE
        while True:
            left = expiry - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, min(left, 1.0)))
            if not ready:
                if time.monotonic() > expiry:
                    _kill(self.pid)
                    self._close(False, AlongsideLost(LOST_TIMEOUT.format(seconds=self.limit), stopped=True))
                    return
                continue
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                break
            buffer += chunk
        status = _reap(self.pid)
        if buffer:
            try:
                self._close(*pickle.loads(bytes(buffer)))
            except Exception as exc:
                self._close(False, AlongsideLost(LOST_UNREADABLE.format(error=f"{type(exc).__name__}: {exc}")))
            return
        self._close(False, AlongsideLost(_describe(status)))

    def _close(self, ok: bool, value: Any) -> None:
        self._done = (ok, value)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self in _running:
            _running.remove(self)


def _child(job: Callable[[], Any], fd: int) -> None:
    status = 0
    try:
        worker.leave_channel()  # the worker's channel to its parent is not ours to write
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)
        try:
            payload = pickle.dumps((True, job()), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # the job's own error, re-raised where `result()` is called
            payload = _pickled_error(exc)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        status = _FAILED
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def _pickled_error(exc: BaseException) -> bytes:
    try:
        payload = pickle.dumps((False, exc), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)
        return payload
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}\n{text}")))


def _reap(pid: int) -> int:
    with contextlib.suppress(ChildProcessError):
        return os.waitpid(pid, 0)[1]
    return 0


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        known = signal.Signals(sig) if sig in signal.Signals._value2member_map_ else None
        name = known.name if known is not None else f"signal {sig}"
        hint = worker.signal_hint(known)
        return LOST_SIGNAL.format(name=name, hint=hint)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return LOST_EXIT.format(status=code)


__all__ = ["Alongside", "AlongsideLost", "available", "usable_cpus"]
