"""Time limits that follow the work: a slow full-size call is given time, a hang is still found.

With no `--timeout`, each method's limit starts at `DEFAULT_TIMEOUT` for a small call; before
a larger (B, T) runs on real tensors, one small call is timed and the larger one may take
`SAFETY` times its frames' share of that (never less than the default). A call that still
runs out says how long it ran, what the small call took and which `--timeout` would do; the
remaining examples with fewer frames still run, so a crash behind a slow call is still found.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 20.0  # seconds a small call may run when --timeout is not given
SAFETY = 4.0  # a larger call may take this many times its share of the small call's time
_NICE = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400)

TIMEOUT = "{contract}: did not return within {limit:g} s at B={B}, T={T}{measured}; {advice}"
MEASURED = " (a call at B={b}, T={t} took {seconds:.2g} s)"
RERUN = "if it is only slow, rerun with --timeout {hint}"
HUNG = "even the small call did not return: a loop that never ends, or a wait on something that never comes"


@dataclass(frozen=True)
class Measured:
    pair: tuple[int, int]
    seconds: float | None  # None: the small call raised or ran out (no estimate)
    timed_out: bool = False


def frames(pair: tuple[int, int]) -> int:
    return pair[0] * pair[1]


def scaled_limit(base: float, measured: Measured | None, pair: tuple[int, int]) -> float:
    """The limit for `pair`: the base, or SAFETY times the small call's time scaled by frames, if larger."""
    if measured is None or measured.seconds is None:
        return base
    share = measured.seconds * frames(pair) / max(frames(measured.pair), 1)
    return max(base, SAFETY * share)


def rerun_hint(limit: float, measured: Measured | None, pair: tuple[int, int]) -> int:
    """A round --timeout that would very likely do: twice the limit or the estimate, whichever is larger."""
    estimate = 0.0
    if measured is not None and measured.seconds is not None:
        estimate = measured.seconds * frames(pair) / max(frames(measured.pair), 1)
    want = 2 * max(limit, estimate)
    return next((n for n in _NICE if n >= want), math.ceil(want))


def timeout_message(contract: str, limit: float, pair: tuple[int, int] | None, measured: Measured | None) -> str:
    B, T = pair if pair else ("?", "?")
    shown = ""
    if measured is not None and measured.seconds is not None and pair != measured.pair:
        shown = MEASURED.format(b=measured.pair[0], t=measured.pair[1], seconds=measured.seconds)
    hung = measured is not None and measured.timed_out and pair == measured.pair
    advice = HUNG if hung else RERUN.format(hint=rerun_hint(limit, measured, pair or (1, 1)))
    return TIMEOUT.format(contract=contract, limit=limit, B=B, T=T, measured=shown, advice=advice)


def measure(run: Callable[[Callable[[], Any]], Any], call: Callable[[], Any], pair: tuple[int, int],
            timeout: type[BaseException]) -> Measured:
    """Time one small call (its result and any exception are dropped: the checked calls report them)."""
    started = time.perf_counter()
    try:
        run(call)
    except timeout:
        return Measured(pair, None, timed_out=True)
    except (Exception, SystemExit):
        return Measured(pair, None)
    return Measured(pair, time.perf_counter() - started)


def run_examples(engine: Any, real: list[tuple[int, int]], used: tuple[str, ...],
                 call: Callable[[int, int], bool], invoke: Callable[[Any], Any], mc: Any) -> None:
    """Each (B, T) on real tensors under a limit that follows the work; after a timeout, the smaller still run.

    `engine` is the check engine (its `auto`, `timeout`, `limit`, `measured`, `small_pair` and
    `_run`); `call(B, T)` is one checked call (True when it ran out of time), `invoke(inputs)` an
    unchecked one, timed at the smallest (B, T) before the larger ones when the limit is automatic.
    """
    from aimespec.runtime.deadline import CallTimeout
    from aimespec.runtime.hold import make_inputs

    pairs = list(dict.fromkeys(real))

    def size(pair: tuple[int, int]) -> int:  # the frames a call processes, as far as the contract uses B, T
        return (pair[0] if "B" in used else 1) * (pair[1] if "T" in used else 1)

    small = min((*pairs, engine.small_pair), key=size)
    if engine.auto and any(size(p) > size(small) for p in pairs):
        inputs = make_inputs(mc, engine.cfg, small[0], small[1], engine.seed, engine.device)
        engine.measured = measure(engine._run, lambda: invoke(inputs), small, CallTimeout)
        if engine.measured.timed_out:  # it hangs even small: report it once, at the smallest
            pairs = [min(pairs, key=size)]
    stopped: int | None = None
    try:
        for B, T in pairs:
            if stopped is not None and size((B, T)) >= stopped:
                continue
            engine.limit = scaled_limit(engine.timeout, engine.measured, (B, T)) if engine.auto else engine.timeout
            if call(B, T):  # ran out of time: the examples with fewer frames still run
                stopped = size((B, T))
    finally:
        engine.limit, engine.measured = engine.timeout, None


__all__ = ["DEFAULT_TIMEOUT", "Measured", "measure", "rerun_hint", "run_examples", "scaled_limit", "timeout_message"]
