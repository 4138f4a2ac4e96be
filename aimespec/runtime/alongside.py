"""Work that runs alongside: `Alongside(job)` forks a process that runs `job()` while this one goes on.

Inside the worker process (`aimespec.runtime.worker`: the user's code is already isolated there),
`check` runs each contract's behavioural probes in such a process, started as soon as the object
is built, while it goes on with the shape checks: on a machine with two CPUs or more the probes
cost little wall clock. The forked process sees the object exactly as it was at the fork and can
change nothing here; it runs torch on one thread (OpenMP's pool does not survive a fork), dies
with the worker (`PR_SET_PDEATHSIG`), and talks over a pipe the way the worker talks to the CLI
(`worker.Channel`): a heartbeat saying how long its running call still has, then its result.
`result()` waits for it; a process that goes silent past its call's limit (a hang in C code),
crashes or exits without a result is described in one sentence (`AlongsideLost`), and `cancel()`
stops one whose result is no longer wanted.
"""

import contextlib
import ctypes
import math
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aimespec.core.errors import AimespecError
from aimespec.runtime import worker

MAX_RUNNING_PER_CPU = 2  # live processes per usable CPU ...
MAX_RUNNING = 8  # ... and in all, before a new one waits for room
GRACE = 2.0  # seconds past the running call's limit before a silent process is killed
NICE = 10  # the processes alongside yield the CPU to the worker
_FAILED = 70  # exit status of a process whose result could not be pickled or sent
_PR_SET_PDEATHSIG = 1

LOST_SIGNAL = "crashed the probes' process with {name} ({hint})"
LOST_EXIT = "ended the probes' process with exit status {status} ({hint})"
LOST_TIMEOUT = ("did not return within {seconds:g} s and could not be interrupted (a hang in C code): the probes' "
                "process was stopped")
LOST_CLOSED = "closed the probes' process's channel and did not exit: the process was stopped"
LOST_UNREADABLE = "sent a result from the probes' process that could not be read back ({error})"
LOST_FORK = "could not start the probes' process ({error})"
_running: list["Alongside"] = []


class AlongsideLost(Exception):
    """The process ended without a result; the message completes "the model's code ..."."""

    def __init__(self, reason: str, *, stopped: bool = False) -> None:
        self.reason, self.stopped = reason, stopped
        super().__init__(reason)


def _cgroup_cpus() -> float | None:
    """The CPUs a cgroup v2 quota allows (`cpu.max`), None without one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, bounded by a cgroup quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(cpus, math.floor(quota))) if quota else cpus


def available(device: Any = "cpu") -> bool:
    """Whether work can run alongside here: inside the isolating worker, on a POSIX fork, with a spare CPU,
    for work on the CPU (a CUDA or MPS context does not survive a fork)."""
    torch = sys.modules.get("torch")
    return (worker.in_worker() and hasattr(os, "fork") and usable_cpus() >= 2 and str(device) == "cpu"
            and not (torch is not None and torch.cuda.is_initialized()))


class Alongside:
    """`job()` in a forked process, started now; `result()` is its return value (or its exception).

    `limit`: seconds the process may stay silent while no call under a deadline runs in it (the
    probes' own calls say their limit in each heartbeat). Raises `OSError` when no process can start.
    """

    def __init__(self, job: Callable[[], Any], *, limit: float) -> None:
        self.limit = limit
        self._wait_for_room()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        read, write = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:  # the forked process: never returns
            os.close(read)
            _child(job, write, parent, limit)
        os.close(write)
        self.pid, self.fd = pid, read
        self.expiry = time.monotonic() + limit
        self.buffer = bytearray()
        self._done: tuple[bool, Any, str | None] | None = None
        _running.append(self)

    @staticmethod
    def _wait_for_room() -> None:
        """Until fewer than the most processes allowed run: whichever ends first makes room (a long one
        started early does not hold back the short ones after it)."""
        room = min(MAX_RUNNING, MAX_RUNNING_PER_CPU * usable_cpus())
        if len(_running) >= room:
            _listen(list(_running), lambda: len(_running) < room)

    def result(self) -> Any:
        """The job's return value; its exception re-raised; `AlongsideLost` when the process ended without one."""
        self._finish()
        assert self._done is not None
        ok, value, text = self._done
        if ok:
            return value
        if text and not isinstance(value, AimespecError):
            value.add_note(f"(in the probes' process)\n{text}")
        raise value

    def cancel(self) -> None:
        """Stop the process (its result is not wanted)."""
        if self._done is None:
            worker.kill(self.pid)
            self._close(False, AlongsideLost("was cancelled"), None)

    def _finish(self) -> None:
        if self._done is None:
            _listen([self], lambda: self._done is not None)

    def _wait(self) -> float:
        """Seconds to wait for the process before its silence is looked at again."""
        return min(max(0.0, self.expiry + GRACE - time.monotonic()), 1.0)

    def _check_silence(self) -> None:
        """A process silent past its running call's limit (and GRACE): stopped."""
        if self._done is None and time.monotonic() > self.expiry + GRACE:
            worker.kill(self.pid)
            self._close(False, AlongsideLost(LOST_TIMEOUT.format(seconds=self.limit), stopped=True), None)

    def _read(self) -> None:
        """What the process sent since; once its result came or its channel closed, how it ended."""
        chunk = os.read(self.fd, 1 << 20)
        self.buffer += chunk
        result: tuple[bool, Any, str | None] | None = None
        for tag, payload in worker.messages(self.buffer):
            if tag == worker.BEAT:
                self.expiry = time.monotonic() + struct.unpack("<d", payload)[0]
            elif tag == worker.RESULT:
                result = _unpickle(payload)
        if result is None and chunk:
            return
        status = worker.reap(self.pid, time.monotonic() + GRACE)
        if result is not None:
            self._close(*result)
        elif status is None:
            self._close(False, AlongsideLost(LOST_CLOSED, stopped=True), None)
        else:
            self._close(False, AlongsideLost(worker.describe_end(status, LOST_SIGNAL, LOST_EXIT)), None)

    def _close(self, ok: bool, value: Any, text: str | None) -> None:
        self._done = (ok, value, text)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self in _running:
            _running.remove(self)


def _listen(jobs: list[Alongside], enough: Callable[[], bool]) -> None:
    """Read what `jobs` send (heartbeats, results, their ends) until `enough()`; a job silent past its
    running call's limit is stopped."""
    now = time.monotonic()
    for job in jobs:  # silence while nobody listened is not its fault
        job.expiry = max(job.expiry, now + GRACE)
    while not enough():
        live = [job for job in jobs if job._done is None]
        ready, _, _ = select.select([job.fd for job in live], [], [], min(job._wait() for job in live))
        for job in live:
            if job.fd in ready:
                job._read()
            else:
                job._check_silence()


def _unpickle(payload: bytes) -> tuple[bool, Any, str | None]:
    try:
        return pickle.loads(payload)
    except Exception as exc:
        return False, AlongsideLost(LOST_UNREADABLE.format(error=f"{type(exc).__name__}: {exc}")), None


def _memory_cap() -> int | None:
    """This process's memory cap (the worker's `--max-memory`, inherited), None without one."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_DATA)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _die_with(parent: int) -> None:
    """This process is killed when `parent` ends (Linux; elsewhere it ends on its own, unwatched)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request took
        os._exit(_FAILED)


def _child(job: Callable[[], Any], fd: int, parent: int, limit: float) -> None:
    status = 0
    try:
        _die_with(parent)
        worker.leave_channel()  # the worker's channel to the CLI is not ours: closed here
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.nice(NICE)  # the worker's own checks come first when CPUs are short
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)
        channel = worker.Channel(fd, threading.Lock())
        threading.Thread(target=worker.heartbeat, args=(channel, limit), daemon=True).start()
        try:
            payload = pickle.dumps((True, job(), None), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # the job's own error, re-raised where `result()` is called
            payload = worker.pickled_error(exc, _memory_cap())
        channel.send(worker.RESULT, payload)
    except BaseException:
        status = _FAILED
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


__all__ = ["Alongside", "AlongsideLost", "available", "usable_cpus"]
