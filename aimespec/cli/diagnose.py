"""`aimespec diagnose`: the seed's five documented shape errors, live; `--explain` reads any shape error."""

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aimespec.cli.options import ConfigOpt, EnvOpt, JsonOpt, SetOpt, VerboseOpt, load_config
from aimespec.cli.terminal import EXIT_USAGE, Terminal
from aimespec.explain.documented import documented_errors

# Imported where used: the live reproductions (they run PyTorch) when one is asked for, rich's views and
# the explainer when this command runs (every other command, `check` first, starts without them).
if TYPE_CHECKING:
    from rich.console import Group
    from rich.panel import Panel

    from aimespec.explain.diagnose import Diagnosis
    from aimespec.explain.engine import Explanation

USAGE = "give an error number N (1-5), --list, --all or --explain TEXT (see `aimespec diagnose --help`)"


def diagnose(
    number: Annotated[int | None, typer.Argument(metavar="[N]", help="Documented error 1-5 to reproduce.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the document's five shape errors.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Reproduce all five documented errors.")] = False,
    explain_text: Annotated[str | None, typer.Option(
        "--explain", metavar="TEXT", help="A PyTorch shape error or traceback to explain ('-' reads stdin).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", min=1, help="B (default: batch_size).")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", min=1, help="T (default: sequence_length).")] = None,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The seed's documented shape errors: run the wrong code live, show the real error, explain it, verify the fix."""
    term = Terminal(verbose)
    modes = [m for m, on in (("N", number is not None), ("--list", list_), ("--all", all_),
                             ("--explain", explain_text is not None)) if on]
    if not modes:
        term.fail(USAGE, EXIT_USAGE)
    if len(modes) > 1:
        term.fail(f"choose one of N, --list, --all, --explain (got {' and '.join(modes)})", EXIT_USAGE)
    if number is not None and not 1 <= number <= len(documented_errors()):
        term.fail(f"the document has errors 1 to {len(documented_errors())}, not {number}", EXIT_USAGE)
    with term.guard():
        cfg = load_config(config, set_, env)
    from aimespec.core.version import __version__

    if list_:
        _list(term, json_, __version__)
    elif explain_text is not None:
        text = sys.stdin.read() if explain_text == "-" else explain_text
        if not text.strip():
            term.fail(NOTHING_TO_EXPLAIN.format(source="standard input" if explain_text == "-" else "--explain"),
                      EXIT_USAGE)
        from aimespec.explain.engine import explain

        with term.guard():
            result = explain(text, cfg, batch=batch, seq_len=seq_len)
        if json_:
            term.json({**result.to_json(), "config": cfg.to_dict()})
        else:
            term.show(_explanation_view(result))
    else:
        from aimespec.explain.diagnose import diagnose as run_diagnosis

        numbers = [number] if number is not None else [e.number for e in documented_errors()]
        with term.guard():
            results = [run_diagnosis(n, cfg, batch=batch, seq_len=seq_len) for n in numbers]
        if json_:
            if number is not None:
                term.json({**results[0].to_json(), "config": cfg.to_dict()})
            else:
                term.json({"version": __version__, "config": cfg.to_dict(), "batch": results[0].batch,
                           "seq_len": results[0].seq_len, "errors": [d.to_json() for d in results]})
        else:
            for d in results:
                term.show(_diagnosis_view(d, verbose))


NOTHING_TO_EXPLAIN = ("{source} held no text to explain: pass an error message or traceback "
                      "(`--explain \"RuntimeError: ...\"`, or `--explain -` with the text on stdin)")


def _list(term: Terminal, json_: bool, version: str) -> None:
    from rich.table import Table

    errors = documented_errors()
    if json_:
        term.json({"version": version, "errors": [
            {"error": e.number, "title": e.title, "document_error": e.document_error, "cause": e.cause,
             "fix": e.fix, "substance": e.substance} for e in errors]})
        return
    table = Table(title="The document's shape errors (aimespec diagnose N reproduces one)", show_lines=True)
    table.add_column("N")
    table.add_column("title", no_wrap=True)  # a title is read whole, never wrapped
    for col in ("the document's error", "what it is"):
        table.add_column(col, overflow="fold")
    for e in errors:
        table.add_row(str(e.number), e.title, e.document_error, e.substance)
    term.show(table)


def _diagnosis_view(d: "Diagnosis", verbose: bool) -> "Panel":
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.text import Text

    parts: list[Any] = [Text.assemble(("document says: ", "bold"), d.document_error)]
    parts.append(Text(f"WRONG code, run at B={d.batch} T={d.seq_len}:", style="bold"))
    parts.append(Syntax(d.wrong_code, "python", theme="ansi_dark", word_wrap=True))
    if d.raw_error:
        parts.append(Text.assemble(("PyTorch raised: ", "bold"), (f"{d.raw_error_type}: {d.raw_error}", "red")))
    else:
        parts.append(Text("PyTorch raised nothing: the WRONG code ran at this config", style="yellow"))
    if d.note:
        parts.append(Text(f"note: {d.note}", style="yellow"))
    parts.append(Text.assemble(("cause: ", "bold"), d.cause))
    parts.append(Text.assemble(("fix: ", "bold"), d.fix))
    if verbose:
        parts.append(Syntax(d.right_code, "python", theme="ansi_dark", word_wrap=True))
    shapes = ", ".join(f"{k} {v}" for k, v in d.fix_shapes.items())
    mark = ("fix verified", "green") if d.fix_verified else ("fix NOT verified", "bold red")
    parts.append(Text.assemble(("✓ " if d.fix_verified else "✗ ", mark[1]), mark, f": {shapes}"))
    for v in d.variants:
        said = f"{v['raw_error_type']}: {v['raw_error']}" if v["raw_error"] else "no error"
        parts.append(Text.assemble(("also: ", "dim"), f"{v['code']} -> ", (said.splitlines()[-1].strip(), "red")))
    if d.recognised_as is not None:
        parts.append(Text(f"--explain reads the raw error as Error {d.recognised_as}", style="dim"))
    return Panel(Group(*parts), title=f"Error {d.error}: {d.title}", title_align="left",
                 border_style="green" if d.fix_verified else "red")


def _explanation_view(e: "Explanation") -> "Group":
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    numbers = Table(title="numbers in the config's symbols", show_header=True)
    numbers.add_column("number", justify="right")
    numbers.add_column("decompositions (most plausible first)", overflow="fold")
    for n, decomps in e.numbers.items():
        numbers.add_row(n, "\n".join(f"{n} = {d}" for d in decomps[:4]) or "no size of this config")
    parts: list[Any] = []
    if e.where:
        parts.append(Text.assemble(("at ", "bold"), e.where, (f": {e.code}" if e.code else "", "cyan")))
    parts += [Text(line, style="dim") for line in e.explanation.splitlines()
              if line.startswith("[") or line.startswith("  ")]
    if e.numbers:
        parts.append(numbers)
    for literal in e.literals:
        parts.append(Text.assemble(("hard-coded: ", "bold yellow"), literal.text))
    for advice in e.advice:
        parts.append(Text.assemble(("why: ", "bold"), advice["why"] or ""))
        parts.append(Panel(Text(advice["fix"] or ""), title=f"fix for {advice['tensor']}", title_align="left",
                           border_style="green"))
    if e.matches:
        matches = Table(title="documented errors that fit (best first)")
        for col in ("error", "title", "score", "why"):
            matches.add_column(col, overflow="fold")
        for m in e.matches:
            matches.add_row(str(m.error), m.title, f"{m.score:.2f}", m.reason)
        parts.append(matches)
        top = e.matches[0]
        parts.append(Panel(Text(top.fix), title=f"fix for Error {top.error}", title_align="left", border_style="green"))
    else:
        last = e.explanation.splitlines()[-1] if e.explanation else "No documented error fits."
        parts.append(Text(last, style="yellow"))
    return Group(*parts)
