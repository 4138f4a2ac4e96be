"""`@checked`: holds a reference component's method to its contract at call time, according to
the runtime switch (`AIMESPEC_CHECK=full|shapes|off`, `aimespec.checking(mode)`: runtime/mode.py).

The mode is read at every call: `off` costs one context-variable read and one
environment lookup, then calls the undecorated function.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from aimespec.core.contract import resolve
from aimespec.core.errors import ContractViolation
from aimespec.core.validate import CallChecker
from aimespec.runtime.mode import ENV_VAR, MODES, call_state, checking, current_mode, env_mode, observing

F = TypeVar("F", bound=Callable[..., Any])


def checked(ref: str, *, view: Callable[[Any], Any] | None = None) -> Callable[[F], F]:
    """Hold a method to the contract `ref` (`"DPGMMPrior.forward"`) according to the mode.

    The instance must carry its `AimeConfig` as `self.cfg`: config-bound symbols are
    checked against it. Violations raise `ContractViolation` listing all of them.
    `view`: for a method that returns a richer record than the contract's result (the
    contract's result plus what training reads), the part the contract describes
    (`view=lambda out: out.context`); the check and the observers see that part.
    """

    def deco(fn: F) -> F:
        sig = inspect.signature(fn)
        self_name = next(iter(sig.parameters))
        contract_of = functools.cache(lambda: resolve(ref))  # resolved at the first checked call
        bind = _binder(sig, self_name)

        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            override, observers = call_state()
            mode = override if override is not None else env_mode()
            if mode == "off" and not observers:
                return fn(self, *args, **kwargs)
            contract = contract_of()
            arguments = bind(self, args, kwargs)
            if mode == "off":
                result = fn(self, *args, **kwargs)
            else:
                checker = CallChecker(contract, self.cfg, values=mode == "full")
                if found := checker.check_inputs(arguments):
                    raise ContractViolation(found) from None
                result = fn(self, *args, **kwargs)
                if found := checker.check_outputs(result if view is None else view(result)):
                    raise ContractViolation(found) from None
            if observers:
                shown = result if view is None else view(result)
                for observe in observers:
                    observe(contract, arguments, shown)
            return result

        wrapper.__aimespec_contract__ = ref  # type: ignore[attr-defined]
        wrapper.__aimespec_view__ = view  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def _binder(sig: inspect.Signature, self_name: str) -> Callable[[Any, tuple, dict], dict[str, Any]]:
    """The call's arguments by name, defaults applied, without `self`: what `sig.bind` gives, in a
    few dict operations for the usual signature (named parameters); `sig.bind` itself for the rest
    and for any call it would reject (it raises the TypeError Python would)."""
    params = list(sig.parameters.values())[1:]
    plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
    names = tuple(p.name for p in params)
    defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def full(self: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(self_name)
        return arguments

    def fast(self: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
        if len(args) > len(names):
            return full(self, args, kwargs)
        arguments = dict(zip(names, args, strict=False))  # fewer args than names: defaults below
        for key, value in kwargs.items():
            if key in arguments or key not in names:
                return full(self, args, kwargs)
            arguments[key] = value
        if len(arguments) < len(names):
            for name in names:
                if name not in arguments:
                    if name not in defaults:
                        return full(self, args, kwargs)
                    arguments[name] = defaults[name]
            arguments = {name: arguments[name] for name in names}  # signature order, as bind gives
        return arguments

    return fast if plain else full


__all__ = ["ENV_VAR", "MODES", "checked", "checking", "current_mode", "observing"]
