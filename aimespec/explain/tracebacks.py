"""Reading a pasted traceback whole: its frames, the user's frame nearest the error, hard-coded sizes.

`File "model.py", line 12, in forward` and the code line under it are parsed; frames inside
torch, einops, the standard library or site-packages are the library's, the last other one is
the user's `where`. An integer literal in that code line that equals a size the message
reports is named: `8` written where the batch size belongs breaks at any other `--batch`.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from aimespec.core.config import AimeConfig
from aimespec.core.symbols import SYMBOLS, symbol_values

_FRAME = re.compile(r'^[ \t]*File "(?P<file>[^"\n]+)", line (?P<line>\d+)(?:, in (?P<func>[^\n]+))?[ \t]*$', re.M)
_LIBRARY = ("site-packages", "dist-packages", "/torch/", "/einops/", "/jaxtyping/", "/beartype/", "<frozen",
            "/lib/python3", "\\lib\\python3", "/aimespec/core/", "/aimespec/runtime/", "/aimespec/commands/")
_LITERAL = re.compile(r"(?<![\w.\]])(\d+)(?![\w.\[])")
SMALL_CONSTANT = 3  # literals up to this are constants (a 2 for mean/log-variance), never read as sizes

HARD_CODED = ("{n} is written as a number in `{code}` ({where}): it equals {field} {at}; {fix}")
FREE_FIX = {"B": "read B from the tensor (x.shape[0]) instead",
            "T": "read T from the tensor (x.shape[1]) instead"}
BOUND_FIX = "read it from the config (cfg.{field}) so that the code follows --set"
COMPOUND_FIX = "compute it from the config's sizes ({expr}) so that the code follows --set"


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    function: str
    code: str  # the source line as the traceback prints it ("" when it printed none)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def library(self) -> bool:
        return any(part in self.file.replace("\\", "/") for part in _LIBRARY) or self.file.startswith("<")


@dataclass(frozen=True)
class Literal:
    value: int
    symbol: str  # the symbol it equals ("B", "D")
    field: str  # its config field ("batch_size", "latent_dim")
    default_only: bool  # equals the default config's value but not this run's: the hard-coding is the bug
    text: str  # the sentence naming it

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "symbol": self.symbol, "field": self.field, "default_only": self.default_only,
                "text": self.text}


def frames(text: str) -> list[Frame]:
    """Every `File ..., line N` frame of a traceback, with the code line printed under it."""
    out = []
    for m in _FRAME.finditer(text):
        rest = text[m.end():].split("\n", 2)
        code = rest[1].strip() if len(rest) > 1 and not _FRAME.match(rest[1]) else ""
        if code.startswith(("Traceback", "During handling")) or set(code) <= set("^~ "):
            code = ""
        code = _without_comment(code)
        out.append(Frame(m.group("file"), int(m.group("line")), (m.group("func") or "").strip(), code))
    return out


def _without_comment(code: str) -> str:
    """The code line without a trailing `# comment` (a # inside a string stays)."""
    quote = ""
    for i, ch in enumerate(code):
        if quote:
            quote = "" if ch == quote and code[i - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return code[:i].rstrip()
    return code


def user_frame(found: list[Frame]) -> Frame | None:
    """The frame nearest the error that is not the library's (else the last frame)."""
    for frame in reversed(found):
        if not frame.library:
            return frame
    return None


def literals_in(code: str) -> list[int]:
    """Integer literals written in a code line (not parts of names, floats or attribute chains)."""
    cleaned = re.sub(r"(['\"]).*?\1", "", code)  # not the digits inside strings
    cleaned = re.sub(r"#.*$", "", cleaned)
    return [int(x) for x in _LITERAL.findall(cleaned)]


def hard_coded(frame: Frame, sizes: set[int], cfg: AimeConfig, B: int, T: int,
               reading: Callable[[int], str | None] | None = None) -> list[Literal]:
    """The literals of the user's code line that equal a size of the message and a size of a config.

    A literal that is one symbol's value is named as that symbol; else `reading(n)` (the algebra's
    first sound reading at this config, `hidden_dim + context_dim`) names it.
    """
    here = symbol_values(cfg, B, T)
    default = AimeConfig()
    there = symbol_values(default)
    out: list[Literal] = []
    for n in dict.fromkeys(literals_in(frame.code)):
        if n <= SMALL_CONSTANT or n not in sizes:
            continue
        found = _which(n, here, there)
        if found is None:
            expr = reading(n) if reading else None
            if expr:
                out.append(Literal(n, expr, expr, False, HARD_CODED.format(
                    n=n, code=frame.code, where=frame.where, field=expr, at="at this config",
                    fix=COMPOUND_FIX.format(expr=expr))))
            continue
        name, default_only = found
        field = _field(name)
        at = "at the default config" + (f" (here {name} = {here[name]})" if default_only else "")
        if not default_only:
            at = "at this config" if there.get(name) != n else "at this and the default config"
        fix = FREE_FIX.get(name, BOUND_FIX.format(field=field))
        what = f"{field}" if name in ("B", "T") else f"{name} = {field}"
        out.append(Literal(n, name, field, default_only,
                           HARD_CODED.format(n=n, code=frame.code, where=frame.where, field=what, at=at, fix=fix)))
    return out


def summary(literals: list[Literal], frame: Frame) -> str:
    """One sentence for every hard-coded size of a line: which symbol each is, and what to read instead."""
    if not literals:
        return ""
    free = [lit for lit in literals if lit.symbol in FREE_FIX]
    bound = [lit for lit in literals if lit.symbol not in FREE_FIX]
    parts = []
    for lit in free:
        here = " (not this run's)" if lit.default_only else ""
        parts.append(f"{lit.value} = {lit.field} at the default config{here}: {FREE_FIX[lit.symbol]}")
    if bound:
        named = ", ".join(f"{lit.value} = {lit.symbol}" + (f" = {lit.field}" if lit.field != lit.symbol else "")
                          for lit in bound)
        parts.append(f"{named}: read {'them' if len(bound) > 1 else 'it'} from the config so that the code "
                     "follows --set")
    return f"sizes written as numbers in `{frame.code}` ({frame.where}): " + "; ".join(parts)


def _which(n: int, here: dict[str, int], there: dict[str, int]) -> tuple[str, bool] | None:
    """The symbol a literal most likely stands for: (name, equals only the default config's value)."""
    order = [s.name for s in sorted(SYMBOLS, key=lambda s: (s.rarity, s.written))]
    for name in order:  # the default's value that this run does not have: the hard-coding is the bug
        if there.get(name) == n and here.get(name) != n:
            return name, True
    for name in order:
        if here.get(name) == n:
            return name, False
    return None


def _field(name: str) -> str:
    for s in SYMBOLS:
        if s.name == name:
            return s.source if s.source.isidentifier() else name
    return name


__all__ = ["Frame", "Literal", "frames", "hard_coded", "literals_in", "summary", "user_frame"]
