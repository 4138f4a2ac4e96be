"""`aimespec trace`: one forward pass, every component call in order, with symbolic and concrete shapes.

The model comes from `build_model(cfg)` in the file (or the bundled reference package, or a
class implementing `AimeWorldModel`). Its components are recorded by the same instance
wrapping `check` uses (checked reference methods also through `aimespec.observing`); a
contract called once per forward has step None, one called k*T times gets steps 0..T-1.
The JSON holds every call; the terminal view shows the first and last step of each loop.
"""

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from aimespec.commands.isolate import import_model, label_of, lost_message, run_isolated
from aimespec.commands.spec import KEY_TENSORS, WORLD, key_tensor_leaves
from aimespec.core.config import AimeConfig, ConfigRequest, as_config
from aimespec.core.contract import resolve
from aimespec.core.dims import format_shape
from aimespec.core.errors import UsageError
from aimespec.core.limits import count, seed_value, timeout_seconds
from aimespec.explain.findings import exception_where
from aimespec.runtime.checked import checking
from aimespec.runtime.deadline import CallTimeout, Deadline
from aimespec.runtime.hold import bound_checker, build, make_inputs
from aimespec.runtime.record import Recorder, assign_steps
from aimespec.runtime.worker import WorkerLost

PILLARS = {
    "perceiver": "Perceiver IO (context extraction)",
    "vae": "VAE (encoder / decoder)",
    "prior": "DPGMM prior",
    "dynamics": "LSTM dynamics",
    "attention": "Attention schema",
    "adversarial": "Discriminator",
    "balancing": "RGB balancing",
    "world": "World model",
}


@dataclass
class TraceCall:
    index: int
    component: str
    method: str
    pillar: str
    owner: str  # the instance's path in the model ("prior", "attention_schema.slot_attention")
    implementation: str  # its class name
    step: int | None
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    symbolic: dict[str, str]

    @property
    def contract(self) -> str:
        return f"{self.component}.{self.method}"

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component, "method": self.method, "step": self.step, "inputs": self.inputs,
            "outputs": self.outputs, "index": self.index, "pillar": self.pillar, "owner": self.owner,
            "implementation": self.implementation, "symbolic": self.symbolic,
        }


@dataclass
class TraceReport:
    cfg: AimeConfig
    source: str
    batch: int
    seq_len: int
    calls: list[TraceCall]
    tensors: dict[str, list[int] | None]
    error: str | None = None  # the forward pass raised (the calls up to it are kept)
    where: str | None = None
    violations: list[dict[str, Any]] = field(default_factory=list)  # the result held to forward_sequence's contract
    seconds: float = 0.0
    all_steps: bool = False  # terminal view: every step instead of the first and last
    symbols: dict[str, str] = field(default_factory=dict)  # key tensor row -> its symbolic shape

    @property
    def ok(self) -> bool:
        return self.error is None and not self.violations

    def to_json(self) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {
            "version": __version__, "ok": self.ok, "config": self.cfg.to_dict(), "source": self.source,
            "batch": self.batch, "seq_len": self.seq_len, "calls": [c.to_json() for c in self.calls],
            "tensors": self.tensors, "tensor_symbols": self.symbols, "error": self.error, "where": self.where,
            "violations": self.violations,
        }

    # --- rendering ---------------------------------------------------------------------------
    def render_text(self, width: int = 100, all_steps: bool | None = None) -> str:
        """The terminal view as plain text (no colour) at a fixed width: what golden files hold."""
        buffer = io.StringIO()
        console = Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False,
                          soft_wrap=False, emoji=False)
        previous, self.all_steps = self.all_steps, self.all_steps if all_steps is None else all_steps
        try:
            console.print(self)
        finally:
            self.all_steps = previous
        return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"

    def __rich__(self) -> Group:
        root = Tree(Text(f"{WORLD}  B={self.batch} T={self.seq_len}  ({self.source})", style="bold"))
        for row, path in (("Observations", "observations"), ("Actions", "actions")):
            root.add(_shape_line("in ", path, self.symbols.get(row, ""), self.tensors.get(row)))
        order: list[str] = []
        for c in self.calls:
            if c.pillar not in order:
                order.append(c.pillar)
        for pillar in order:
            branch = root.add(Text(PILLARS.get(pillar, pillar or "other"), style="bold cyan"))
            contracts: list[tuple[str, str]] = []
            for c in self.calls:
                if c.pillar == pillar and (c.contract, c.owner) not in contracts:
                    contracts.append((c.contract, c.owner))
            for contract, owner in contracts:
                calls = [c for c in self.calls if c.contract == contract and c.owner == owner]
                self._add_calls(branch, calls)
        parts: list[Any] = [root, self._tensor_table()]
        if self.error:
            where = f" at {self.where}" if self.where else ""
            parts.append(Text(f"✗ forward_sequence raised{where}: {self.error}", style="bold red"))
        for v in self.violations:
            parts.append(Text(f"✗ {v['message']}", style="bold red"))
        return Group(*parts)

    def _add_calls(self, branch: Tree, calls: list[TraceCall]) -> None:
        shown = calls if self.all_steps or len(calls) <= 2 else [calls[0], calls[-1]]
        for i, c in enumerate(shown):
            if i == 1 and len(shown) < len(calls):
                hidden = calls[1:-1]
                same = all(h.inputs == calls[0].inputs and h.outputs == calls[0].outputs for h in hidden)
                first, last = hidden[0], hidden[-1]
                n = len(hidden)
                if first.step is not None and last.step is not None:
                    span = f"step {first.step}" if n == 1 else f"steps {first.step}-{last.step}"
                else:
                    span = f"{n} more call" + ("s" if n > 1 else "")
                note = "same shapes" if same else "shapes vary"
                calls_txt = f"{n} call" + ("s" if n > 1 else "")
                branch.add(Text(f"… {span} ({calls_txt}, {note}; --all-steps shows them)", style="dim"))
            label = f"{c.contract}" + (f"  step {c.step}" if c.step is not None else "") + f"  [{c.owner}]"
            node = branch.add(Text(label, style="bold"))
            for name, shape in c.inputs.items():
                node.add(_shape_line("in ", name, c.symbolic.get(name, ""), shape))
            for name, shape in c.outputs.items():
                node.add(_shape_line("out", name, c.symbolic.get(name, ""), shape))

    def _tensor_table(self) -> Table:
        table = Table(title="Key tensors", title_justify="left")
        for col in ("Tensor", "Symbolic", "Shape"):
            table.add_column(col)
        for row, _path, _loc, _desc in KEY_TENSORS:
            shape = self.tensors.get(row)
            shown = format_shape(shape) if shape is not None else "(not returned)"
            table.add_row(row, self.symbols.get(row, ""), shown)
        return table


def _shape_line(role: str, name: str, symbolic: str, shape: list[int] | None) -> Text:
    if shape == [] and symbolic in ("", "[]"):
        return Text(f"{role} {name} scalar")
    concrete = format_shape(shape) if shape is not None else "(absent)"
    return Text(f"{role} {name} {symbolic} = {concrete}" if symbolic else f"{role} {name} = {concrete}")


def trace(path: str | Path | None, cfg: AimeConfig | ConfigRequest, batch: int | None = None,
          seq_len: int | None = None, *, seed: int = 0, timeout: float = 60.0, max_memory: int | None = None,
          isolate: bool = True) -> TraceReport:
    """Run one forward pass of the file's model (None: the reference model) and record every component call.

    The result is held to `forward_sequence`'s contract (shapes and value invariants): a violation
    makes the report fail. With `isolate` the model runs in a worker process (see `check`).
    """
    shown = as_config(cfg, AimeConfig, lenient=True)  # the file's own config class is known in the worker
    B = shown.batch_size if batch is None else batch
    T = shown.sequence_length if seq_len is None else seq_len
    for name, value in (("--batch", B), ("--seq-len", T)):
        count(value, name)
    timeout = timeout_seconds(timeout)
    seed = seed_value(seed)
    if not isolate:
        return _trace(path, cfg, batch, seq_len, seed, timeout)

    def lost(error: WorkerLost) -> TraceReport:
        report = TraceReport(shown, label_of(path), B, T, [], {row: None for row, *_ in KEY_TENSORS},
                             error=lost_message(error))
        report.tensors.update(Observations=[B, T, shown.image_channels, shown.input_dim, shown.input_dim],
                              Actions=[B, T, shown.action_dim])
        return report

    return run_isolated(lambda: _trace(path, cfg, batch, seq_len, seed, timeout), path, timeout=timeout,
                        max_memory=max_memory, lost=lost)


def _trace(path: str | Path | None, cfg: AimeConfig | ConfigRequest, batch: int | None, seq_len: int | None,
           seed: int, timeout: float) -> TraceReport:
    source = import_model(path, timeout)
    cfg = as_config(cfg, source.config_class)  # the file's own config class, when it has one
    B = count(cfg.batch_size if batch is None else batch, "--batch")
    T = count(cfg.sequence_length if seq_len is None else seq_len, "--seq-len")
    factory: Any = source.build_model
    if factory is None:
        worlds = source.world_components()
        if not worlds:
            raise UsageError(f"{source.label} defines no build_model(cfg) and no class implementing "
                             "AimeWorldModel: there is no forward pass to trace")
        factory = worlds[0].cls
    started = time.perf_counter()
    mc = resolve(WORLD)
    inputs = make_inputs(mc, cfg, B, T, seed)
    symbols = {row: leaf.symbolic for row, leaf in key_tensor_leaves().items()}
    report = TraceReport(cfg, source.label, B, T, [], {}, symbols=symbols)
    report.tensors = {row: None for row, *_ in KEY_TENSORS}
    report.tensors.update(Observations=list(inputs.args[0].shape), Actions=list(inputs.args[1].shape))
    with checking("off"), torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        try:  # the user's code: under the same time limit as `check` (seconds of silence)
            model = Deadline(timeout).run(lambda: build(factory, cfg) if isinstance(factory, type) else factory(cfg))
        except (Exception, CallTimeout, SystemExit) as exc:
            report.error = (f"building the model did not return within {timeout:g} s" if isinstance(exc, CallTimeout)
                            else f"building the model raised {type(exc).__name__}: {exc}")
            report.where = exception_where(exc, source.files)
            return report
        recorder = Recorder(cfg, source.files, check=False).install(model)
        deadline = Deadline(timeout)
        recorder.progress = deadline.kick
        result: Any = _RAISED
        with recorder:
            with recorder.top(WORLD):
                try:
                    result = deadline.run(lambda: model.forward_sequence(*inputs.args))
                except (Exception, CallTimeout, SystemExit) as exc:
                    report.error = (f"the forward pass did not return within {timeout:g} s of silence"
                                    if isinstance(exc, CallTimeout) else f"{type(exc).__name__}: {exc}")
                    report.where = exception_where(exc, source.files)
        calls = recorder.calls
    assign_steps(calls, T)
    report.calls = [
        TraceCall(c.index, c.component, c.method, c.contract.pillar, c.owner,
                  c.cls.__name__ if c.cls is not object else c.component, c.step, c.inputs, c.outputs,
                  c.symbolic)
        for c in calls
    ]
    if result is not _RAISED:
        report.violations = [v.to_json() for v in bound_checker(mc, cfg, inputs).check_outputs(result)]
        for row, key, *_ in KEY_TENSORS:
            value = _get(result, key)
            if isinstance(value, torch.Tensor) and row not in ("Observations", "Actions"):
                report.tensors[row] = list(value.shape)
    report.seconds = time.perf_counter() - started
    return report


_RAISED = object()  # forward_sequence raised: there is no result to hold (None is one)


def _get(result: Any, key: str) -> Any:
    try:
        if isinstance(result, Mapping) or hasattr(result, "keys"):
            return result[key] if key in result.keys() else None
    except (TypeError, AttributeError, KeyError):  # a keys() that is not a mapping's
        return None
    return getattr(result, key, None)
