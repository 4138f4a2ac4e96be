"""The runtime switch: `AIMESPEC_CHECK=full|shapes|off` and `aimespec.checking(mode)`, and the
observers of checked calls (the tracer). No torch here: the CLI reads the mode before any work.

A checked call reads one context variable (the override and the observers together) and, when
no override is in force, the environment variable: `off` costs those two reads.
"""

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from aimespec.core.errors import InputError

MODES = ("full", "shapes", "off")
ENV_VAR = "AIMESPEC_CHECK"
BAD_MODE = "{what} is not a checking mode: use one of full, shapes, off"


class CallState(NamedTuple):
    """What a checked call needs to know: the `checking(...)` override (None: the environment's)
    and the observers, called with (contract, arguments, result) after every checked call."""

    override: str | None
    observers: tuple[Callable[..., None], ...]


_UNSET = CallState(None, ())  # a NamedTuple of a str and a tuple: immutable, safe to share
_state: contextvars.ContextVar[CallState] = contextvars.ContextVar("aimespec_state", default=_UNSET)
_env_modes: dict[str | None, str] = {None: "full"}  # raw $AIMESPEC_CHECK -> mode, for the values seen


def env_mode() -> str:
    """The mode `$AIMESPEC_CHECK` asks for (unset: full); an InputError (a ValueError) naming a bad value."""
    raw = os.environ.get(ENV_VAR)
    mode = _env_modes.get(raw)
    if mode is None:
        mode = raw.strip().lower() if raw is not None else "full"
        if mode not in MODES:
            raise InputError(BAD_MODE.format(what=f"{ENV_VAR}={raw!r}"))
        _env_modes[raw] = mode
    return mode


call_state: Callable[[], CallState] = _state.get  # what a checked call reads first: no Python frame of its own


def current_mode() -> str:
    """The checking mode in force: `checking(...)` if active, else `$AIMESPEC_CHECK`, else full."""
    override = _state.get().override
    return override if override is not None else env_mode()


@contextlib.contextmanager
def checking(mode: str) -> Iterator[None]:
    """Run a block with contract checking `full`, `shapes` (no value invariants) or `off`."""
    if mode not in MODES:
        raise InputError(BAD_MODE.format(what=repr(mode)))
    token = _state.set(_state.get()._replace(override=mode))
    try:
        yield
    finally:
        _state.reset(token)


@contextlib.contextmanager
def observing(observer: Callable[[Any, dict[str, Any], Any], None]) -> Iterator[None]:
    """Call `observer(contract, arguments, result)` after every checked call in the block."""
    state = _state.get()
    token = _state.set(state._replace(observers=(*state.observers, observer)))
    try:
        yield
    finally:
        _state.reset(token)
