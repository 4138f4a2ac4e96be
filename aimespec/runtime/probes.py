"""The behavioural probes `batch`, `causal` and `repeat`: bugs where every shape is right.

Each probe calls one contract method of a built object a few times on small real tensors
drawn from the contract (`make_inputs`), modules in `eval()` (restored after), every random
draw keyed by its order in the call (`SeededDraws`), and compares what must not change:

- `batch`: example `CHANGED` of every batched input replaced with fresh values, then example 0: no other
  example's outputs may change (a `[B*T, ...]` fold in the wrong order, `batch_first=False`,
  a statistic over the batch axis all break it);
- `causal` (contracts that declare `Causal`): the inputs at steps >= s replaced: no output
  at a step < s may change;
- `repeat`: the same call twice gives the same outputs, and so does a third after a call at
  another (B, T) (state kept on the object between calls breaks it). A contract that
  declares `Stateful` is compared from a snapshot of the object instead.

A probe that cannot run says `skipped: <reason>`; `config` (rebuilding at another config)
lives with the check engine (`aimespec.commands.probe_config`).
"""

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract
from aimespec.core.invariants import Causal, Stateful, declared
from aimespec.core.violation import Violation, ViolationKind
from aimespec.runtime import probe_causes as causes
from aimespec.runtime.deadline import CallTimeout
from aimespec.runtime.hold import CallInputs, call_method, make_inputs
from aimespec.runtime.probe_compare import (
    Output,
    cells,
    change,
    fold_pattern,
    input_leaves,
    outputs,
    per_index,
    replace_inputs,
    scale_of,
    tolerance,
)
from aimespec.runtime.rng import SeededDraws

PROBES = ("batch", "causal", "config", "repeat")  # as SPEC names them; `config` runs in the check engine
PROBE_PAIR = (2, 2)  # (B, T) the probes run at: the fewest frames that show a fold's mixing pattern
OTHER_PAIR = (1, 1)  # the call at another (B, T) between two repeats (one frame: cheap)
CHANGED = 1  # the example the batch probe replaces (example 0 would hide a fold: its frames stay first)
FRESH_SEED = 7_919  # offset of the seed the replacement values are drawn with

Runner = Callable[[Callable[[], Any]], Any]


@dataclass
class ProbeResult:
    """One probe's verdict on one contract method: `ok`, `failed` (with its violation) or `skipped: why`."""

    name: str
    status: str
    violation: Violation | None = None
    cause: str | None = None  # the likely cause, for the report's "likely cause" line

    @property
    def failed(self) -> bool:
        return self.violation is not None


def _skipped(name: str, reason: str) -> ProbeResult:
    return ProbeResult(name, f"skipped: {reason}")


class _CallFailed(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


@dataclass
class Prober:
    """Runs the probes on `obj`'s contract method `contract` at `pair` (B, T)."""

    obj: Any
    contract: MethodContract
    cfg: AimeConfig
    seed: int = 0
    run: Runner | None = None  # how to run user code (the check engine's time limit); default: directly
    pair: tuple[int, int] = PROBE_PAIR
    where: str | None = None  # file:line a finding points at (the method's return)
    device: str | torch.device = "cpu"  # where the inputs are drawn (the object's device)
    _base: Any = field(default=None, init=False)
    _snapshot: Any = field(default=None, init=False)
    fold: bool = field(default=False, init=False)  # the batch probe saw a wrong-order fold

    # --- running ---------------------------------------------------------------------------
    def probes(self, names: tuple[str, ...] = ("batch", "causal", "repeat")) -> list[ProbeResult]:
        """Each named probe's result, in the order given (`config` is not run here)."""
        with one_thread():
            return self._probes(names)

    def _probes(self, names: tuple[str, ...]) -> list[ProbeResult]:
        B, T = self.pair
        self.inputs = make_inputs(self.contract, self.cfg, B, T, self.seed, self.device)
        self.stateful = declared(self.contract.invariants, Stateful) is not None
        if self.stateful:
            try:
                self._snapshot = copy.deepcopy(self.obj)
            except Exception as exc:  # the user's object may refuse to be copied
                reason = f"the contract declares Stateful and the object cannot be copied ({type(exc).__name__})"
                return [_skipped(n, reason) for n in names]
        self.state_before = _state(self.obj)
        try:
            self._base = self._call(self.inputs.args)
        except _CallFailed as exc:
            reason = f"the call raised {type(exc.exc).__name__} at B={B}, T={T}: {_short(exc.exc)}"
            return [_skipped(n, reason) for n in names]
        self.base = outputs(self.contract, self._base)
        self.written = _written(self.obj, self.state_before)  # what the call wrote: restored before each probe
        if not self.base:
            return [_skipped(n, "the call returned no tensor the contract names") for n in names]
        done = []
        try:
            for name in names:
                probe = getattr(self, f"_{name}")
                try:
                    done.append(probe())
                except _CallFailed as exc:
                    done.append(_skipped(name, f"a probe call raised {type(exc.exc).__name__}: {_short(exc.exc)}"))
        finally:  # the object as the first probe call found it
            _restore(self.obj, self.state_before, _written(self.obj, self.state_before))
        return done

    def _call(self, args: tuple[Any, ...], *, restore: bool = True) -> Any:
        """One probe call from the state the first call started from (unless `restore` is False)."""
        target = copy.deepcopy(self._snapshot) if self.stateful else self.obj
        if restore and not self.stateful and getattr(self, "written", None):
            _restore(self.obj, self.state_before, self.written)
        inputs = CallInputs(self.contract.name, args, self.inputs.names, *self.pair, self.seed, self.inputs.values)

        def call() -> Any:
            with _eval(target), torch.no_grad(), torch.random.fork_rng(devices=[]), SeededDraws(self.seed):
                return call_method(target, self.contract, inputs)

        try:
            return self.run(call) if self.run is not None else call()
        except (Exception, CallTimeout, SystemExit) as exc:  # the user's code: a skipped probe, never a crash
            raise _CallFailed(exc) from exc

    def _violation(self, kind: str, out: Output, message: str, probe: dict[str, Any],
                   documented_error: int | None = None, fix: str | None = None,
                   where: str | None = None) -> Violation:
        shape = list(out.value.shape)
        v = Violation(contract=self.contract.name, tensor=out.leaf.path, kind=ViolationKind(kind),
                      expected=out.leaf.symbolic,
                      expected_shape=shape, got=shape, dims=out.leaf.dims, message=f"{self.contract.name}: {message}",
                      documented_error=documented_error, fix=fix,
                      where=where or self.where, batch=self.pair[0], seq_len=self.pair[1], seed=self.seed, probe=probe)
        return v

    # --- batch -------------------------------------------------------------------------------
    def _batch(self) -> ProbeResult:
        """Example CHANGED replaced, then example 0: a recurrence across the batch axis (an RNN left at
        batch_first=False) carries a change forward only, so replacing the last example shows nothing."""
        first = self._batch_at(CHANGED)
        if first.status != "ok" or self.pair[0] < 2:
            return first
        return self._batch_at(0)

    def _batch_at(self, j: int) -> ProbeResult:
        B, T = self.pair
        batched = [leaf.path for leaf, value in input_leaves(self.contract, self.inputs.args)
                   if "B" in leaf.dims and value.dim() == len(leaf.dims)]
        compared = {p: o for p, o in self.base.items() if o.axis("B") is not None}
        if not batched:
            return _skipped("batch", "no input has a batch axis B")
        if not compared:
            return _skipped("batch", "no output has a batch axis B")
        fresh = make_inputs(self.contract, self.cfg, B, T, self.seed + FRESH_SEED, self.device)

        def edit(leaf, value, new):
            if "B" not in leaf.dims or value.dim() != len(leaf.dims) or new.shape != value.shape:
                return value
            ax = leaf.dims.index("B")
            out = value.clone()
            out.select(ax, j).copy_(new.select(ax, j))
            return out

        probed = outputs(self.contract, self._call(replace_inputs(self.contract, self.inputs.args, fresh.args, edit)))
        affected: set[int] = set()
        worst: tuple[Output | None, float] = (None, 0.0)
        masks = []
        for path, out in compared.items():
            other, ax = probed.get(path), out.axis("B")
            if other is None or other.value.shape != out.value.shape or ax is None:
                continue
            diff, tol = change(out.value, other.value), tolerance(out.value)
            per = per_index(diff, ax)
            for ex in range(B):
                if ex != j and float(per[ex]) > tol:
                    affected.add(ex)
                    if float(per[ex]) > worst[1]:
                        worst = (out, float(per[ex]))
            t_ax = out.axis("T")
            if t_ax is not None:
                masks.append(cells(diff, ax, t_ax) > tol)
        if not affected or worst[0] is None:
            return ProbeResult("batch", "ok")
        out, most = worst
        fold = fold_pattern(masks, j)
        self.fold = fold
        cause, fix, where = causes.batch_cause(self.obj, fold)
        shown = ", ".join(str(e) for e in sorted(affected))
        message = (f"replacing example {j} of {', '.join(batched)} changed the outputs of example"
                   f"{'s' if len(affected) > 1 else ''} {shown} ({out.leaf.path} by up to {most:.3g}, its scale "
                   f"{scale_of(out.value):.3g}): each example's outputs must depend on its own inputs only")
        probe = {"changed_example": j, "affected_examples": sorted(affected), "max_change": most,
                 "changed": f"example {j} of {', '.join(batched)} (fresh values from the contract)",
                 "likely_cause": cause}
        v = self._violation("batch", out, message, probe, 1 if fold else None, fix, where)
        return ProbeResult("batch", "failed", v, cause)

    # --- causal ------------------------------------------------------------------------------
    def _causal(self) -> ProbeResult:
        decl = declared(self.contract.invariants, Causal)
        if not isinstance(decl, Causal):
            return _skipped("causal", "the contract declares no Causal(...)")
        axis, T = decl.axis, self.pair[1]
        steps = [leaf.path for leaf, value in input_leaves(self.contract, self.inputs.args)
                 if axis in leaf.dims and value.dim() == len(leaf.dims)
                 and (not decl.inputs or leaf.path in decl.inputs)]
        compared = {p: o for p, o in self.base.items()
                    if o.axis(axis) is not None and (not decl.outputs or p in decl.outputs)}
        if not steps or not compared:
            return _skipped("causal", f"no {'input' if not steps else 'output'} has the time axis {axis}")
        size = self.inputs.values.get(axis, T)
        if size < 2:
            return _skipped("causal", f"{axis} = {size}: no later step to change")
        s = size // 2

        def edit(leaf, value, new):
            if leaf.path not in steps or new.shape != value.shape:
                return value
            ax = leaf.dims.index(axis)
            out = value.clone()
            out.narrow(ax, s, size - s).copy_(new.narrow(ax, s, size - s))
            return out

        fresh = make_inputs(self.contract, self.cfg, *self.pair, self.seed + 2 * FRESH_SEED, self.device)
        probed = outputs(self.contract, self._call(replace_inputs(self.contract, self.inputs.args, fresh.args, edit)))
        leaked: set[int] = set()
        worst: tuple[Output | None, float] = (None, 0.0)
        for path, out in compared.items():
            other, ax = probed.get(path), out.axis(axis)
            if other is None or other.value.shape != out.value.shape or ax is None:
                continue
            per = per_index(change(out.value, other.value), ax)
            tol = tolerance(out.value)
            for t in range(min(s, per.shape[0])):
                if float(per[t]) > tol:
                    leaked.add(t)
                    if float(per[t]) > worst[1]:
                        worst = (out, float(per[t]))
        if not leaked or worst[0] is None:
            return ProbeResult("causal", "ok")
        out, most = worst
        first = min(leaked)
        cause, fix, where = causes.causal_cause(self.obj, fold=self.fold)
        message = (f"changing {', '.join(steps)} at steps >= {s} changed {out.leaf.path} at step"
                   f"{'s' if len(leaked) > 1 else ''} {', '.join(str(t) for t in sorted(leaked))} (by up to "
                   f"{most:.3g}; first leaked step {first}): the output at step t may read steps <= t only")
        probe = {"changed_from_step": s, "affected_steps": sorted(leaked), "max_change": most,
                 "changed": f"{', '.join(steps)} at {_steps(s, size - 1)} (fresh values from the contract)",
                 "likely_cause": cause}
        v = self._violation("causal", out, message, probe, 1 if self.fold else None, fix, where)
        return ProbeResult("causal", "failed", v, cause)

    # --- repeat ------------------------------------------------------------------------------
    def _repeat(self) -> ProbeResult:
        """The first call's inputs again, after the other probes' calls and one at another (B, T)."""
        B2, T2 = OTHER_PAIR
        between = "the batch and causal probes' calls"
        if not self.stateful:
            try:
                self._call_at(make_inputs(self.contract, self.cfg, B2, T2, self.seed + 3 * FRESH_SEED, self.device))
                between = f"calls with other inputs (one at B={B2}, T={T2})"
            except _CallFailed:
                pass  # a model that cannot run at B=1, T=1 is the shape checks' business, not this probe's
        after = outputs(self.contract, self._call(self.inputs.args, restore=False))
        found = _largest_change(self.base, after)
        if found is None:
            return ProbeResult("repeat", "ok")
        if self.stateful or _largest_change(self.base, outputs(self.contract, self._call(self.inputs.args))):
            return self._repeat_failed(found, "two calls with the same inputs and seed gave different outputs",
                                       "the same inputs and seed must give the same outputs",
                                       causes.REPEAT_SAME_CAUSE)
        changed = _written(self.obj, self.state_before)
        return self._repeat_failed(found, f"after {between} the same inputs gave different outputs",
                                   "a call must leave no trace on the object that changes the next one",
                                   causes.repeat_state_cause(changed))

    def _call_at(self, inputs: CallInputs) -> None:
        saved, saved_pair = self.inputs, self.pair
        self.inputs, self.pair = inputs, (inputs.batch, inputs.seq_len)
        try:
            self._call(inputs.args)
        finally:
            self.inputs, self.pair = saved, saved_pair

    def _repeat_failed(self, found: tuple[Output, float], what: str, rule: str, cause: str) -> ProbeResult:
        out, most = found
        message = f"{what} ({out.leaf.path} by up to {most:.3g}, its scale {scale_of(out.value):.3g}): {rule}"
        probe = {"max_change": most, "changed": what, "likely_cause": cause}
        v = self._violation("repeat", out, message, probe, None, causes.REPEAT_FIX)
        return ProbeResult("repeat", "failed", v, cause)


def _largest_change(base: dict[str, Output], other: dict[str, Output]) -> tuple[Output, float] | None:
    worst: tuple[Output, float] | None = None
    for path, out in base.items():
        o = other.get(path)
        if o is None or o.value.shape != out.value.shape:
            continue
        most = float(change(out.value, o.value).max()) if out.value.numel() else 0.0
        if most > tolerance(out.value) and (worst is None or most > worst[1]):
            worst = (out, most)
    return worst


def _written(obj: Any, before: dict[str, torch.Tensor]) -> list[str]:
    """Names of the buffers and parameters whose values differ from `before`."""
    now = dict(_named_state(obj))
    return [name for name, old in before.items()
            if name in now and (now[name].shape != old.shape or not torch.equal(now[name].detach(), old))]


def _restore(obj: Any, before: dict[str, torch.Tensor], names: list[str]) -> None:
    now = dict(_named_state(obj))
    with torch.no_grad():
        for name in names:
            if name in now and now[name].shape == before[name].shape:
                now[name].copy_(before[name])


def _named_state(obj: Any) -> list[tuple[str, torch.Tensor]]:
    if not isinstance(obj, torch.nn.Module):
        return []
    return [(n, t) for n, t in [*obj.named_buffers(), *obj.named_parameters()] if t.device.type != "meta"]


def _state(obj: Any) -> dict[str, torch.Tensor]:
    """Copies of a module's buffers and parameters (what a call may write into)."""
    return {name: t.detach().clone() for name, t in _named_state(obj)}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread: the probes' tensors are small, and on a busy machine a second
    thread per op only waits (several times slower); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _eval(obj: Any) -> Iterator[None]:
    """Every submodule in eval() for the call, each one's own mode restored after."""
    if not isinstance(obj, torch.nn.Module):
        yield
        return
    modes = [(m, m.training) for m in obj.modules()]
    obj.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _steps(first: int, last: int) -> str:
    return f"step {first}" if first == last else f"steps {first}..{last}"


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
