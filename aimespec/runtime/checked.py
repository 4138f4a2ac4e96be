"""The runtime switch (`AIMESPEC_CHECK=full|shapes|off`, `aimespec.checking(mode)`) and
`@checked`, which holds a reference component's method to its contract at call time.

The mode is read at every call: `off` costs one context-variable read and one
environment lookup, then calls the undecorated function.
"""

import contextlib
import contextvars
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from aimespec.core.contract import MethodContract, resolve
from aimespec.core.errors import ContractViolation
from aimespec.core.validate import CallChecker

MODES = ("full", "shapes", "off")
ENV_VAR = "AIMESPEC_CHECK"

_mode_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("aimespec_mode", default=None)
# Observers of checked calls (the tracer): called with (contract, arguments, result).
_observers: contextvars.ContextVar[tuple[Callable[..., None], ...]] = contextvars.ContextVar(
    "aimespec_observers", default=()
)


def current_mode() -> str:
    """The checking mode in force: `checking(...)` if active, else `$AIMESPEC_CHECK`, else full."""
    override = _mode_override.get()
    if override is not None:
        return override
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return "full"
    mode = raw.strip().lower()
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={raw!r} is not a checking mode: use one of full, shapes, off")
    return mode


@contextlib.contextmanager
def checking(mode: str) -> Iterator[None]:
    """Run a block with contract checking `full`, `shapes` (no value invariants) or `off`."""
    if mode not in MODES:
        raise ValueError(f"{mode!r} is not a checking mode: use one of full, shapes, off")
    token = _mode_override.set(mode)
    try:
        yield
    finally:
        _mode_override.reset(token)


@contextlib.contextmanager
def observing(observer: Callable[[MethodContract, dict[str, Any], Any], None]) -> Iterator[None]:
    """Call `observer(contract, arguments, result)` after every checked call in the block."""
    token = _observers.set((*_observers.get(), observer))
    try:
        yield
    finally:
        _observers.reset(token)


F = TypeVar("F", bound=Callable[..., Any])


def checked(ref: str) -> Callable[[F], F]:
    """Hold a method to the contract `ref` (`"DPGMMPrior.forward"`) according to the mode.

    The instance must carry its `AimeConfig` as `self.cfg`: config-bound symbols are
    checked against it. Violations raise `ContractViolation` listing all of them.
    """

    def deco(fn: F) -> F:
        sig = inspect.signature(fn)
        self_name = next(iter(sig.parameters))
        contract_of = functools.cache(lambda: resolve(ref))  # resolved at the first checked call

        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            mode = current_mode()
            observers = _observers.get()
            if mode == "off" and not observers:
                return fn(self, *args, **kwargs)
            contract = contract_of()
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(self_name)
            if mode == "off":
                result = fn(self, *args, **kwargs)
            else:
                checker = CallChecker(contract, self.cfg, values=mode == "full")
                if found := checker.check_inputs(arguments):
                    raise ContractViolation(found) from None
                result = fn(self, *args, **kwargs)
                if found := checker.check_outputs(result):
                    raise ContractViolation(found) from None
            for observe in observers:
                observe(contract, arguments, result)
            return result

        wrapper.__aimespec_contract__ = ref  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco
