"""Recording the component calls inside a model: the engine shared by `check` and `trace`.

Every submodule whose class implements a contract (by the discovery rule, imported
classes included) gets its contract methods shadowed on the *instance*
(`module.forward = wrapper`: `nn.Module.__call__` then runs the wrapper), so that each
call is recorded in order with its arguments' and results' shapes, and, when checking,
held to its contract with one `CallChecker` (B and T bound from the call itself).
A method checked against a contract through a view (`@checked(ref, view=...)`: it returns
a richer record than the contract's result) is shadowed and recorded the same way, its
result seen through the view. Checked reference methods reached some other way are picked
up by `aimespec.observing`.
"""

import contextlib
import copy
import dataclasses
import inspect
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch

from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract, methods_of
from aimespec.core.dims import Leaf, Node
from aimespec.core.validate import CallChecker, _walk
from aimespec.core.violation import Violation
from aimespec.runtime.discover import WORLD_CONTRACT, contract_of
from aimespec.runtime.meta_memo import MetaMemo, attributes
from aimespec.runtime.mode import observing


@dataclass
class CallRecord:
    """One component call: which contract, on which instance, with what shapes, what broke."""

    index: int  # order of entry within the run
    contract: MethodContract
    owner: str  # the instance's path inside the recorded root: "prior", "attention_schema.slots"
    cls: type
    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    symbolic: dict[str, str] = field(default_factory=dict)  # tensor name -> "[B, T, C, H, W]"
    bindings: dict[str, int] = field(default_factory=dict)  # B, T, ... as bound for this call
    input_violations: list[Violation] = field(default_factory=list)
    output_violations: list[Violation] = field(default_factory=list)
    caller: str | None = None  # file:line that made the call (in the user's files)
    exception: BaseException | None = None  # raised inside this call (first recorder to see it)
    step: int | None = None  # the loop timestep, inferred after the run

    @property
    def component(self) -> str:
        return self.contract.component

    @property
    def method(self) -> str:
        return self.contract.method


def tensor_shapes(node: Node, value: Any, present: bool = True) -> Iterator[tuple[Leaf, list[int]]]:
    """(leaf, shape) for every tensor of a contract node found in a value."""
    for n, v, here in _walk(node, value, present):
        if isinstance(n, Leaf) and here and isinstance(v, torch.Tensor):
            yield n, list(v.shape)


def frame_location(frame: FrameType | None, files: frozenset[str]) -> str | None:
    """file:line of the innermost frame (walking outwards) that lies in one of `files`."""
    while frame is not None:
        if _real(frame.f_code.co_filename) in files:
            return f"{_shown(frame.f_code.co_filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


_REAL: dict[str, str] = {}


def _real(filename: str) -> str:
    if filename not in _REAL:
        _REAL[filename] = os.path.realpath(filename) if not filename.startswith("<") else filename
    return _REAL[filename]


def _shown(filename: str) -> str:
    from aimespec.runtime.discover import display_path

    return display_path(filename)


def assign_steps(calls: list[CallRecord], T: int) -> None:
    """Step per call: a contract called once has None; called k*T times, occurrence // k."""
    counts = Counter(c.contract.name for c in calls)
    seen: Counter[str] = Counter()
    for call in calls:
        name = call.contract.name
        n = counts[name]
        i = seen[name]
        seen[name] += 1
        call.step = None if n == 1 or T < 1 or n % T else i // (n // T)


class Recorder:
    """Wraps the contract methods of a model's components and records every call."""

    def __init__(self, cfg: AimeConfig, files: frozenset[str], *, check: bool, memo: bool = False) -> None:
        """`memo`: on the meta device, answer repeated identical calls from a `MetaMemo` (meta_memo.py)."""
        self.cfg = cfg
        self.memo = MetaMemo() if memo else None
        self.files = files
        self.check = check
        self.calls: list[CallRecord] = []
        self._stack: list[str] = []
        self._installed: list[tuple[Any, str, bool, Any]] = []  # (obj, attr, had_own, previous)
        self._seen_errors: set[int] = set()
        self._keep: list[BaseException] = []
        self.instances: dict[int, tuple[str, Any]] = {}  # id(obj) -> (owner path, obj)
        self.progress: Callable[[], None] | None = None  # called at every call's start and end

    # --- installing ------------------------------------------------------------------------
    def install(self, root: Any, *, include_root: bool = False) -> "Recorder":
        """Wrap every contract-implementing submodule of `root` (the root itself only if asked)."""
        if isinstance(root, torch.nn.Module):
            named = list(root.named_modules(remove_duplicate=True))
        else:
            named = [("", root)]
        found: list[tuple[str, Any]] = []
        for path, module in named:
            if module is not root or include_root:
                found.append((path, module))
            for attr, value in getattr(module, "__dict__", {}).items():  # plain objects held as attributes
                if not attr.startswith("_") and not isinstance(value, (torch.nn.Module, torch.Tensor)):
                    found.append((f"{path}.{attr}" if path else attr, value))
        for path, obj in found:
            hit = contract_of(type(obj))
            if hit is None or hit[0] == WORLD_CONTRACT:
                continue
            self._wrap(obj, path or type(obj).__name__, hit[0])
        return self

    def uninstall(self) -> None:
        for obj, attr, had_own, previous in reversed(self._installed):
            if had_own:
                object.__setattr__(obj, attr, previous)
            else:
                try:
                    object.__delattr__(obj, attr)
                except AttributeError:
                    pass
        self._installed.clear()

    def __enter__(self) -> "Recorder":
        self._observing = observing(self._observe)
        self._observing.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._observing.__exit__(*exc)
        self.uninstall()

    def start_run(self) -> list[CallRecord]:
        """Begin a fresh list of calls (one forward pass); returns it."""
        self.calls = []
        return self.calls

    @contextlib.contextmanager
    def top(self, contract: str) -> Iterator[None]:
        """A call the engine makes itself: not recorded (its checked method would be observed)."""
        self._stack.append(contract)
        try:
            yield
        finally:
            self._stack.pop()

    def owns(self, exc: BaseException) -> bool:
        """Whether a recorded call already reported this exception."""
        return id(exc) in self._seen_errors

    # --- the wrapper -----------------------------------------------------------------------
    def _wrap(self, obj: Any, owner: str, component: str) -> None:
        if id(obj) in self.instances:
            return
        self.instances[id(obj)] = (owner, obj)
        for contract in methods_of(component):
            for attr, view in [(contract.method, None), *_views(type(obj), contract)]:
                original = getattr(obj, attr, None)
                if not callable(original):
                    continue
                had_own = attr in getattr(obj, "__dict__", {})
                wrapper = self._make_wrapper(obj, owner, contract, original, view)
                try:
                    object.__setattr__(obj, attr, wrapper)
                except (AttributeError, TypeError):  # __slots__ or a read-only attribute: not recordable
                    continue
                self._installed.append((obj, attr, had_own, original))

    def _make_wrapper(self, obj: Any, owner: str, contract: MethodContract, original: Any,
                      view: Callable[[Any], Any] | None = None) -> Any:
        try:
            signature: inspect.Signature | None = inspect.signature(original)
        except (TypeError, ValueError):
            signature = None
        recorder = self

        def recorded(*args: Any, **kwargs: Any) -> Any:
            if view is not None and recorder._stack and recorder._stack[-1] == contract.name:
                return original(*args, **kwargs)  # the contract's method calling its richer self: one call
            return recorder._call(obj, owner, contract, original, signature, args, kwargs, sys._getframe(1), view)

        recorded.__wrapped__ = original  # type: ignore[attr-defined]
        return recorded

    def _call(self, obj: Any, owner: str, contract: MethodContract, original: Any,
              signature: inspect.Signature | None, args: tuple, kwargs: dict, caller: FrameType,
              view: Callable[[Any], Any] | None = None) -> Any:
        if self.progress is not None:
            self.progress()
        arguments = name_arguments(contract, signature, args, kwargs)
        record = CallRecord(len(self.calls), contract, owner, type(obj))
        record.caller = frame_location(caller, self.files)
        self.calls.append(record)
        self._shapes_in(record, arguments)
        checker = CallChecker(contract, self.cfg, values=True) if self.check else None
        if checker is not None:
            record.input_violations = checker.check_inputs(arguments)
        method = contract.method if view is None else f"{contract.method}/{getattr(original, '__name__', '')}"
        keyed = self.memo.key(obj, method, args, kwargs) if self.memo is not None else None
        entry = self.memo.get(keyed[0]) if self.memo is not None and keyed is not None else None
        if entry is not None and self.memo is not None:  # the same call on meta ran before in this pass
            result = self.memo.replay(entry)
            self.calls += [_fresh(r, len(self.calls) + i) for i, r in enumerate(entry.inner)]
        else:
            before = attributes(obj) if keyed is not None else None
            self._stack.append(contract.name)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:  # recorded (timeouts included), then passed on unchanged
                if id(exc) not in self._seen_errors and not isinstance(exc, KeyboardInterrupt):
                    self._seen_errors.add(id(exc))
                    self._keep.append(exc)
                    record.exception = exc
                raise
            finally:
                self._stack.pop()
            inner = self.calls[record.index + 1:]
            if self.memo is not None and keyed is not None and before is not None and not any(
                    c.exception is not None for c in inner):
                self.memo.store(keyed[0], keyed[1], obj, result, before, [_fresh(r, r.index) for r in inner])
        if self.progress is not None:
            self.progress()
        shown = result if view is None else view(result)
        self._shapes_out(record, shown)
        if checker is not None:
            record.output_violations = checker.check_outputs(shown)
            record.bindings = dict(checker.bindings.values)
        return result

    def _observe(self, contract: MethodContract, arguments: dict[str, Any], result: Any) -> None:
        """A checked (reference) call that did not come through a wrapper: record it too."""
        if self._stack and self._stack[-1] == contract.name:
            return
        record = CallRecord(len(self.calls), contract, contract.component, object)
        record.caller = frame_location(sys._getframe(1), self.files)
        self.calls.append(record)
        self._shapes_in(record, arguments)
        self._shapes_out(record, result)
        if self.check:
            checker = CallChecker(contract, self.cfg, values=True)
            record.input_violations = checker.check_inputs(arguments)
            record.output_violations = checker.check_outputs(result)

    # --- shapes ----------------------------------------------------------------------------
    def _shapes_in(self, record: CallRecord, arguments: Mapping[str, Any]) -> None:
        for p in record.contract.params:
            if p.name in arguments:
                for leaf, shape in tensor_shapes(p.node, arguments[p.name]):
                    record.inputs[leaf.path] = shape
                    record.symbolic[leaf.path] = leaf.symbolic

    def _shapes_out(self, record: CallRecord, result: Any) -> None:
        for leaf, shape in tensor_shapes(record.contract.returns, result):
            record.outputs[leaf.path] = shape
            record.symbolic.setdefault(leaf.path, leaf.symbolic)


def _fresh(record: CallRecord, index: int) -> CallRecord:
    """A copy of a recorded call at another position: its own dicts and violations (engines amend them)."""
    return dataclasses.replace(
        record, index=index, inputs=dict(record.inputs), outputs=dict(record.outputs),
        symbolic=dict(record.symbolic), bindings=dict(record.bindings), step=None,
        input_violations=[copy.copy(v) for v in record.input_violations],
        output_violations=[copy.copy(v) for v in record.output_violations])


def _views(cls: type, contract: MethodContract) -> list[tuple[str, Callable[[Any], Any]]]:
    """The methods of `cls` checked against `contract` through a view (other than the contract's own)."""
    found = []
    for klass in cls.__mro__:
        for attr, fn in vars(klass).items():
            view = getattr(fn, "__aimespec_view__", None)
            if (attr != contract.method and view is not None
                    and getattr(fn, "__aimespec_contract__", None) == contract.name):
                found.append((attr, view))
    return found


def name_arguments(contract: MethodContract, signature: inspect.Signature | None, args: tuple,
                   kwargs: dict) -> dict[str, Any]:
    """The call's arguments under the contract's parameter names (the user's may differ)."""
    names = [p.name for p in contract.params]
    variadic = signature is not None and any(
        p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values())
    if signature is not None and not variadic:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            bound = None
        if bound is not None:
            own = [n for n, p in signature.parameters.items()
                   if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            out = {}
            for user_name, contract_name in zip(own, names, strict=False):
                if user_name in bound.arguments:
                    out[contract_name] = bound.arguments[user_name]
            for key, value in bound.arguments.items():
                if key in names and key not in out:
                    out[key] = value
            return out
    out = dict(zip(names, args, strict=False))
    out.update({k: v for k, v in kwargs.items() if k in names})
    return out

