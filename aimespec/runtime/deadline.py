"""Time limits on calls into user code: a hanging component is a finding, never a hang of the checker.

The limit is on *silence*: `Deadline.run(fn)` interrupts `fn` with `CallTimeout` once
`seconds` pass without a `kick()`; the recorder kicks at every component call it sees, so a
whole-model forward pass may take as long as its steps need while any single component
call (or the model's own code between calls) still gets `seconds`. In the main thread it
uses SIGALRM; elsewhere the call runs in a daemon worker thread that is abandoned on timeout.
"""

import contextvars
import signal
import threading
import time
from collections.abc import Callable
from typing import Any


class CallTimeout(BaseException):
    """Raised into a call that ran past its time limit (a BaseException: user code cannot swallow it)."""


_running: list["Deadline"] = []  # the deadlines whose calls are running, innermost last


def remaining() -> float | None:
    """Seconds left before the innermost running deadline expires (negative: overdue); None when no
    call runs under one. The isolating worker's heartbeat reads it (`aimespec.runtime.worker`)."""
    if not _running:
        return None
    d = _running[-1]
    return (d.seconds or 0.0) - (time.monotonic() - d._last)


class Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds if seconds and seconds > 0 else None
        self._last = time.monotonic()
        self._signal = False

    def kick(self) -> None:
        """Progress was made: restart the clock."""
        self._last = time.monotonic()
        if self._signal and self.seconds:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def run(self, fn: Callable[[], Any]) -> Any:
        if self.seconds is None:
            return fn()
        _running.append(self)
        try:
            if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
                return self._run_signal(fn)
            return self._run_thread(fn)
        finally:
            _running.remove(self)

    def _run_signal(self, fn: Callable[[], Any]) -> Any:
        def on_alarm(signum: int, frame: Any) -> None:
            raise CallTimeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        self._signal = True
        self.kick()
        try:
            return fn()
        finally:
            self._signal = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _run_thread(self, fn: Callable[[], Any]) -> Any:
        box: dict[str, Any] = {}
        ctx = contextvars.copy_context()

        def target() -> None:
            try:
                box["result"] = ctx.run(fn)
            except BaseException as exc:
                box["error"] = exc

        worker = threading.Thread(target=target, daemon=True, name="aimespec-check-call")
        self.kick()
        worker.start()
        assert self.seconds is not None
        while worker.is_alive():
            worker.join(min(0.05, self.seconds))
            if worker.is_alive() and time.monotonic() - self._last > self.seconds:
                raise CallTimeout()  # the daemon worker is abandoned: the checker goes on
        if "error" in box:
            raise box["error"]
        return box.get("result")
