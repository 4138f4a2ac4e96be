"""The validator's fast path (core/fastcheck.py) never changes a verdict: for valid calls and for
calls broken in every way a tensor can be (a dim, the rank, the dtype, a missing entry, a non-tensor,
NaN, values out of range, two tensors disagreeing about B), `CallChecker` reports exactly what the
full validator alone reports, and binds the same symbols. Plus the checked wrapper's argument binder."""

import inspect
import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aimespec import AimeConfig, checked, checking
from aimespec.core import fastcheck
from aimespec.core.contract import all_methods
from aimespec.core.dims import DictNode, Leaf, TupleNode
from aimespec.core.validate import CallChecker
from aimespec.runtime.checked import _binder
from aimespec.runtime.hold import make_inputs, make_result

CFG = AimeConfig.small()
METHODS = [mc for mc in all_methods() if mc.params]
INITIAL = ["none", "B and T", "with a config size"]  # what the caller binds before the call (hold binds B, T)
BREAKS = ["none", "dim", "rank", "dtype", "missing", "not_a_tensor", "nan", "scale", "batch", "none_value"]


def _paths(node, value, out, path=()):
    """(path into the value, leaf) for every tensor of a drawn value."""
    if isinstance(node, Leaf):
        out.append((path, node))
    elif isinstance(node, TupleNode) and isinstance(value, tuple):
        for i, (item, v) in enumerate(zip(node.items, value, strict=True)):
            _paths(item, v, out, (*path, i))
    elif isinstance(node, DictNode) and isinstance(value, dict):
        for key, item, _ in node.entries:
            _paths(item, value[key], out, (*path, key))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, tuple):
        items = list(value)
        items[head] = _replace(items[head], rest, new)
        return tuple(items)
    out = dict(value)
    if new is _DROP and not rest:
        del out[head]
        return out
    out[head] = _replace(out[head], rest, new)
    return out


_DROP = object()


def _broken(t: Any, how: str, rng: st.DataObject):
    if how == "dim" and t.dim():
        i = rng.draw(st.integers(0, t.dim() - 1))
        shape = list(t.shape)
        shape[i] += rng.draw(st.sampled_from([-1, 1, 3])) if shape[i] > 1 else 1
        return torch.zeros(shape, dtype=t.dtype)
    if how == "rank":
        return t.unsqueeze(0) if rng.draw(st.booleans()) or not t.dim() else t.flatten()[:1].reshape(())
    if how == "dtype":
        return t.long() if t.is_floating_point() else t.float()
    if how == "not_a_tensor":
        return rng.draw(st.sampled_from([3, "x", None, [1, 2]]))
    if how == "nan" and t.is_floating_point() and t.numel():
        t = t.clone()
        t.view(-1)[rng.draw(st.integers(0, t.numel() - 1))] = rng.draw(st.sampled_from([math.nan, math.inf]))
        return t
    if how == "scale" and t.numel():
        return t * rng.draw(st.sampled_from([-3.0, 5.0, 1e6])) - 1
    if how == "batch" and t.dim():
        return torch.cat([t, t[:1]], dim=0)
    if how == "none_value":
        return None
    return t


def _both(contract, inputs, result, values: bool, initial):
    """(violations of the inputs, of the result, the bindings) with the fast path, then without it."""
    out = []
    for fast in (True, False):
        checker = CallChecker(contract, CFG, values=values, initial=initial)
        if not fast:
            checker._vouched = None
            originals = fastcheck.CallPlan.holds_inputs, fastcheck.CallPlan.holds_result
            fastcheck.CallPlan.holds_inputs = lambda *a, **k: False  # type: ignore[method-assign]
            fastcheck.CallPlan.holds_result = lambda *a, **k: False  # type: ignore[method-assign]
        try:
            found = (checker.check_inputs(inputs), checker.check_outputs(result))
        finally:
            if not fast:
                fastcheck.CallPlan.holds_inputs, fastcheck.CallPlan.holds_result = originals  # type: ignore[method-assign]
        out.append((found, dict(checker.bindings.values)))
    return out


@settings(max_examples=150)  # cheap (a few ms each) and the one guard of the fast path
@given(st.sampled_from(METHODS), st.integers(1, 5), st.integers(1, 6), st.sampled_from(BREAKS),
       st.sampled_from(["inputs", "result"]), st.booleans(), st.sampled_from(INITIAL), st.data())
def test_the_fast_path_reports_what_the_full_validator_reports(mc, B, T, how, where, values, initial, data):
    inputs = make_inputs(mc, CFG, B, T, seed=data.draw(st.integers(0, 9)))
    arguments = inputs.arguments
    result = make_result(mc, CFG, B, T, seed=1)
    if how != "none":
        if where == "inputs":
            spots = []
            for name, value in arguments.items():
                node = next(p.node for p in mc.params if p.name == name)
                _paths(node, value, found := [])
                spots += [((name, *path), leaf) for path, leaf in found]
        else:
            _paths(mc.returns, result, spots := [])
        if spots:
            path, _leaf = data.draw(st.sampled_from(spots))
            value = arguments if where == "inputs" else result
            target = value
            for key in path:
                target = target[key]
            new = _DROP if how == "missing" and path and isinstance(path[-1], str) else _broken(target, how, data)
            if where == "inputs":
                arguments = _replace(arguments, path, new)
            else:
                result = _replace(result, path, new)
    bound = None if initial == "none" else {"B": B, "T": T}
    if bound is not None and initial == "with a config size":  # a config symbol too: the plan without its sizes
        bound.update(hidden_dim=CFG.hidden_dim, K=CFG.max_components)
    (fast, fast_env), (full, full_env) = _both(mc, arguments, result, values, bound)
    assert fast == full
    assert fast_env == full_env


def test_a_valid_call_builds_no_message_and_takes_the_fast_path(monkeypatch):
    mc = next(m for m in METHODS if m.name == "DPGMMPrior.forward")
    inputs = make_inputs(mc, CFG, 3, 4)
    built = []
    monkeypatch.setattr(CallChecker, "_violation", lambda self, *a, **k: built.append(a))
    monkeypatch.setattr(CallChecker, "_check_nodes", lambda self, nodes: pytest.fail("the full validator ran"))
    checker = CallChecker(mc, CFG)
    assert checker.check_inputs(inputs.arguments) == [] and checker.check_outputs(make_result(mc, CFG, 3, 4)) == []
    assert built == [] and checker.bindings.values["B"] == 3


class _Signatures:
    def plain(self, a, b=2, c=None):
        return a, b, c

    def star(self, a, *rest, k=1):
        return a, rest, k


@pytest.mark.parametrize("args, kwargs", [((1,), {}), ((1, 5), {}), ((1,), {"c": 3}), ((), {"a": 1}),
                                          ((1, 2, 3), {}), ((1,), {"b": 4, "c": 5}), ((1, 2), {"c": 9})])
def test_the_binder_binds_as_inspect_does(args, kwargs):
    for name in ("plain", "star"):
        fn = getattr(_Signatures, name)
        sig = inspect.signature(fn)
        try:
            expected = sig.bind(None, *args, **kwargs)
        except TypeError:
            continue
        expected.apply_defaults()
        want = dict(expected.arguments)
        want.pop("self")
        got = _binder(sig, "self")(None, args, kwargs)
        assert got == want and list(got) == list(want)


@pytest.mark.parametrize("args, kwargs", [((), {}), ((1, 2, 3, 4), {}), ((1,), {"a": 2}), ((1,), {"zzz": 2})])
def test_the_binder_rejects_what_python_rejects(args, kwargs):
    sig = inspect.signature(_Signatures.plain)
    with pytest.raises(TypeError):
        _binder(sig, "self")(None, args, kwargs)


def test_a_checked_method_still_raises_pythons_type_error():
    class Thing:
        cfg = CFG

        @checked("DPGMMPrior.forward")
        def forward(self, h, n_samples=10):
            return h

    with checking("full"), pytest.raises(TypeError):
        Thing().forward()  # type: ignore[call-arg]


def test_shapes_mode_reads_no_value_and_so_takes_the_fast_path_past_a_bad_one(monkeypatch):
    """`shapes` reads no tensor's values: a result out of its invariants (pi not a simplex, NaN) still
    meets only the plan, and the full validator is never built for it."""
    mc = next(m for m in METHODS if m.name == "DPGMMPrior.forward")
    result = make_result(mc, CFG, 3, 4)
    result = {**result, "pi": torch.full_like(result["pi"], math.nan)}
    monkeypatch.setattr(CallChecker, "_check_nodes", lambda self, nodes: pytest.fail("the full validator ran"))
    plan, env = fastcheck.plan_of(mc, CFG), {"B": 3}
    assert plan.holds_result(result, env, values=False)
    assert not plan.holds_result(result, {"B": 3}, values=True)
