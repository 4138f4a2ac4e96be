"""User code runs in a worker process: it cannot touch the command's stdout, exit code or memory.

`isolated(job, ...)` forks a child of this process (torch is already imported: a fork costs
milliseconds) and runs `job()` there. The child's file descriptors 1 and 2 both go to the
command's stderr, so a model that prints, writes to fd 1 or to `sys.__stdout__` never reaches
stdout; its memory is capped (`resource.RLIMIT_DATA`, `--max-memory`), so an allocation beyond
it fails as an exception in the child instead of taking the machine down. The child sends its
result (or the exception it raised) back pickled over a pipe, and a heartbeat while it works.

The parent keeps the time limit: each heartbeat says how long the child's running deadline
(`aimespec.runtime.deadline`) still has, and the parent kills the child once that passed by
`GRACE` seconds without news (a hang in C code that SIGALRM cannot interrupt, at import or in a
call). A child that exits (`os._exit`), crashes (SIGSEGV) or is killed raises `WorkerLost` with
one sentence saying so and in which phase; the engines turn it into a finding or a usage error.
"""

import contextlib
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from aimespec.core.errors import AimespecError, UsageError
from aimespec.core.limits import MEMORY_SHARE, allocation_failure, human_bytes, physical_memory
from aimespec.runtime import deadline
from aimespec.runtime.transfer import dumps

T = TypeVar("T")
GRACE = 2.0  # seconds past the child's own deadline before the parent kills it
HEARTBEAT = 0.25  # seconds between heartbeats
MAX_MEMORY_DEFAULT = MEMORY_SHARE  # of the machine's memory, when --max-memory is not given
BEAT, PHASE, RESULT = b"h", b"p", b"r"

LOST_EXIT = "ended the worker process with exit status {status} ({hint})"
LOST_SIGNAL = "crashed the worker process with {name} ({hint})"
EXIT_HINT = "the model's code called os._exit or exited from C code"
LOST_TIMEOUT = ("did not return within {seconds:g} s and could not be interrupted (a hang in C code): "
                "the worker process was stopped")
LOST_PIPE = "closed the worker process's channel to aimespec and did not exit: the worker process was stopped"
LOST_CHANNEL = "closed the worker process's channel to aimespec, so its results could not come back"
CHANNEL_GONE = 71  # the worker's exit status when its result could not be sent (the model closed the pipe)
MEMORY = "{failure} in the worker process, whose memory is capped at {cap} (--max-memory)"
_SIGNAL_HINTS = {
    signal.SIGSEGV: "a segmentation fault in C code, e.g. an extension or ctypes",
    signal.SIGKILL: "killed from outside, e.g. by the out-of-memory killer",
    signal.SIGABRT: "an abort in C code",
    signal.SIGBUS: "a bus error in C code",
    signal.SIGFPE: "an arithmetic fault in C code",
}


class WorkerLost(AimespecError):
    """The worker process ended without a result; `phase` is what it was doing ("import", "run")."""

    def __init__(self, reason: str, phase: str, *, stopped: bool = False) -> None:
        self.reason, self.phase, self.stopped = reason, phase, stopped  # stopped: killed for time
        super().__init__(reason)


@dataclass
class Channel:
    fd: int
    lock: threading.Lock

    def send(self, tag: bytes, payload: bytes = b"") -> None:
        with self.lock:
            data = tag + struct.pack("<Q", len(payload)) + payload
            while data:
                data = data[os.write(self.fd, data):]


_channel: Channel | None = None  # set in the worker process only
_fresh_threads: int | None = None  # this process's thread count when it was declared fresh


def mark_fresh() -> None:
    """Declare that this process has not run torch's thread pool yet (the CLI before its first tensor):
    the worker may then use every thread. Otherwise it runs single-threaded, since OpenMP's pool does
    not survive a fork (a child that used it would hang)."""
    global _fresh_threads
    _fresh_threads = _thread_count()


def phase(name: str) -> None:
    """Tell the parent what the worker is doing now ("import", "run"); a no-op outside a worker."""
    if _channel is not None:
        _channel.send(PHASE, name.encode())


def in_worker() -> bool:
    return _channel is not None


def leave_channel() -> None:
    """In a process forked from the worker (`aimespec.runtime.alongside`): the worker's channel to its
    parent is not this process's to write, and `phase` becomes a no-op."""
    global _channel
    if _channel is not None:
        with contextlib.suppress(OSError):
            os.close(_channel.fd)
    _channel = None


def signal_hint(sig: signal.Signals | None) -> str:
    """What a signal that ended a process usually means, in a few words."""
    return _SIGNAL_HINTS.get(sig, "a crash in C code") if sig is not None else "a crash in C code"


def default_max_memory() -> int | None:
    total = physical_memory()
    return int(total * MAX_MEMORY_DEFAULT) if total else None


def can_isolate() -> bool:
    """Whether `isolated` forks: a POSIX fork, and no CUDA context made here (it does not survive a fork)."""
    if not hasattr(os, "fork") or _channel is not None:
        return False
    torch = sys.modules.get("torch")
    return not (torch is not None and torch.cuda.is_initialized())


def isolated(job: Callable[[], T], *, timeout: float, max_memory: int | None = None) -> T:
    """`job()` in a forked worker process; its result, or its exception re-raised here.

    `timeout`: seconds the worker may go without a heartbeat when no deadline runs in it (a deadline
    that runs says its own). Raises `WorkerLost` when the worker ends without a result.
    """
    if not can_isolate():
        return job()
    cap = default_max_memory() if max_memory is None else max_memory
    threads = _thread_count()
    fresh = _fresh_threads is not None and threads <= _fresh_threads
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()  # nothing buffered here is written twice by the child
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        os.close(read)
        _worker(job, write, cap, fresh, timeout)
    os.close(write)
    try:
        return _parent(pid, read, timeout, cap)
    finally:
        os.close(read)


# --- the worker process ----------------------------------------------------------------------------
def _worker(job: Callable[[], Any], fd: int, cap: int | None, fresh: bool, timeout: float) -> None:
    global _channel
    status = 0
    try:
        _channel = Channel(fd, threading.Lock())
        os.dup2(2, 1)  # fd-1 writes and sys.__stdout__ reach the command's stderr, never its stdout
        err = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
        sys.stdout = sys.stderr = err
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent decides
        if cap is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
        if not fresh and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        threading.Thread(target=heartbeat, args=(_channel, timeout), daemon=True).start()
        try:
            payload = dumps((True, job(), None))  # a model file's config class travels as its values
        except BaseException as exc:  # the job's own error (a UsageError, a bug of ours): re-raised there
            payload = pickled_error(exc, cap)
        try:
            _channel.send(RESULT, payload)
        except OSError:  # the model's code closed our pipe (os.closerange and the like)
            status = CHANNEL_GONE
    except BaseException:
        status = 70
    finally:
        os._exit(status)


def pickled_error(exc: BaseException, cap: int | None) -> bytes:
    """`(False, exc, traceback text)` pickled: an allocation failure said against `cap`, an exception
    that would not come back from the pickle replaced by one that does."""
    failure = allocation_failure(exc)
    if failure is not None:
        shown = human_bytes(cap) if cap else "no limit"
        exc = UsageError(MEMORY.format(failure=failure, cap=shown))
    text = "".join(traceback.format_exception(exc))
    try:
        payload = pickle.dumps((False, exc, text))
        pickle.loads(payload)  # an exception whose __init__ takes other arguments does not come back
        return payload
    except Exception:
        kind = UsageError if isinstance(exc, UsageError) else RuntimeError  # only a usage error is the user's
        return pickle.dumps((False, kind(str(exc) if kind is UsageError else f"{type(exc).__name__}: {exc}"), text))


def heartbeat(channel: Channel, timeout: float) -> None:
    """Every HEARTBEAT s: the seconds the child still has (the running deadline's rest, negative once overdue;
    `timeout` while aimespec's own code runs)."""
    while True:
        left = deadline.remaining()
        try:
            channel.send(BEAT, struct.pack("<d", timeout if left is None else left))
        except OSError:
            return
        time.sleep(HEARTBEAT)


# --- the parent ---------------------------------------------------------------------------------------
def _parent(pid: int, fd: int, timeout: float, cap: int | None) -> Any:
    current, expiry = "start", time.monotonic() + timeout  # when the child's time is up (plus GRACE)
    result: tuple[bool, Any, str | None] | None = None
    buffer = bytearray()
    try:
        while True:
            wait = max(0.0, expiry + GRACE - time.monotonic())
            ready, _, _ = select.select([fd], [], [], min(wait, 1.0))
            if not ready:
                if time.monotonic() > expiry + GRACE:
                    kill(pid)
                    raise WorkerLost(LOST_TIMEOUT.format(seconds=timeout), current, stopped=True)
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            buffer += chunk
            for tag, payload in messages(buffer):
                if tag == BEAT:  # an overdue deadline sends a negative rest: the expiry stays where it was
                    expiry = time.monotonic() + struct.unpack("<d", payload)[0]
                elif tag == PHASE:
                    current = payload.decode()
                elif tag == RESULT:
                    result = _unpickle(payload)
    except BaseException:
        kill(pid)
        raise
    status = reap(pid, time.monotonic() + (GRACE if result is not None else timeout + GRACE))
    if result is None:
        if status is None:
            raise WorkerLost(LOST_PIPE, current, stopped=True)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == CHANNEL_GONE:
            raise WorkerLost(LOST_CHANNEL, current)
        raise WorkerLost(describe_end(status), current)
    ok, value, text = result
    if ok:
        return value
    if text and not isinstance(value, AimespecError):
        value.add_note(f"(in aimespec's worker process)\n{text}")
    raise value


def _unpickle(payload: bytes) -> tuple[bool, Any, str | None]:
    try:
        return pickle.loads(payload)
    except Exception as exc:  # a class the worker made that this process cannot import
        return False, RuntimeError(f"the worker's result could not be read back ({type(exc).__name__}: {exc})"), None


def messages(buffer: bytearray) -> Iterator[tuple[bytes, bytes]]:
    """Complete messages at the front of `buffer` (removed from it)."""
    while len(buffer) >= 9:
        size = struct.unpack("<Q", buffer[1:9])[0]
        if len(buffer) < 9 + size:
            return
        tag, payload = bytes(buffer[:1]), bytes(buffer[9:9 + size])
        del buffer[:9 + size]
        yield tag, payload


def reap(pid: int, until: float) -> int | None:
    """The child's exit status; None when it closed its pipe but lived on past `until` (it is killed)."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > until:
            kill(pid)
            return None
        time.sleep(0.01)


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def describe_end(status: int, on_signal: str = LOST_SIGNAL, on_exit: str = LOST_EXIT) -> str:
    """How a process ended without a result, in the words of `on_signal` ({name}, {hint}) or `on_exit`
    ({status}, {hint})."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            known: signal.Signals | None = signal.Signals(sig)
        except ValueError:
            known = None
        name = known.name if known is not None else f"signal {sig}"
        return on_signal.format(name=name, hint=signal_hint(known))
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return on_exit.format(status=code, hint=EXIT_HINT)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


__all__ = [
    "BEAT",
    "RESULT",
    "Channel",
    "WorkerLost",
    "can_isolate",
    "default_max_memory",
    "describe_end",
    "heartbeat",
    "in_worker",
    "isolated",
    "kill",
    "leave_channel",
    "mark_fresh",
    "messages",
    "phase",
    "pickled_error",
    "reap",
    "signal_hint",
]
