"""The fast path's walk as Python source: one function per contract side (its arguments, its result)
at one config, every node of the tree written out in it, compiled once.

A checked forward makes ~50 checked calls between the model's own operations, which push the
checker out of the CPU's caches; a call then costs what it touches. A walk through a tree of
closures touches a function, its cells and their objects for every node; this function touches
one code object, its constants and the values themselves. It does exactly what the closures of
the validator's rules would do, node by node, in the same order:

- a tensor (`Leaf`): missing or None is fine only if optional; then a `torch.Tensor` of the
  contract's rank and dtypes, every known size compared (at once when all are known), every
  symbol bound by the first tensor that has it and compared after; its invariants' compiled
  test run then and there (with values), or the tensor kept in `again` when it has expressions
  or invariants without one (fastcheck.py looks at those after the walk);
- a tuple: a tuple or list of the right length, its items in order (None: fine if optional);
- a mapping: a `Mapping` or a record answering `keys()`, its entries (a missing one is absent);
- anything else: `isinstance` for a class, beartype's `is_bearable` for other hints.

Any failure raises `fails`; so may a user's odd object: the caller treats both alike.
"""

from collections.abc import Callable, Mapping
from typing import Any

import torch
from beartype.door import is_bearable

from aimespec.core.dims import DictNode, Leaf, Node, Other, TupleNode

Walk = Callable[[Any, dict[str, int], list, bool], None]  # (the arguments or the result, env, again, values)


class _Writer:
    """Source lines and the constants they name (`C0`, `C1`, ...)."""

    def __init__(self, plan_for: Callable[[Leaf], Any], fails: type[Exception]) -> None:
        self.plan_for = plan_for
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"F": fails, "T": torch.Tensor, "M": Mapping, "bearable": is_bearable}
        self.count = 0

    def const(self, value: Any) -> str:
        name = f"C{len(self.names)}"
        self.names[name] = value
        return name

    def var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    # --- one node ------------------------------------------------------------------------
    def absent(self, node: Node, depth: int) -> None:
        """The node's value is not there at all (a parameter not given, a key not in the mapping)."""
        self.emit(depth, "raise F" if isinstance(node, Leaf) and not node.optional else "pass")

    def present(self, node: Node, v: str, depth: int) -> None:
        if isinstance(node, Leaf):
            self._leaf(node, v, depth)
        elif isinstance(node, TupleNode):
            self._tuple(node, v, depth)
        elif isinstance(node, DictNode):
            self._dict(node, v, depth)
        else:
            self._other(node, v, depth)

    def _unless_none(self, node: Leaf | TupleNode | DictNode, v: str, depth: int) -> int:
        """`if v is None:` (fine when the node is optional, else a failure) `else:`; the depth inside."""
        self.emit(depth, f"if {v} is None:")
        self.emit(depth + 1, "pass" if node.optional else "raise F")
        self.emit(depth, "else:")
        return depth + 1

    def _leaf(self, node: Leaf, v: str, depth: int) -> None:
        plan = self.plan_for(node)
        d = self._unless_none(node, v, depth)
        self.emit(d, f"if not isinstance({v}, T):")
        self.emit(d + 1, "raise F")
        self.emit(d, f"s = {v}.shape")
        test = f"len(s) != {plan.rank}"
        if plan.dtypes is not None:
            test += f" or {v}.dtype not in {self.const(plan.dtypes)}"
        self.emit(d, f"if {test}:")
        self.emit(d + 1, "raise F")
        if plan.exact is not None:
            if plan.rank:
                self.emit(d, f"if s != {self.const(plan.exact)}:")
                self.emit(d + 1, "raise F")
        else:
            for i, want in plan.consts:
                self.emit(d, f"if s[{i}] != {want}:")
                self.emit(d + 1, "raise F")
            for i, name in plan.symbols:
                self.emit(d, f"w = env.get({name!r})")
                self.emit(d, "if w is None:")
                self.emit(d + 1, f"env[{name!r}] = s[{i}]")
                self.emit(d, f"elif w != s[{i}]:")
                self.emit(d + 1, "raise F")
        if plan.again:
            self.emit(d, f"again.append(({self.const(plan)}, {v}))")
        elif plan.inline:  # meta tensors carry no values (check_value)
            self.emit(d, f"if values and not {v}.is_meta and not {self.const(plan.test)}({v}):")
            self.emit(d + 1, "raise F")

    def _tuple(self, node: TupleNode, v: str, depth: int) -> None:
        d = self._unless_none(node, v, depth)
        self.emit(d, f"if not isinstance({v}, (tuple, list)) or len({v}) != {len(node.items)}:")
        self.emit(d + 1, "raise F")
        for i, item in enumerate(node.items):
            w = self.var()
            self.emit(d, f"{w} = {v}[{i}]")
            self.present(item, w, d)

    def _dict(self, node: DictNode, v: str, depth: int) -> None:
        d = self._unless_none(node, v, depth)
        keys = self.var()
        self.emit(d, f"if type({v}) is dict or isinstance({v}, M):")  # the exact type first: no ABC check
        self.emit(d + 1, f"{keys} = {v}")
        self.emit(d, f"elif hasattr({v}, '__getitem__') and hasattr({v}, 'keys'):")  # a record answering keys
        self.emit(d + 1, f"{keys} = {v}.keys()")
        self.emit(d, "else:")
        self.emit(d + 1, "raise F")
        for key, item, _required in node.entries:
            w = self.var()
            self.emit(d, f"if {key!r} in {keys}:")
            self.emit(d + 1, f"{w} = {v}[{key!r}]")
            self.present(item, w, d + 1)
            self.emit(d, "else:")
            self.absent(item, d + 1)

    def _other(self, node: Other, v: str, depth: int) -> None:
        if node.hint is Any:
            self.emit(depth, "pass")
            return
        hint = self.const(node.hint)
        test = f"isinstance({v}, {hint})" if isinstance(node.hint, type) else f"bearable({v}, {hint})"
        if node.optional:
            self.emit(depth, f"if {v} is not None and not {test}:")
        else:
            self.emit(depth, f"if not {test}:")
        self.emit(depth + 1, "raise F")

    def compile(self, title: str) -> Walk:
        source = "\n".join(self.lines) + "\n"
        namespace = dict(self.names)
        exec(compile(source, f"<aimespec walk: {title}>", "exec"), namespace)
        return namespace["walk"]


def inputs_walk(params: list[tuple[str, Node]], plan_for: Callable[[Leaf], Any], fails: type[Exception],
                title: str) -> Walk:
    """`walk(arguments, env, again, values)`: each parameter, given (a key of `arguments`) or not."""
    out = _Writer(plan_for, fails)
    out.emit(0, "def walk(a, env, again, values):")
    out.emit(1, "pass")
    for name, node in params:
        v = out.var()
        out.emit(1, f"if {name!r} in a:")
        out.emit(2, f"{v} = a[{name!r}]")
        out.present(node, v, 2)
        out.emit(1, "else:")
        out.absent(node, 2)
    return out.compile(title)


def result_walk(node: Node, plan_for: Callable[[Leaf], Any], fails: type[Exception], title: str) -> Walk:
    """`walk(result, env, again, values)`."""
    out = _Writer(plan_for, fails)
    out.emit(0, "def walk(v0, env, again, values):")
    out.emit(1, "pass")
    out.present(node, "v0", 1)
    return out.compile(title)
