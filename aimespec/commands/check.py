"""`aimespec check`: hold every component of a model file (or the reference model) to its contract.

Each component found is built (`from_config(cfg)` or `cls(cfg)`; a raising constructor is
a finding), and each of its contract's methods is called positionally on inputs drawn
from the contract, for the config's own (B, T) and `examples` random (B, T) (B != T among
them); results are checked for shapes, dtypes and value invariants. `build_model(cfg)`'s
model is run end to end with every component call inside it recorded and held to its
contract. Exceptions in the user's code are findings, explained in the config's symbols;
a call that does not return within `timeout` seconds is a finding too, never a hang.
"""

import inspect
import random
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from aimespec.commands import check_probes, check_timing
from aimespec.commands.check_inside import def_line, inside_violations, is_signature_error, signature_note
from aimespec.commands.check_meta import MetaPasses, NeedsRealTensors
from aimespec.commands.check_probes import Started
from aimespec.commands.check_report import CheckReport, ContractResult
from aimespec.commands.coverage import check_symbol_fields, file_suggestions, unchecked_labels
from aimespec.commands.isolate import import_model, label_of, lost_message, run_isolated
from aimespec.commands.spec import WORLD
from aimespec.core.config import AimeConfig, ConfigRequest, as_config
from aimespec.core.contract import MethodContract, methods_of, resolve
from aimespec.core.dims import dim_names
from aimespec.core.errors import ContractViolation, UsageError
from aimespec.core.limits import seed_value, timeout_seconds
from aimespec.core.violation import Violation, ViolationKind, exception_violation
from aimespec.explain.findings import (
    Finding,
    documented,
    exception_where,
    explain_exception,
    output_where,
    shape_documented_error,
    value_advice,
)
from aimespec.runtime import alongside
from aimespec.runtime.alongside import Alongside
from aimespec.runtime.checked import checking
from aimespec.runtime.deadline import CallTimeout, Deadline
from aimespec.runtime.discover import Component, ModelSource, display_path
from aimespec.runtime.hold import CallInputs, bound_checker, build, call_method, make_inputs
from aimespec.runtime.record import CallRecord, Recorder, assign_steps
from aimespec.runtime.worker import WorkerLost

MAX_B, MAX_T = 16, 32  # range of the random examples' (B, T)
MAX_EXAMPLES = MAX_B * MAX_T  # there are no more distinct (B, T) to draw
WORLD_BUDGET = 8  # a whole-model random example runs at most 1/WORLD_BUDGET of the config's frames


def example_pairs(cfg: AimeConfig, n: int, seed: int, *, cap: tuple[int, int] | None = None,
                  budget: int | None = None) -> list[tuple[int, int]]:
    """The config's own (B, T), then `n` random distinct (B, T) from `random.Random(seed)`, B != T among them.

    Random pairs have B in 1..16 and T in 1..32 (or up to `cap`) and at most `budget` frames
    B*T (default: the config's own B*T, so the config's call is the most expensive one).
    """
    pairs = [(cfg.batch_size, cfg.sequence_length)]
    max_b, max_t = cap or (MAX_B, MAX_T)
    budget = max(budget or cfg.batch_size * cfg.sequence_length, 2)
    rng = random.Random(seed)

    def draw() -> tuple[int, int]:
        while True:
            b, t = rng.randint(1, max_b), rng.randint(1, max_t)
            if b * t <= budget:
                return b, t

    for _ in range(n):
        pair = draw()
        for _retry in range(20):
            if pair not in pairs:
                break
            pair = draw()
        if pair not in pairs:
            pairs.append(pair)
    if len(pairs) > 1 and all(b == t for b, t in pairs):
        b, t = pairs[-1]
        pairs[-1] = (b, t - 1) if t > 1 else (b, t + 1) if b * (t + 1) <= budget else (b + 1, t)
    return pairs


def check(path: str | Path | None, cfg: AimeConfig | ConfigRequest, *, examples: int = 3, seed: int = 0,
          timeout: float | None = None, device: str | torch.device = "cpu", meta: bool = True, probes: bool = True,
          vary_config: bool = True, max_memory: int | None = None, isolate: bool = True) -> CheckReport:
    """Check a model file (None: the bundled reference model) against every contract it implements.

    With `meta` (the default) the config's own, full-size (B, T) runs on the meta device when
    the code allows it (shapes and dtypes at no FLOPs); the random, smaller (B, T) run on real
    tensors and carry the value invariants. `probes` runs the behavioural probes (SPEC), `vary_config`
    their `config` probe (the whole check again at a second config with other widths). `timeout`
    (seconds a call may run) defaults to a limit that follows the work (`check_timing`).
    With `isolate` (the default) the file is imported and run in a worker process capped at
    `max_memory` bytes (`aimespec.runtime.worker`): whatever the model does to its process (exit,
    crash, print to fd 1) is a finding, never the report's end.
    """
    if isinstance(examples, bool) or not isinstance(examples, int) or not 0 <= examples <= MAX_EXAMPLES:
        raise UsageError(f"--examples must be an integer in [0, {MAX_EXAMPLES}] (there are only {MAX_EXAMPLES} "
                         f"distinct (B, T) with B <= {MAX_B} and T <= {MAX_T}), got {examples!r}")
    auto = timeout is None
    timeout = check_timing.DEFAULT_TIMEOUT if timeout is None else timeout_seconds(timeout)
    seed = seed_value(seed)
    started = time.perf_counter()

    def job() -> CheckReport:
        source = import_model(path, timeout)
        config = as_config(cfg, source.config_class)  # the file's own config class, when it has one
        check_symbol_fields(source, config)
        engine = _Engine(source, config, examples, seed, float(timeout), device, meta, probes, vary_config, auto)
        rows = engine.run()
        hints = [s.to_json() for s in file_suggestions(source, engine.models)]
        return CheckReport(config, source.label, seed, engine.pairs, rows, time.perf_counter() - started,
                           probe_config=engine.probe_config, suggestions=hints)

    def lost(error: WorkerLost) -> CheckReport:
        kind = ViolationKind.TIMEOUT if error.stopped else ViolationKind.EXCEPTION
        v = Violation(contract="(model file)", tensor="(process)", kind=kind, message=lost_message(error))
        row = ContractResult("(model file)", label_of(path))
        row.add(Finding(v))
        shown = as_config(cfg, AimeConfig, lenient=True)  # the file's config class lives in the lost worker
        return CheckReport(shown, label_of(path), seed, example_pairs(shown, examples, seed), [row],
                           time.perf_counter() - started)

    if not isolate:
        return job()
    return run_isolated(job, path, timeout=timeout, max_memory=max_memory, lost=lost)


def _free_used(mc: MethodContract) -> tuple[str, ...]:
    """B and T as far as the contract's inputs use them (a per-frame contract ignores T)."""
    used = {n for leaf in mc.input_leaves() for d in leaf.dims for n in dim_names(d)}
    return tuple(s for s in ("B", "T") if s in used)


class _Engine:
    def __init__(self, source: ModelSource, cfg: AimeConfig, examples: int, seed: int, timeout: float,
                 device: str | torch.device, meta: bool = True, probes: bool = True, vary_config: bool = True,
                 auto: bool = False) -> None:
        self.source, self.cfg, self.seed, self.timeout, self.device = source, cfg, seed, timeout, device
        self.probes, self.vary_config = probes, vary_config and probes
        self.probe_config: dict[str, Any] | None = None  # the config probe's changes, once it ran
        self.auto = auto  # no --timeout: the limit follows the measured work
        self.limit = timeout  # the limit of the call running now
        self.measured: check_timing.Measured | None = None
        self.pairs = example_pairs(cfg, examples, seed)
        frames = cfg.batch_size * cfg.sequence_length
        self.world_pairs = example_pairs(cfg, examples, seed, cap=(cfg.batch_size, cfg.sequence_length),
                                         budget=max(frames // WORLD_BUDGET, 2))
        self.standalone: dict[tuple[type, str], ContractResult] = {}
        self.models: list[Any] = []  # every model built (for what it holds that no contract covers)
        self.meta = meta
        self.started: list[Alongside] = []  # probes started alongside
        self.pending_probes: list[tuple[ContractResult, MethodContract, Alongside, str | None]] = []  # rows held
        self.meta_passes = MetaPasses(self._run, lambda: Recorder(self.cfg, self.source.files, check=True, memo=True))
        # value invariants need real numbers: when shapes ran on meta, one small real call (B != T)
        self.small_pair = (min(2, cfg.batch_size), min(3, cfg.sequence_length))

    def run(self) -> list[ContractResult]:
        rows: list[ContractResult] = []
        threads = torch.get_num_threads()
        if self.probes and alongside.available(self.device):  # a CPU for the probes alongside, the others here
            torch.set_num_threads(max(1, threads - 1))
        try:
            with checking("off"):  # one checker, this engine (reference components would check themselves too)
                self._run_all(rows)
        finally:  # probes still running alongside when something went wrong: not wanted any more
            for job in self.started:
                job.cancel()
            torch.set_num_threads(threads)
        return rows

    def _run_all(self, rows: list[ContractResult]) -> None:
        worlds: Iterable[_BuiltWorld | list[ContractResult]] = self._build_worlds()
        if self.probes and alongside.available(self.device):  # built first: their probes, the longest, run
            worlds = list(worlds)                             # alongside the components' checks
        for comp in self.source.part_components():
            rows += self._component(comp)
        for world in worlds:  # otherwise each is built here, when its turn comes (one model in memory at a time)
            rows += world if isinstance(world, list) else self._world(world)
        self.probe_config = check_probes.finish(self, rows)

    # --- calling user code -----------------------------------------------------------------
    def _run(self, fn: Callable[[], Any], recorder: Recorder | None = None) -> Any:
        """fn() with torch's RNG seeded (restored after) under the time limit, kicked by recorded calls."""
        deadline = Deadline(self.limit)
        if recorder is not None:
            recorder.progress = deadline.kick
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(self.seed)  # CPU only: no lazy CUDA seeding
                return deadline.run(fn)
        finally:
            if recorder is not None:
                recorder.progress = None

    def _build(self, factory: Callable[[], Any]) -> Any:
        obj = self._run(factory)
        if isinstance(obj, torch.nn.Module) and str(self.device) != "cpu":
            obj = obj.to(self.device)
        return obj

    @staticmethod
    def _file_of(obj: Any) -> str | None:
        try:
            return display_path(inspect.getsourcefile(obj) or "") or None
        except (TypeError, OSError):
            return None

    # --- one class, every method of its contract ------------------------------------------------
    def _component(self, comp: Component) -> list[ContractResult]:
        try:
            obj = self._build(lambda: build(comp.cls, self.cfg))
        except (Exception, CallTimeout, SystemExit) as exc:  # a finding on each method it would have served
            rows = []
            for mc in methods_of(comp.contract):
                row = ContractResult(mc.name, comp.name, file=self._file_of(comp.cls))
                row.add(self._raised(mc.name, _build_kind(exc), exc, None, None))
                rows.append(row)
            return rows
        rows: list[ContractResult] = []
        inner: dict[tuple, ContractResult] = {}
        started = self._start_probes(list(methods_of(comp.contract)), obj)
        with Recorder(self.cfg, self.source.files, check=True).install(obj) as recorder:
            for mc in methods_of(comp.contract):
                row = ContractResult(mc.name, comp.name, file=self._file_of(comp.cls))
                self.standalone[(comp.cls, mc.name)] = row
                rows.append(row)
                if not callable(getattr(obj, mc.method, None)):
                    row.add(Finding(Violation(contract=mc.name, tensor="(method)", kind=ViolationKind.MISSING,
                                              message=f"{mc.name}: {comp.name} has no method {mc.method!r}")))
                    continue
                done: set[tuple[int, ...]] = set()
                used = _free_used(mc)
                real = []  # the (B, T) that could not run on the meta device
                for B, T in self.pairs:
                    same = tuple(v for s, v in (("B", B), ("T", T)) if s in used)
                    if same in done:  # e.g. a per-frame contract: T changes nothing
                        continue
                    done.add(same)
                    if not self._on_meta(comp.cls, lambda comp=comp: build(comp.cls, self.cfg), mc.method,
                                         lambda o, r, mc=mc, B=B, T=T, row=row: self._call(
                                             row, mc, o, comp.cls, B, T, r, inner, device="meta")):
                        real.append((B, T))
                if len(real) < len(done):  # shapes ran on meta: value invariants on small real tensors
                    real.append(self.small_pair)
                self._real_calls(real, used, lambda B, T, mc=mc, row=row: self._call(
                    row, mc, obj, comp.cls, B, T, recorder, inner), lambda inputs, mc=mc: call_method(obj, mc, inputs),
                    mc)
        for mc, row in zip(methods_of(comp.contract), rows, strict=True):
            self._probe(row, mc, obj, started.get(mc.name))
        return rows + list(inner.values())

    def _real_calls(self, real: list[tuple[int, int]], used: tuple[str, ...], call: Callable[[int, int], bool],
                    invoke: Callable[[CallInputs], Any], mc: MethodContract) -> None:
        check_timing.run_examples(self, real, used, call, invoke, mc)

    def _call(self, row: ContractResult, mc: MethodContract, obj: Any, cls: type, B: int, T: int,
              recorder: Recorder, inner: dict[tuple, ContractResult], device: str | None = None) -> bool:
        """One generated call of `mc` on the component `obj`; True when the remaining examples should be skipped."""
        return self._invoke(row, mc, lambda inputs: call_method(obj, mc, inputs), getattr(cls, mc.method, None),
                            cls.__name__, B, T, recorder, inner, device)

    def _invoke(self, row: ContractResult, mc: MethodContract, invoke: Callable[[CallInputs], Any], method: Any,
                label: str, B: int, T: int, recorder: Recorder, inner: dict[tuple, ContractResult],
                device: str | None) -> bool:
        """Draw inputs, call, hold the result and every recorded inner call to their contracts.

        True when the remaining examples should be skipped (a timeout). With `device="meta"` an
        exception raises `NeedsRealTensors` instead of becoming a finding, and nothing is recorded.
        """
        recorder.start_run()
        inputs = make_inputs(mc, self.cfg, B, T, self.seed, device or self.device)
        checker = bound_checker(mc, self.cfg, inputs)
        stop = False
        try:
            with recorder.top(mc.name):
                result = self._run(lambda: invoke(inputs), recorder)
        except (Exception, CallTimeout, SystemExit) as exc:
            if device == "meta":
                raise NeedsRealTensors from exc
            row.calls += 1
            row.note_example(B, T)
            stop = isinstance(exc, CallTimeout)
            note = signature_note(mc, method) if is_signature_error(exc, method) else None
            self._failed(row, mc.name, exc, B, T, recorder, label, note, def_line(method) if note else None)
        else:
            failed = next((c.exception for c in recorder.calls if c.exception is not None), None)
            if device == "meta" and failed is not None:
                raise NeedsRealTensors from failed  # an inner call failed on meta and the user's code caught it
            row.calls += 1
            row.note_example(B, T)
            found, inside = inside_violations(mc, self.cfg, inputs, result, checker.check_outputs(result))
            for v in found + inside:  # a wrong structure holding the contract's: what it holds is checked too
                row.add(self._shape_finding(v, B, T, None, output_where(method, mc, v)))
        assign_steps(recorder.calls, T)
        self._collect(recorder.calls, label, B, T, inner)
        return stop

    # --- the whole model -----------------------------------------------------------------------
    def _build_worlds(self) -> Iterator["_BuiltWorld | list[ContractResult]"]:
        """Each whole model to check, built and its probes started; a model that could not be built is its row."""
        covered: set[type] = set()
        if self.source.build_model is not None:
            yield self._build_world(self.source.build_model, "build_model", covered)
        for comp in self.source.world_components():
            if not any(issubclass(t, comp.cls) for t in covered):
                yield self._build_world(comp.cls, comp.name, covered)

    def _build_world(self, factory: Any, label: str, covered: set[type]) -> "_BuiltWorld | list[ContractResult]":
        mc = resolve(WORLD)
        make = (lambda: build(factory, self.cfg)) if isinstance(factory, type) else (lambda: factory(self.cfg))
        row = ContractResult(mc.name, label, checked_in="model", file=self._file_of(factory))
        try:
            model = self._build(make)
        except (Exception, CallTimeout, SystemExit) as exc:
            row.add(self._raised(mc.name, _build_kind(exc), exc, None, None))
            return [row]
        covered.add(type(model))
        self.models.append(model)
        row.unchecked = unchecked_labels(model)
        forward = getattr(model, "forward_sequence", None)
        if not callable(forward):
            row.add(Finding(Violation(contract=mc.name, tensor="(method)", kind=ViolationKind.MISSING,
                                      message=f"{mc.name}: {label} built a {type(model).__name__} with no "
                                              "forward_sequence")))
            return [row]
        return _BuiltWorld(factory, make, label, row, model, self._start_probes([mc], model).get(mc.name))

    def _world(self, world: "_BuiltWorld") -> list[ContractResult]:
        mc = resolve(WORLD)
        label, row, model = world.label, world.row, world.model
        inner: dict[tuple, ContractResult] = {}
        real = [(B, T) for B, T in self.world_pairs  # shapes on meta where the code allows it
                if not self._on_meta(world.factory, world.make, "forward_sequence",
                                     lambda m, r, B=B, T=T: self._world_call(row, mc, m, label, B, T, r, inner,
                                                                             "meta"))]
        if len(real) < len(self.world_pairs):  # value invariants: on small real tensors
            real.append(self.small_pair)
        with Recorder(self.cfg, self.source.files, check=True).install(model) as recorder:
            self._real_calls(real, ("B", "T"), lambda B, T: self._world_call(row, mc, model, label, B, T, recorder,
                                                                             inner),
                             lambda inputs: model.forward_sequence(*inputs.args), mc)
        self._probe(row, mc, model, world.started)
        return [row, *inner.values()]

    def _start_probes(self, mcs: list[MethodContract], obj: Any) -> dict[str, Started]:
        """The call probes on the object as built: in a process alongside where one can run, else in turn."""
        started = check_probes.start_probes(self, mcs, obj)
        self.started += [job for job in started.values() if isinstance(job, Alongside)]
        return started

    def _probe(self, row: ContractResult, mc: MethodContract, obj: Any, started: Started | None = None) -> None:
        """The behavioural probes, once the shapes held (SPEC "Behavioural probes"): their results, or
        the ones `started` alongside once the check collects them."""
        if self.probes:
            check_probes.probe_row(self, row, mc, obj, started)
        elif started is not None:
            started.cancel()

    def _world_call(self, row: ContractResult, mc: MethodContract, model: Any, label: str, B: int, T: int,
                    recorder: Recorder, inner: dict[tuple, ContractResult], device: str | None = None) -> bool:
        """One generated `forward_sequence`; True when the remaining examples should be skipped."""
        forward = model.forward_sequence
        return self._invoke(row, mc, lambda inputs: forward(*inputs.args), forward, label, B, T, recorder, inner,
                            device)

    def _on_meta(self, key: Any, make: Callable[[], Any], method: str, call: Callable[[Any, Recorder], Any]) -> bool:
        """Run `call(obj, recorder)` on an object built on the meta device (shapes only, no FLOPs):
        `check_meta.MetaPasses`. False when that is impossible (the caller re-runs on real tensors)."""
        if not self.meta or str(self.device) != "cpu":
            return False
        return self.meta_passes.call(key, make, method, call)

    def _failed(self, row: ContractResult, contract: str, exc: BaseException, B: int, T: int, recorder: Recorder,
                parent: str, note: str | None = None,
                where: str | None = None) -> None:
        """The top-level call raised: its own finding, or a pointer to the component call that raised."""
        if isinstance(exc, ContractViolation) and not recorder.owns(exc):
            for v in exc.violations:
                row.add(self._shape_finding(v, B, T, None, None))
            return
        culprit = next((c for c in recorder.calls if c.exception is exc), None)
        if culprit is None:
            row.add(self._raised(contract, _raised_kind(exc), exc, B, T, note, where))
            return
        assign_steps(recorder.calls, T)
        first = (self._call_findings(culprit, B, T) or [None])[0]
        what = "did not return in time" if isinstance(exc, CallTimeout) else f"raised {type(exc).__name__}: {exc}"
        shown = self._inner_label(parent, culprit)
        v = Violation(contract=contract, tensor="(call)", kind=_raised_kind(exc),
                      message=f"{contract}: stopped because {culprit.contract.name} in {shown} {what}",
                      ).at(B, T, self.seed, culprit.caller)
        if first is not None:
            v = v.explained_as(first.violation.documented_error, first.violation.fix)
        row.add(Finding(v, title=first.title if first else None, repeat_of=f"{culprit.contract.name} ({shown})"))

    # --- recorded calls inside a component or model ------------------------------------------------
    @staticmethod
    def _inner_label(parent: str, call: CallRecord) -> str:
        shown = f"{parent} → {call.owner}"
        return shown + (f" ({call.cls.__name__})" if call.cls is not object else "")

    def _collect(self, calls: list[CallRecord], parent: str, B: int, T: int,
                 inner: dict[tuple, ContractResult]) -> None:
        for call in calls:
            key = (call.owner, call.cls, call.contract.name)
            if key not in inner:
                inner[key] = ContractResult(call.contract.name, self._inner_label(parent, call), checked_in="inside",
                                            file=self._file_of(call.cls) if call.cls is not object else None)
            row = inner[key]
            row.calls += 1
            row.note_example(B, T)
            for finding in self._call_findings(call, B, T):
                alone = self.standalone.get((call.cls, call.contract.name))
                if alone is not None and any(f.key == finding.key for f in alone.findings):
                    finding.repeat_of = f"{alone.contract} ({alone.implementation})"
                row.add(finding)

    def _call_findings(self, call: CallRecord, B: int, T: int) -> list[Finding]:
        out: list[Finding] = []
        exc = call.exception
        for v in call.input_violations:
            if exc is not None and not isinstance(exc, CallTimeout):
                v = replace(v, message=f"{v.message}; the call then raised {type(exc).__name__}: {exc}")
            out.append(self._shape_finding(v, B, T, call.step, call.caller))
        for v in call.output_violations:
            method = getattr(call.cls, call.contract.method, None)
            out.append(self._shape_finding(v, B, T, call.step, output_where(method, call.contract, v)))
        if exc is not None and (isinstance(exc, CallTimeout) or not call.input_violations):
            if isinstance(exc, ContractViolation):
                out += [self._shape_finding(v, B, T, call.step, call.caller) for v in exc.violations]
            else:
                finding = self._raised(call.contract.name, _raised_kind(exc), exc, B, T)
                finding.step = call.step
                out.append(finding)
        return out

    # --- findings -------------------------------------------------------------------------------
    def _shape_finding(self, v: Violation, B: int, T: int, step: int | None, where: str | None) -> Finding:
        v = v.at(B, T, self.seed, where)
        error = v.documented_error if v.documented_error is not None else shape_documented_error(v, self.cfg, B, T)
        title, fix = documented(error)
        v = v.explained_as(error, fix)
        why = None
        if v.kind in _ADVISED and (advice := value_advice(v)) is not None:
            why, v = advice.why, v.explained_as(v.documented_error, advice.fix)
        return Finding(v, step=step, title=title, explanation=why)

    def _raised(self, contract: str, kind: ViolationKind, exc: BaseException, B: int | None,
                T: int | None, note: str | None = None, where: str | None = None) -> Finding:
        """An exception's finding; `note` (the two signatures of a call that could not bind) is its why."""
        where = exception_where(exc, self.source.files) or where
        if kind == ViolationKind.TIMEOUT:
            pair = (B, T) if B is not None and T is not None else None
            message = check_timing.timeout_message(contract, self.limit, pair, self.measured)
            return Finding(Violation(contract=contract, tensor="(call)", kind=kind, message=message,
                                     ).at(B, T, self.seed, where))
        explained = explain_exception(exc, self.cfg, B, T)
        title, fix = documented(explained.error)
        v = exception_violation(contract, kind, exc).at(B, T, self.seed, where).explained_as(explained.error, fix)
        text = "".join(traceback.format_exception(exc))
        return Finding(v, title=title, explanation=note or explained.reason, numbers=explained.numbers,
                       traceback=text)


_ADVISED = (ViolationKind.VALUE, ViolationKind.TYPE, ViolationKind.MISSING, ViolationKind.DTYPE)  # why + fix


@dataclass
class _BuiltWorld:
    """A whole model built, its row begun and its probes started; its checks come after the components'."""

    factory: Any  # the class or build_model (the meta passes' key)
    make: Callable[[], Any]  # builds it from the config
    label: str
    row: ContractResult
    model: Any
    started: Started | None


def _build_kind(exc: BaseException) -> ViolationKind:
    return ViolationKind.TIMEOUT if isinstance(exc, CallTimeout) else ViolationKind.CONSTRUCTOR


def _raised_kind(exc: BaseException) -> ViolationKind:
    return ViolationKind.TIMEOUT if isinstance(exc, CallTimeout) else ViolationKind.EXCEPTION
