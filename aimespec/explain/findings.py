"""Findings: a violation plus what a user needs to act on it (where, which documented error, the fix).

`documented_error` names one of the seed's five errors when a finding is that error in
substance (SPEC), decided from the contract's *symbols*, never from default numbers:
1 = a B*T-flattened tensor where [B, ...] was expected (or the reverse), 2 = an attention
map not at the resolution of what it modulates, 3 = the token time axis left at T_enc,
4 = the prior's input width (hidden_dim vs hidden_dim + context_dim), 5 = a spatial map
where flattened [B, N, attention_dim] features were expected. Exceptions raised inside
the user's code are explained by `aimespec.explain.engine` (their numbers read in the config's
dimension algebra).
"""

import ast
import inspect
import os
import textwrap
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aimespec.core.config import AimeConfig
from aimespec.core.errors import ContractViolation
from aimespec.core.symbols import symbol_values
from aimespec.core.violation import Violation, ViolationKind
from aimespec.explain.values import Advice

if TYPE_CHECKING:  # the contract machinery imports torch: not at run time here
    from aimespec.core.contract import MethodContract

# An explanation's best match counts as the finding's documented error from this score on.
MIN_EXPLAIN_SCORE = 0.5


@dataclass
class Finding:
    """One violation as reported: deduplicated across examples and steps (`occurrences`)."""

    violation: Violation
    step: int | None = None
    occurrences: int = 1
    title: str | None = None  # the documented error's title
    explanation: str | None = None  # why an exception is its documented error, in symbols
    numbers: dict[str, str] | None = None  # an exception message's numbers read in the config's symbols
    traceback: str | None = None
    repeat_of: str | None = None  # the row already reporting it (in-model repeat of a standalone finding)

    @property
    def key(self) -> tuple[str, str, str]:
        v = self.violation
        return v.contract, v.tensor, v.kind

    def to_json(self, *, tracebacks: bool = False) -> dict[str, Any]:
        v = self.violation
        out = {
            "tensor": v.tensor, "expected": v.expected,
            "expected_shape": v.expected_shape or [],  # SPEC: [int]; [] when no tensor was expected (kind says why)
            "got": v.got,
            "message": v.message, "documented_error": v.documented_error, "title": self.title, "fix": v.fix,
            "kind": v.kind, "where": v.where, "batch": v.batch, "seq_len": v.seq_len, "seed": v.seed,
            "step": self.step, "occurrences": self.occurrences, "contract": v.contract, "bindings": v.bindings,
        }
        if v.probe is not None:
            out["probe"] = v.probe
        if self.explanation:
            out["explanation"] = self.explanation
        if self.numbers:
            out["numbers"] = self.numbers
        if self.repeat_of:
            out["repeat_of"] = self.repeat_of
        if tracebacks and self.traceback:
            out["traceback"] = self.traceback
        return out


# --- documented errors from shapes ------------------------------------------------------------
def shape_documented_error(v: Violation, cfg: AimeConfig, B: int | None, T: int | None) -> int | None:
    """Which documented error a shape/rank violation is, read from its symbolic dims."""
    if v.kind not in (ViolationKind.SHAPE, ViolationKind.RANK) or v.got is None or not v.dims:
        return None
    dims = list(v.dims)
    values = symbol_values(cfg, B, T)
    values.update({k: int(x) for k, x in v.bindings.items()})
    if B is not None:
        values["B"] = v.bindings.get("B", B)
    if T is not None:
        values["T"] = T
        values["T_enc"] = cfg.encoded_length(T)
    got = list(v.got)
    exp = list(v.expected_shape or [])
    Bv, Tv = values["B"], values["T"]
    same_rank = len(got) == len(dims)
    # 5: flattened [.., N, attention_dim] features expected, a spatial map came
    if "N" in dims and len(got) == len(dims) + 1:
        return 5
    # 1: B*T rows where B was expected; [B*T, ...] where [B, T, ...]; or the unsliced [B, T, ...]
    if Tv > 1:
        for i, d in enumerate(dims):
            if d == "B" and same_rank and got[i] == Bv * Tv and got[i] != Bv:
                return 1
        if dims[:2] == ["B", "T"] and len(got) == len(dims) - 1 and got[0] == Bv * Tv:
            return 1
        if dims and dims[0] == "B" and len(got) == len(dims) + 1 and got[:2] == [Bv, Tv] and got[2:] == exp[1:]:
            return 1
    # 3: a time axis T that came back at the tokenizer's encoded length T_enc
    if same_rank and "T" in dims and values["T_enc"] != Tv and got[dims.index("T")] == values["T_enc"]:
        return 3
    # 4: hidden_dim where hidden_dim + context_dim was expected, or the reverse
    hidden, both = values["hidden_dim"], values["hidden_dim"] + values["context_dim"]
    if same_rank:
        for d, g in zip(dims, got, strict=True):
            if d == "hidden_dim+context_dim" and g == hidden and g != both:
                return 4
            if d == "hidden_dim" and g == both and g != hidden:
                return 4
    # 2: an attention-resolution axis at another size, or an image at the attention resolution
    if same_rank:
        att = values["H_att"]
        for i, d in enumerate(dims):
            if d in ("H_att", "W_att") and got[i] != att:
                return 2
        if dims[-2:] == ["H", "W"] and got[-2:] == [att, att] and att != values["H"]:
            return 2
    return None


# --- value findings ---------------------------------------------------------------------------
def value_advice(v: Violation) -> "Advice | None":
    """Why a value invariant (or the structure, dtype) matters and how to fix it, from the problem phrase."""
    from aimespec.explain.values import advise, advise_structure

    if v.kind in (ViolationKind.TYPE, ViolationKind.MISSING, ViolationKind.DTYPE):
        return advise_structure(v.message)
    prefix = f"{v.contract}: {v.tensor} "
    problem = v.message[len(prefix):] if v.message.startswith(prefix) else v.message
    return advise(v.tensor, problem)


# --- exceptions -------------------------------------------------------------------------------
@dataclass
class Explained:
    """What `aimespec.explain.engine` made of an exception message."""

    error: int | None = None  # the documented error, when the best match scores enough
    reason: str | None = None  # the evidence for it, in symbols
    numbers: dict[str, str] | None = None  # each number of the message -> its best reading


def explain_exception(exc: BaseException, cfg: AimeConfig, B: int | None, T: int | None) -> Explained:
    """The documented error and the numbers' readings for an exception raised in the user's code.

    A `ContractViolation` (a checked component inside the user's code) is read from its
    violations' structure; any other exception from its message, as PyTorch wrote it.
    """
    try:  # the explainer must never turn a finding into a crash
        from aimespec.explain.engine import explain, explain_violations
        from aimespec.explain.tracebacks import literals_in

        if isinstance(exc, ContractViolation):
            result = explain_violations(exc.violations, cfg, batch=B, seq_len=T)
        else:  # the whole traceback: a size written as a number in the failing line is named
            result = explain("".join(traceback.format_exception(exc)), cfg, batch=B, seq_len=T)
    except Exception as exc:  # say so: a silent empty explanation would hide a bug of ours
        return Explained(reason=f"aimespec's explainer failed on this message ({type(exc).__name__}: {exc})")
    matches = list(getattr(result, "matches", []) or [])
    numbers = {n: d[0] for n, d in (getattr(result, "numbers", None) or {}).items() if d} or None
    literals = getattr(result, "hard_coded", "")
    for n in literals_in(getattr(result, "code", None) or ""):  # a constant of the failing line is no symbol
        if numbers and str(n) in numbers:
            numbers[str(n)] = "a constant written in the code"
    for lit in getattr(result, "literals", []) or []:  # a number written in the failing line is read as written
        numbers = {**(numbers or {}), str(lit.value): f"hard-coded {lit.field}" + (
            " (the default config's)" if lit.default_only else "")}
    best = matches[0] if matches else None
    if best is None or best.score < MIN_EXPLAIN_SCORE:
        return Explained(None, literals or None, numbers)
    reason = getattr(best, "reason", None)
    return Explained(best.error, "; ".join(r for r in (reason, literals) if r) or None, numbers)


def exception_where(exc: BaseException, files: frozenset[str]) -> str | None:
    """file:line of the deepest traceback frame inside the user's files."""
    from aimespec.core.paths import display_path

    last = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(frame.filename) in files:
            last = f"{display_path(frame.filename)}:{frame.lineno}"
    return last


def return_line(fn: Any, tensor: str | None = None) -> str | None:
    """file:line of the `return` statement of `fn` (the one naming `tensor` if several)."""
    source = _function_source(fn)
    returns = _returns(source[2]) if source else []
    if source is None or not returns:
        return None
    chosen = returns[-1]
    if tensor and len(returns) > 1:
        named = [r for r in returns if tensor in _text(r.value)]
        chosen = named[-1] if named else chosen
    return f"{source[0]}:{source[1] + chosen.lineno - 1}"


def producing_line(fn: Any, tensor: str, position: int | None = None) -> str | None:
    """file:line where `fn` computed the returned `tensor` (else its return line).

    The returned expression is followed back: a dict entry `"pi": expr` or the tuple item at
    `position` gives `expr`; a name there gives its last assignment before the return.
    """
    source = _function_source(fn)
    if source is None:
        return None
    filename, start, fdef, _ = source
    returns = _returns(fdef)
    if not returns:
        return None
    leaf = tensor.rsplit(".", 1)[-1]
    ret = next((r for r in reversed(returns) if leaf in _text(r.value)), returns[-1])
    expr = _returned_part(ret.value, leaf, position)
    name = expr.id if isinstance(expr, ast.Name) else leaf if expr is None else None
    line = ret.lineno if expr is None else expr.lineno
    if name is not None:
        assigned = [n.lineno for n in _own_nodes(fdef)
                    if isinstance(n, ast.stmt) and _assigns(n, name) and n.lineno <= ret.lineno]
        line = assigned[-1] if assigned else line
    return f"{filename}:{start + line - 1}"


def _text(node: ast.expr | None) -> str:
    return ast.unparse(node) if node is not None else ""


def _returned_part(value: ast.expr | None, leaf: str, position: int | None) -> ast.expr | None:
    if isinstance(value, ast.Dict):
        for key, item in zip(value.keys, value.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == leaf:
                return item
        return None
    if isinstance(value, ast.Tuple) and position is not None and position < len(value.elts):
        return value.elts[position]
    if isinstance(value, ast.Call) and position is not None and position < len(value.args):  # Result(a, b)
        return value.args[position]
    if isinstance(value, ast.Call):
        named = [k.value for k in value.keywords if k.arg == leaf]
        return named[0] if named else None
    return value if isinstance(value, ast.Name) else None


def _assigns(node: ast.AST, name: str) -> bool:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    flat: list[ast.expr] = []
    while targets:
        t = targets.pop()
        if isinstance(t, (ast.Tuple, ast.List)):
            targets.extend(t.elts)
        else:
            flat.append(t)
    return any(isinstance(t, ast.Name) and t.id == name for t in flat)


def _function_source(fn: Any) -> tuple[str, int, ast.FunctionDef | ast.AsyncFunctionDef, list[str]] | None:
    """(shown file, first line, the parsed def, its lines) of a function, or None when unreadable."""
    from aimespec.core.paths import display_path

    try:
        fn = inspect.unwrap(fn)
        fn = getattr(fn, "__func__", fn)
        lines, start = inspect.getsourcelines(fn)
        filename = inspect.getsourcefile(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    if filename is None or not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    return display_path(filename), start, tree.body[0], lines


def _returns(fdef: ast.AST) -> list[ast.Return]:
    return [n for n in _own_nodes(fdef) if isinstance(n, ast.Return) and n.value is not None]


def _own_nodes(fdef: ast.AST) -> list[ast.AST]:
    """Nodes of a function body, not descending into nested functions, lambdas or classes."""
    out: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(fdef))
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))
    return sorted(out, key=lambda n: getattr(n, "lineno", 0))


def documented(number: int | None) -> tuple[str | None, str | None]:
    """(title, fix) of documented error `number`."""
    if number is None:
        return None, None
    try:
        from aimespec.explain.documented import documented_error
    except ImportError:
        return None, None
    record = documented_error(number)
    return record.title, record.fix


def output_where(method: Any, mc: "MethodContract", v: Violation) -> str | None:
    """A value finding points at the line that computed the tensor; a shape finding at the return line."""
    if v.kind == ViolationKind.VALUE:
        return producing_line(method, v.tensor, position_in(mc, v.tensor))
    return return_line(method, v.tensor)


def position_in(mc: "MethodContract", tensor: str) -> int | None:
    """The index of `tensor` in a tuple return (`(attention_probs_2d, regularized_coords)`)."""
    items = getattr(mc.returns, "items", None)
    if not items:
        return None
    paths = [getattr(i, "path", None) for i in items]
    return paths.index(tensor) if tensor in paths else None
