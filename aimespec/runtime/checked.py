"""`@checked`: holds a reference component's method to its contract at call time, according to
the runtime switch (`AIMESPEC_CHECK=full|shapes|off`, `aimespec.checking(mode)`: runtime/mode.py).

The mode is read at every call: `off` costs one context-variable read and one
environment lookup, then calls the undecorated function.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from aimespec.core.contract import MethodContract, resolve
from aimespec.core.errors import ContractViolation
from aimespec.core.fastcheck import CallPlan, plan_of
from aimespec.core.symbols import symbol_generation
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
        resolved: list[MethodContract] = []  # the contract, resolved at the first checked call
        # (config, symbol generation, plan) of the last checked call: one tuple, read once (threads)
        last: list[tuple[Any, int, CallPlan | None]] = [(None, -1, None)]
        bind = _binder(sig, self_name)

        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            override, observers = call_state()
            mode = override if override is not None else env_mode()
            if mode == "off" and not observers:
                return fn(self, *args, **kwargs)
            contract = resolved[0] if resolved else _resolve_into(resolved, ref)
            arguments = bind(self, args, kwargs)
            if mode == "off":
                result = fn(self, *args, **kwargs)
            else:
                cfg, hit, generation = self.cfg, last[0], symbol_generation()
                plan = hit[2]
                if plan is None or hit[0] is not cfg or hit[1] != generation:  # else: plan_of's answer again
                    # the generation read before plan_of: a symbol declared meanwhile (another thread)
                    # makes the next call ask again instead of keeping a plan compiled without it
                    plan = plan_of(contract, cfg)
                    last[0] = (cfg, generation, plan)
                result = _checked_call(plan, contract, self, fn, args, kwargs, arguments, mode == "full", view)
            if observers:
                shown = result if view is None else view(result)
                for observe in observers:
                    observe(contract, arguments, shown)
            return result

        wrapper.__aimespec_contract__ = ref  # type: ignore[attr-defined]
        wrapper.__aimespec_view__ = view  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def _resolve_into(resolved: list[MethodContract], ref: str) -> MethodContract:
    resolved.append(resolve(ref))
    return resolved[0]


def _checked_call(plan: CallPlan, contract: MethodContract, obj: Any, fn: Callable[..., Any], args: tuple,
                  kwargs: dict, arguments: dict[str, Any], values: bool, view: Callable[[Any], Any] | None) -> Any:
    """Run `fn` held to its contract. A call that holds meets only the contract's plan at the
    object's config (fastcheck.py); a `CallChecker` is built only when the plan cannot vouch
    for it, to say what is wrong (or to find that nothing is)."""
    env: dict[str, int] = {}
    checker = None
    if not plan.holds_inputs(arguments, env, values):
        checker = CallChecker(contract, obj.cfg, values=values)
        if found := checker.check_inputs(arguments):
            raise ContractViolation(found) from None
    result = fn(obj, *args, **kwargs)
    shown = result if view is None else view(result)
    if checker is None:
        if plan.holds_result(shown, env, values):
            return result
        checker = CallChecker(contract, obj.cfg, values=values)
        checker.check_inputs(arguments)  # binds what the inputs bind, as the full validator will need
    if found := checker.check_outputs(shown):
        raise ContractViolation(found) from None
    return result


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
