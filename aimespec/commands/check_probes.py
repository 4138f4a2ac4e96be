"""The behavioural probes inside `aimespec check`: hooks the engine calls, and `aimespec.probe`.

After a contract's shapes and values hold, `probe_row` runs the `batch`, `causal` and
`repeat` probes (`aimespec.runtime.probes`) on the built object, and `finish` runs the
`config` probe: the whole check again at `varied_config(cfg)`, each of its findings a
`config` finding of the row it belongs to. Every row says what each probe did
(`row.probes`: "ok", "failed" or "skipped: <reason>"): nothing passes silently.
"""

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from aimespec.commands.check_report import ContractResult
from aimespec.commands.probe_config import config_violation, literal_width, varied_config
from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract, resolve
from aimespec.core.errors import ConfigError
from aimespec.core.violation import Violation, ViolationKind
from aimespec.explain.findings import Finding, documented, return_line
from aimespec.runtime import alongside
from aimespec.runtime.alongside import Alongside, AlongsideLost
from aimespec.runtime.deadline import CallTimeout
from aimespec.runtime.hold import build
from aimespec.runtime.probes import PROBE_PAIR, PROBES, Prober, ProbeResult, one_thread

CALL_PROBES = ("batch", "causal", "repeat")
SKIP_FAILED = "skipped: the contract does not hold at this config (its findings come first)"
SKIP_INSIDE = "skipped: called inside {parent}, whose own probes cover the whole call"
SKIP_OFF = "skipped: --no-vary-config"
SKIP_NOT_REACHED = "skipped: not reached at the varied config"
SKIP_ALL = "skipped: --no-probes"
SKIP_LOST = "skipped: their process ended without a result (the finding says how)"
PROBES_LOST = "{contract}: the model's code {reason}"


def _failed_before(row: ContractResult) -> bool:
    return any(f.violation.kind not in PROBES for f in row.findings)


def probe_finding(result: ProbeResult) -> Finding:
    v = result.violation
    assert v is not None
    title, _fix = documented(v.documented_error)
    return Finding(v, title=title, explanation=result.cause)


def _prober(engine: Any, mc: MethodContract, obj: Any) -> Prober:
    where = return_line(getattr(type(obj), mc.method, None))
    return Prober(obj, mc, engine.cfg, engine.seed, run=engine._run, where=where, device=engine.device)


class InTurn:
    """Probes that run here, in turn, once their row is done, on a copy of the object as it was built:
    what a process alongside sees, so that both ways report the same. Copied on the CPU only (a
    GPU copy would double the model's memory during the full-size checks) and under the engine's
    time limit; an object that cannot be copied is probed itself, as its examples left it."""

    def __init__(self, engine: Any, obj: Any) -> None:
        self.obj = obj
        if str(engine.device) == "cpu":
            try:
                self.obj = engine._run(lambda: copy.deepcopy(obj))
            except (Exception, CallTimeout, SystemExit):  # the user's object may refuse to be copied
                pass

    def cancel(self) -> None:
        self.obj = None


Started = Alongside | InTurn


def start_probes(engine: Any, mcs: list[MethodContract], obj: Any) -> dict[str, Started]:
    """The call probes of each method on a just-built object: started in a process alongside
    (`aimespec.runtime.alongside`) while the shape checks go on, or `InTurn` (one copy for all
    methods) where none can run."""
    methods = [mc for mc in mcs if callable(getattr(obj, mc.method, None))]
    if not engine.probes or not methods:
        return {}
    started: dict[str, Started] = {}
    if alongside.available(engine.device):
        for mc in methods:
            prober = _prober(engine, mc, obj)
            try:
                started[mc.name] = Alongside(lambda prober=prober: prober.probes(CALL_PROBES), limit=engine.limit)
            except OSError:  # no process could start (EAGAIN, ENOMEM): these probes run in turn
                break
    if len(started) < len(methods):
        in_turn = InTurn(engine, obj)
        started.update({mc.name: in_turn for mc in methods if mc.name not in started})
    return started


def probe_row(engine: Any, row: ContractResult, mc: MethodContract, obj: Any, started: Started | None = None) -> None:
    """The batch, causal and repeat probes of one contract method on one built object, once its row is
    done: the ones `started` alongside are added by `collect`; `InTurn` ones run now, on their copy."""
    if _failed_before(row) or not callable(getattr(obj, mc.method, None)):
        if started is not None:
            started.cancel()
        row.probes.update(dict.fromkeys(CALL_PROBES, SKIP_FAILED))
        return
    if isinstance(started, Alongside):
        engine.pending_probes.append((row, mc, started, return_line(getattr(type(obj), mc.method, None))))
        return
    _add_results(row, _prober(engine, mc, obj if started is None else started.obj).probes(CALL_PROBES))


def _add_results(row: ContractResult, results: list[ProbeResult]) -> None:
    for result in results:
        row.probes[result.name] = result.status
        if result.violation is not None:
            row.add(probe_finding(result))


def collect(engine: Any) -> list[ContractResult]:
    """The results of the probes that ran alongside, each added to its row; the rows whose probes' process
    ended without a result (their finding says how)."""
    lost_rows = []
    pending, engine.pending_probes = engine.pending_probes, []
    for row, mc, job, where in pending:
        try:
            _add_results(row, job.result())
        except AlongsideLost as lost:
            kind = ViolationKind.TIMEOUT if lost.stopped else ViolationKind.EXCEPTION
            v = Violation(contract=mc.name, tensor="(process)", kind=kind,
                          message=PROBES_LOST.format(contract=mc.name, reason=lost.reason))
            row.add(Finding(v.at(*PROBE_PAIR, engine.seed, where)))
            row.probes.update(dict.fromkeys(CALL_PROBES, SKIP_LOST))
            lost_rows.append(row)
    return lost_rows


def finish(engine: Any, rows: list[ContractResult]) -> dict[str, Any] | None:
    """Statuses of rows the call probes did not reach, and the config probe; the varied config's changes."""
    if not engine.probes:
        for row in rows:
            row.probes = dict.fromkeys(PROBES, SKIP_ALL)
        return None
    for row in rows:
        if row.checked_in == "inside":
            parent = row.implementation.split(" → ")[0]
            for name in CALL_PROBES:
                row.probes.setdefault(name, SKIP_INSIDE.format(parent=parent))
    changes, staged = _config_probe(engine, rows) if engine.vary_config else (None, [])
    lost = collect(engine)  # the probes alongside ran while the config probe did: their findings come first
    for row in lost:  # as if the row had failed before the config probe (what probes in turn would have seen)
        if "config" in row.probes:
            row.probes["config"] = SKIP_FAILED
    for row, finding in staged:
        if not any(row is other for other in lost):
            row.add(finding)
    for row in rows:
        row.probes.setdefault("config", SKIP_OFF)
        for name in CALL_PROBES:
            row.probes.setdefault(name, SKIP_FAILED)
        row.probes = {name: row.probes[name] for name in PROBES if name in row.probes}
    return changes


Staged = list[tuple[ContractResult, Finding]]


def _config_probe(engine: Any, rows: list[ContractResult]) -> tuple[dict[str, Any] | None, Staged]:
    """The config probe's statuses (set on the rows), its changes, and its findings (to add after the others)."""
    staged: Staged = []
    try:
        cfg2, changes = varied_config(engine.cfg)
    except (ConfigError, ValueError) as exc:
        for row in rows:
            row.probes["config"] = f"skipped: no second config with other widths is valid ({exc})"
        return None, staged
    source = _passing(engine.source, rows)
    if not source.components and source.build_model is None:
        for row in rows:
            row.probes["config"] = SKIP_FAILED
        return None, staged
    second = type(engine)(source, cfg2, 0, engine.seed, engine.timeout, engine.device, meta=False,
                          probes=False, vary_config=False)
    with one_thread():  # a small config: one thread is faster
        found = {(r.contract, r.implementation): r for r in second.run()}
    for row in rows:
        other = found.get((row.contract, row.implementation))
        if _failed_before(row):
            row.probes["config"] = SKIP_FAILED
        elif other is None:
            row.probes["config"] = SKIP_NOT_REACHED
        elif other.ok:
            row.probes["config"] = "ok"
        else:
            row.probes["config"] = "failed"
            staged.append((row, _config_finding(other.findings, engine.cfg, cfg2, changes, _files(engine, row))))
    return changes, staged


def _passing(source: Any, rows: list[ContractResult]) -> Any:
    """The source with only the components (and build_model) whose own rows held: the others' findings
    come first, and a component that hangs would only hang again."""
    failed = {r.implementation for r in rows if r.checked_in != "inside" and _failed_before(r)}
    components = [c for c in source.components if c.name not in failed]
    build_model = None if "build_model" in failed else source.build_model
    return dataclasses.replace(source, components=components, build_model=build_model)


def _config_finding(findings: list[Finding], cfg: AimeConfig, cfg2: AimeConfig, changes: dict[str, Any],
                    files: list[str]) -> Finding:
    first = next((f for f in findings if not f.repeat_of), findings[0])
    literal = literal_width(first.violation, cfg, cfg2, files)
    v = config_violation(first.violation, changes, literal)
    return Finding(v, step=first.step, title=first.title, explanation=first.explanation, numbers=first.numbers,
                   traceback=first.traceback, repeat_of=first.repeat_of)


def _files(engine: Any, row: ContractResult) -> list[str]:
    from aimespec.core.paths import display_path

    mine = [f for f in sorted(engine.source.files) if row.file and display_path(f) == row.file]
    return mine or sorted(engine.source.files)


# --- the Python API ------------------------------------------------------------------------------
@dataclass
class ProbeReport:
    """What `aimespec.probe` found: each probe's status and the violations of those that failed."""

    contract: str
    results: dict[str, str] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def probe(obj_or_cls: Any, ref: str | MethodContract, cfg: AimeConfig, B: int | None = None,
          T: int | None = None, seed: int = 0, *, vary_config: bool = True) -> ProbeReport:
    """The behavioural probes of `ref` on an object (or a class, built from `cfg`), for property tests.

    `config` runs when given a class (it is rebuilt at the varied config and held there).
    """
    from aimespec.runtime.hold import hold

    mc = resolve(ref) if isinstance(ref, str) else ref
    report = ProbeReport(mc.name)
    obj = build(obj_or_cls, cfg) if isinstance(obj_or_cls, type) else obj_or_cls
    pair = (B or PROBE_PAIR[0], T or PROBE_PAIR[1])
    for result in Prober(obj, mc, cfg, seed, pair=pair).probes(CALL_PROBES):
        report.results[result.name] = result.status
        if result.violation is not None:
            report.violations.append(result.violation)
    if not vary_config:
        report.results["config"] = SKIP_OFF
    elif not isinstance(obj_or_cls, type):
        report.results["config"] = "skipped: give the class to rebuild it at the varied config"
    else:
        cfg2, changes = varied_config(cfg)
        found = hold(obj_or_cls, mc, cfg2, *pair, seed)
        report.results["config"] = "failed" if found else "ok"
        for v in found[:1]:
            report.violations.append(config_violation(v, changes, literal_width(v, cfg, cfg2, _class_files(
                obj_or_cls))))
    report.results = {name: report.results[name] for name in PROBES if name in report.results}
    return report


def _class_files(cls: type) -> list[str]:
    import inspect

    try:
        return [inspect.getsourcefile(cls) or ""]
    except TypeError:
        return []
