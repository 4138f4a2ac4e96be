"""What `check` adds to a bare finding: the contract's structure looked for inside a wrong return, and the
contract's signature beside the user's when a call could not even bind its arguments.

A prior that returns `(MixtureSameFamily, dict)` where the contract wants the dict has the wrong
structure, but the dict inside is still the user's answer: it is checked too, and both are reported
(`alpha [B, 10, 1]` is then found as well). A `TypeError: forward() takes 2 positional arguments but
3 were given` says nothing of what was expected: the finding prints both signatures.
"""

import inspect
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aimespec.core.config import AimeConfig
from aimespec.core.contract import MethodContract
from aimespec.core.dims import DictNode, Leaf, Node, TupleNode
from aimespec.core.validate import Violation, ViolationKind
from aimespec.runtime.hold import CallInputs, bound_checker

INSIDE = "{contract}: inside the returned {outer} ({where}, which holds the contract's {what}): {problem}"
HOLDS = "; {where} holds the contract's {what}: checked too"
SIGNATURE = "the contract's signature is {contract}; yours is {yours}"
_SIGNATURE_ERROR = re.compile(r"(takes \d+ positional arguments? but \d+ (were|was) given|missing \d+ required "
                              r"(positional|keyword-only) arguments?|got an unexpected keyword argument|"
                              r"takes (from )?\d+ to \d+ positional arguments)")


def _wants(node: Node, value: Any) -> bool:
    if isinstance(node, DictNode):
        return isinstance(value, Mapping) or (hasattr(value, "keys") and hasattr(value, "__getitem__"))
    if isinstance(node, TupleNode):
        return isinstance(value, (tuple, list)) and len(value) == len(node.items)
    return False


def look_inside(node: Node, result: Any) -> tuple[str, Any] | None:
    """(where, value) of the first item of a wrong-structured `result` that has the structure `node` wants."""
    if not isinstance(node, (DictNode, TupleNode)) or _wants(node, result):
        return None
    if isinstance(result, (tuple, list)):
        items = [(f"item {i}", v) for i, v in enumerate(result)]
    elif isinstance(result, Mapping):
        items = [(f"key {k!r}", v) for k, v in result.items()]
    else:
        return None
    return next(((where, v) for where, v in items if _wants(node, v)), None)


def inside_violations(mc: MethodContract, cfg: AimeConfig, inputs: CallInputs, result: Any,
                      found: list[Violation]) -> tuple[list[Violation], list[Violation]]:
    """(found with the structure finding saying what was checked, the violations of what is inside)."""
    root = mc.returns
    wrong = [v for v in found if v.kind == ViolationKind.TYPE and v.tensor == root.path]
    held = look_inside(root, result) if wrong else None
    if held is None:
        return found, []
    where, value = held
    what = "mapping" if isinstance(root, DictNode) else f"tuple of {len(getattr(root, 'items', ()))}"
    outer = type(result).__name__
    prefix = f"{mc.name}: "
    inner = [replace(v, message=INSIDE.format(contract=mc.name, outer=outer, where=where, what=what,
                                              problem=v.message.removeprefix(prefix)))
             for v in bound_checker(mc, cfg, inputs).check_outputs(value)]
    found = [replace(v, message=v.message + HOLDS.format(where=where, what=what)) if v in wrong else v
             for v in found]
    return found, inner


# --- signatures ---------------------------------------------------------------------------------
def is_signature_error(exc: BaseException, method: Any) -> bool:
    """A TypeError raised by binding the arguments of `method` itself (not from inside its body)."""
    if not isinstance(exc, TypeError) or not _SIGNATURE_ERROR.search(str(exc)):
        return False
    name = getattr(method, "__name__", "")
    return not name or f"{name}()" in str(exc) or name in str(exc)


def contract_signature(mc: MethodContract) -> str:
    """`forward(h: [B, hidden_dim+context_dim], n_samples: int = 10)`."""
    parts = []
    for p in mc.params:
        node = p.node
        shown = node.symbolic if isinstance(node, Leaf) else _structure(node)
        default = f" = {p.default!r}" if p.has_default else ""
        parts.append(f"{p.name}: {shown}{default}")
    return f"{mc.method}({', '.join(parts)})"


def _structure(node: Node) -> str:
    if isinstance(node, TupleNode):
        return "(" + ", ".join(i.symbolic if isinstance(i, Leaf) else _structure(i) for i in node.items) + ")"
    if isinstance(node, DictNode):
        return "{" + ", ".join(k for k, _, _ in node.entries) + "}"
    hint = getattr(node, "hint", None)
    return getattr(hint, "__name__", str(hint)) if hint is not None else "?"


def user_signature(method: Any) -> str:
    try:
        sig = inspect.signature(method)
    except (TypeError, ValueError):
        return "(unreadable)"
    params = [p for p in sig.parameters.values() if p.name != "self"]
    return f"{getattr(method, '__name__', 'method')}({', '.join(str(p) for p in params)})"


def def_line(method: Any) -> str | None:
    """file:line of a method's `def` (where a call that could not bind its arguments points)."""
    from aimespec.core.paths import display_path

    try:
        fn = inspect.unwrap(getattr(method, "__func__", method))
        _, start = inspect.getsourcelines(fn)
        filename = inspect.getsourcefile(fn)
    except (OSError, TypeError):
        return None
    return f"{display_path(filename)}:{start}" if filename else None


def signature_note(mc: MethodContract, method: Any) -> str:
    return SIGNATURE.format(contract=contract_signature(mc), yours=user_signature(method))


__all__ = ["contract_signature", "def_line", "inside_violations", "is_signature_error", "look_inside", "signature_note"]
