"""The result of `aimespec check`: one row per contract checked, rendering itself as JSON or rich."""

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aimespec.commands.coverage import NOT_CHECKED, NOT_CHECKED_IN
from aimespec.core.config import AimeConfig
from aimespec.core.dims import format_shape
from aimespec.explain.findings import Finding
from aimespec.runtime.probes import PROBES

PASS, FAIL = "✓", "✗"


class _JsonView(Mapping):
    """A read-only mapping over the object's own `to_json()` document (report["ok"], row["contract"])."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


@dataclass
class ContractResult(_JsonView):
    """One contract held against one implementation (a class, build_model, or an instance inside one).

    Also a read-only mapping over its JSON row, as the report is over its document:
    `report.results[0]["contract"]` is `report["results"][0]["contract"]`.
    """

    contract: str  # "DPGMMPrior.forward" (a bare component name when its constructor raised)
    implementation: str  # "MyPrior", "build_model", "build_model → prior (MyPrior)"
    checked_in: str = "standalone"  # "standalone" | "model" | "inside"
    file: str | None = None  # where the implementation is defined
    calls: int = 0
    examples: list[tuple[int, int]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    probes: dict[str, str] = field(default_factory=dict)  # probe name -> "ok" | "failed" | "skipped: <reason>"
    unchecked: list[str] | None = None  # a built model's submodules that implement no contract

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, finding: Finding) -> Finding:
        """Keep the first finding per (contract, tensor, kind); count the rest."""
        for known in self.findings:
            if known.key == finding.key:
                known.occurrences += finding.occurrences
                return known
        self.findings.append(finding)
        return finding

    def note_example(self, B: int, T: int) -> None:
        if (B, T) not in self.examples:
            self.examples.append((B, T))

    def to_json(self, *, tracebacks: bool = False) -> dict[str, Any]:
        return {
            "contract": self.contract, "implementation": self.implementation, "ok": self.ok,
            "violations": [f.to_json(tracebacks=tracebacks) for f in self.findings],
            "checked_in": self.checked_in, "file": self.file, "calls": self.calls,
            "examples": [list(p) for p in self.examples], "probes": dict(self.probes),
            **({"unchecked": list(self.unchecked)} if self.unchecked is not None else {}),
        }


@dataclass(eq=False)
class CheckReport(_JsonView):
    """Everything `aimespec check` found; `to_json()` is the document `--json` prints.

    It is also a read-only mapping over that document (SPEC: `check(...)` returns "the same
    report `aimespec check --json` prints"): `report["ok"]`, `report["results"]`, `dict(report)`.
    """

    cfg: AimeConfig
    source: str  # "reference_model" or the model file as given
    seed: int
    examples: list[tuple[int, int]]
    results: list[ContractResult]
    seconds: float = 0.0
    verbose: bool = False
    probe_config: dict[str, Any] | None = None  # the config probe's second config (the fields it changed)
    suggestions: list[dict[str, str]] = field(default_factory=list)  # classes that read like a contract

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def to_json(self, *, tracebacks: bool = False) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {
            "version": __version__, "ok": self.ok, "config": self.cfg.to_dict(), "source": self.source,
            "seed": self.seed, "examples": [list(p) for p in self.examples], "seconds": round(self.seconds, 3),
            "results": [r.to_json(tracebacks=tracebacks) for r in self.results],
            "probe_config": _plain(self.probe_config),
            "suggestions": list(self.suggestions),
        }

    # --- rendering -------------------------------------------------------------------------
    def reproduce(self, changes: Mapping[str, Any] | None = None) -> str:
        """The command line that reruns this check (`--set` for every non-default config key).

        With `changes` (a config probe finding's second config): the check at that config.
        """
        parts = ["aimespec check"]
        if self.source != "reference_model":
            parts.append(self.source)
        defaults = type(self.cfg)()
        cfg = self.cfg.replace(**changes) if changes else self.cfg
        for f in dataclasses.fields(cfg):
            value, default = getattr(cfg, f.name), getattr(defaults, f.name)
            if value != default:
                shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value).lower() \
                    if isinstance(value, bool) else str(value)
                parts.append(f"--set {f.name}={shown}")
        parts.append(f"--seed {self.seed}")
        return " ".join(parts)

    def probe_summary(self) -> str:
        """One line: how many probe runs passed, failed, were skipped; the config probe's second config."""
        statuses = [s for r in self.results for s in r.probes.values()]
        ok, failed = statuses.count("ok"), statuses.count("failed")
        line = f"probes: {ok} ok, {failed} failed, {len(statuses) - ok - failed} skipped (JSON: each result's probes)"
        if self.probe_config:
            from aimespec.commands.probe_config import shown_widths

            line += f"; the config probe rebuilt every component at {shown_widths(self.probe_config)}"
        return line

    def coverage_lines(self) -> list[str]:
        """One line per built model with submodules no contract covers, then one per hint."""
        models = [r for r in self.results if r.unchecked]
        lines = [NOT_CHECKED.format(modules=", ".join(r.unchecked or ())) if len(models) == 1 else
                 NOT_CHECKED_IN.format(model=r.implementation, modules=", ".join(r.unchecked or ()))
                 for r in models]
        return lines + [f"hint: {s['hint']}" for s in self.suggestions]

    def summary(self) -> str:
        failed = [r for r in self.results if not r.ok]
        checks = plural(len(self.results), "check")
        if not failed:
            return f"{PASS} every contract holds: {checks} in {self.seconds:.1f} s"
        n = sum(1 for f in self.findings if not f.repeat_of)
        return (f"{FAIL} {len(failed)} of {checks} failed with {plural(n, 'finding')} "
                f"({self.seconds:.1f} s)")

    def github(self) -> str:
        """One GitHub Actions `::error` workflow command per finding (SPEC: `check --format github`)."""
        lines = []
        for r in self.results:
            for f in r.findings:
                if not f.repeat_of:
                    lines.append(github_annotation(r, f))
        return "".join(line + "\n" for line in lines)

    def __rich__(self) -> Group:
        header = PathLine(f"aimespec check {self.source}")  # wraps at "/" only: a name is never broken
        table = Table(title_justify="left")
        for col in ("Contract", "Implementation", "Checked", "Verdict"):
            table.add_column(col)
        for r in self.results:
            verdict = Text(PASS, style="green") if r.ok else Text(f"{FAIL} {len(r.findings)}", style="bold red")
            table.add_row(r.contract, r.implementation, plural(r.calls, "call"), verdict)
        parts: list[Any] = [header, table]
        parts += [Text(line, style="yellow") for line in self.coverage_lines()]
        if any(r.probes for r in self.results):
            parts.append(Text(self.probe_summary(), style="dim"))
        for r in self.results:
            for f in r.findings:
                parts.append(self._panel(r, f))
        parts.append(Text(self.summary(), style="green" if self.ok else "bold red"))
        return Group(*parts)

    def _panel(self, row: ContractResult, f: Finding) -> Any:
        v = f.violation
        title = f"{v.contract}  {v.tensor}  ({row.implementation})"
        if f.repeat_of:
            return Text(f"  {FAIL} {row.implementation}: {v.message}  [see {f.repeat_of}]"
                        + (f" (x{f.occurrences})" if f.occurrences > 1 else ""), style="red")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")

        def line(label: str, value: str | None) -> None:
            if value and value.strip() not in ("", "-", "[]"):  # no filler rows
                grid.add_row(label, Text(value))

        if v.kind in PROBES:
            _probe_lines(line, f)
        elif v.kind in ("exception", "constructor", "timeout", "missing"):
            line(v.kind, v.message)
            if f.numbers:
                line("numbers", "; ".join(f"{n} = {reading}" for n, reading in f.numbers.items()))
            if f.explanation:
                line("why", f.explanation)
        else:
            line("tensor", v.tensor)
            line("expected", f"{v.expected} = {format_shape(v.expected_sizes)}" if v.expected_shape else v.expected)
            line("got", format_shape(v.got) if v.got is not None else None)
            line("problem", v.message)
            line("why", f.explanation)
        if v.documented_error is not None:
            line("documented", f"error {v.documented_error}: {f.title or ''}".rstrip(": "))
        if v.fix:
            line("fix", v.fix)
        if v.where:
            line("where", v.where)
        if v.batch is not None:
            example = f"B={v.batch}, T={v.seq_len}" + (f", step {f.step}" if f.step is not None else "")
            changes = (v.probe or {}).get("config") if v.kind == "config" else None
            line("reproduce", f"{self.reproduce(changes)}   ({example})")
        if f.occurrences > 1:
            line("seen", f"{plural(f.occurrences, 'time')} (examples and steps)")
        if self.verbose and f.traceback:
            line("traceback", f.traceback.rstrip())
        return Panel(grid, title=Text(f"{FAIL} {title}"), title_align="left", border_style="red")


class PathLine:
    """One line of text holding a path, wrapped (when it must be) only after a `/` or a space."""

    def __init__(self, text: str, style: str = "bold") -> None:
        self.text, self.style = text, style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width, 20)
        pieces = re.findall(r"[^/ ]*[/ ]|[^/ ]+$", self.text)
        line = ""
        for piece in pieces:
            if line and len(line) + len(piece.rstrip()) > width:
                yield Text(line.rstrip(), style=self.style, no_wrap=True, overflow="fold")
                line = ""
            line += piece
        if line:
            yield Text(line.rstrip(), style=self.style, no_wrap=True, overflow="fold")


def plural(n: int, noun: str) -> str:
    """`1 check`, `3 checks`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(row: ContractResult, f: Finding) -> str:
    """`::error file=PATH,line=N,title=CONTRACT::MESSAGE` for one finding (workflow-command escaped)."""
    v = f.violation
    path, line = _split_where(v.where)
    path = path or row.file
    props = [f"file={_escape_property(path)}"] if path else []
    if path and line is not None:
        props.append(f"line={line}")
    props.append(f"title={_escape_property(v.contract)}")
    message = [v.message]
    if v.documented_error is not None:
        message.append(f"documented error {v.documented_error}: {f.title or ''}".rstrip(": "))
    if f.explanation:
        message.append(f"why: {f.explanation}")
    if v.fix:
        message.append(f"fix: {v.fix}")
    if v.batch is not None:
        message.append(f"reproduce with B={v.batch}, T={v.seq_len}, --seed {v.seed}")
    return f"::error {','.join(props)}::{_escape_data(chr(10).join(message))}"


def _split_where(where: str | None) -> tuple[str | None, int | None]:
    """`model.py:12` -> ("model.py", 12); a path alone -> (path, None)."""
    if not where:
        return None, None
    path, sep, line = where.rpartition(":")
    if sep and line.isdigit():
        return path, int(line)
    return where, None


def _plain(changes: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if changes is None else {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}


def _probe_lines(line: Any, f: Finding) -> None:
    """A probe finding: what the probe changed, what changed that should not have, the likely cause."""
    v = f.violation
    probe = v.probe or {}
    line("probe", v.kind)
    if probe.get("changed"):
        line("changed", str(probe["changed"]))
    line("problem", v.message)
    if f.explanation:
        line("likely cause", f.explanation)
