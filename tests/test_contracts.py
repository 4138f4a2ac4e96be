"""Every contract accepts valid calls over random B and T, and rejects each kind of breakage."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aimespec import AimeConfig, resolve
from aimespec.core.contract import all_methods
from aimespec.core.dims import DictNode, Leaf, TupleNode, dim_names, leaves
from aimespec.core.invariants import Declaration, FiniteLoss, InRange, IntRange, Simplex
from aimespec.core.symbols import FREE
from aimespec.core.validate import CallChecker
from aimespec.runtime.hold import make_inputs, make_result

CFG = AimeConfig()
METHODS = [m.name for m in all_methods()]


def _check(name: str, arguments: dict, result, cfg: AimeConfig = CFG, values: bool = True):
    checker = CallChecker(resolve(name), cfg, values=values)
    return checker.check_inputs(arguments) + checker.check_outputs(result)


def test_every_component_of_spec_has_a_contract():
    assert set(METHODS) == {
        "VQPTTokenizer.encode", "VQPTTokenizer.decode", "CausalPerceiverIO.extract_context",
        "DPGMMPrior.forward", "LSTMLayer.forward", "SlotAttention.forward", "AttentionSchema.forward",
        "VAEEncoder.forward", "VAEDecoder.forward", "Discriminator.forward", "RGB.balance",
        "AimeWorldModel.forward_sequence",
    }


@pytest.mark.parametrize("name", METHODS)
@given(B=st.integers(1, 16), T=st.integers(1, 32), seed=st.integers(0, 1000))
def test_valid_calls_pass(name, B, T, seed):
    call = make_inputs(name, CFG, B, T, seed)
    result = make_result(name, CFG, B, T, seed)
    assert _check(name, call.arguments, result) == []


def _leaf_paths_with(name: str, symbol: str) -> list[str]:
    contract = resolve(name)
    return [leaf.path for leaf in contract.input_leaves() + contract.output_leaves()
            if any(symbol in dim_names(d) for d in leaf.dims)]


def _bound_symbols(name: str) -> list[str]:
    """Config-bound symbols in the tensors of a positional call (optional arguments left out)."""
    contract = resolve(name)
    used = [leaf for p in contract.params if not p.has_default for leaf in leaves(p.node)]
    names = {n for leaf in used + contract.output_leaves() for d in leaf.dims for n in dim_names(d)}
    return sorted(names - FREE - contract.free_symbols())


CASES = [(m, s) for m in METHODS for s in _bound_symbols(m)]


@pytest.mark.parametrize(("name", "symbol"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_config_bound_dim_wrong_but_consistent_is_rejected(name, symbol):
    """A D of 37 in every tensor of the call is still a violation when latent_dim is 36."""
    values = {symbol: _value(symbol) + 1}
    call = make_inputs(name, CFG, 3, 5, 0, overrides=values)
    result = make_result(name, CFG, 3, 5, 0, overrides=values)
    found = _check(name, call.arguments, result)
    flagged = {v.tensor for v in found if v.kind == "shape"}
    expected = set(_leaf_paths_with(name, symbol)) & _present(call.arguments, result, name)
    assert expected, f"{symbol} is used by {name}"
    assert expected <= flagged, found


def _value(symbol: str) -> int:
    from aimespec.core.symbols import symbol_values

    return symbol_values(CFG)[symbol]


def _present(arguments: dict, result, name: str) -> set[str]:
    contract = resolve(name)
    paths = {leaf.path for p in contract.params if p.name in arguments for leaf in leaves(p.node)}
    paths |= {leaf.path for leaf in contract.output_leaves()}
    return paths


MULTI_B = [m.name for m in all_methods()
           if sum(1 for p in m.params if not p.has_default and any("B" in leaf.dims for leaf in leaves(p.node))) >= 2]


@pytest.mark.parametrize("name", MULTI_B)
def test_B_disagreeing_between_arguments_is_rejected(name):
    majority = make_inputs(name, CFG, 4, 6, 0)
    odd = make_inputs(name, CFG, 5, 6, 0)
    arguments = dict(majority.arguments)
    first = majority.names[0]
    arguments[first] = odd.arguments[first]
    found = _check(name, arguments, make_result(name, CFG, 4, 6, 0))
    flagged = [v for v in found if v.kind == "shape" and v.tensor.split(".")[0] in majority.names]
    assert flagged, found
    assert all(v.got[v.expected.strip("[]").split(", ").index("B")] != v.bindings["B"] for v in flagged)


B_OUT = [m.name for m in all_methods() if any("B" in leaf.dims for leaf in m.output_leaves())]


@pytest.mark.parametrize("name", B_OUT)
def test_B_disagreeing_between_input_and_output_is_rejected(name):
    call = make_inputs(name, CFG, 4, 6, 0)
    found = _check(name, call.arguments, make_result(name, CFG, 7, 6, 0))
    assert found and all(v.kind == "shape" for v in found)


@pytest.mark.parametrize("name", METHODS)
def test_wrong_rank_is_rejected(name):
    call = make_inputs(name, CFG, 2, 3, 0)
    arguments = dict(call.arguments)
    first = call.names[0]
    arguments[first] = arguments[first].unsqueeze(0)
    found = _check(name, arguments, make_result(name, CFG, 2, 3, 0))
    assert [v.kind for v in found if v.tensor == first] == ["rank"]


@pytest.mark.parametrize("name", METHODS)
def test_wrong_dtype_is_rejected(name):
    call = make_inputs(name, CFG, 2, 3, 0)
    arguments = dict(call.arguments)
    first = call.names[0]
    x = arguments[first]
    arguments[first] = x.long() if x.is_floating_point() else x.float()
    found = _check(name, arguments, make_result(name, CFG, 2, 3, 0))
    assert [v.kind for v in found if v.tensor == first] == ["dtype"]


INVARIANT_CASES = [(m.name, i) for m in all_methods() for i, inv in enumerate(m.invariants)
                   if not isinstance(inv, Declaration)]  # Causal, Stateful: the probes' (tests/test_probes.py)


def _break(inv, x: torch.Tensor) -> torch.Tensor:
    if isinstance(inv, Simplex):
        return x * 2
    if isinstance(inv, InRange):
        return torch.full_like(x, inv.high + 1 if math.isfinite(inv.high) else inv.low - 1)
    if isinstance(inv, IntRange):
        return x + 10_000
    if isinstance(inv, FiniteLoss):
        return torch.full_like(x, float("nan"))
    raise AssertionError(inv)


def _replace(node, value, path: str, fn):
    if isinstance(node, Leaf):
        return fn(value) if node.path == path else value
    if isinstance(node, TupleNode):
        return tuple(_replace(n, v, path, fn) for n, v in zip(node.items, value, strict=True))
    if isinstance(node, DictNode):
        return {k: _replace(n, value[k], path, fn) for k, n, _ in node.entries if k in value}
    return value


@pytest.mark.parametrize(("name", "index"), INVARIANT_CASES,
                         ids=[f"{m}-{resolve(m).invariants[i].describe()}" for m, i in INVARIANT_CASES])
def test_each_value_invariant_broken_is_rejected(name, index):
    contract = resolve(name)
    inv = contract.invariants[index]
    call = make_inputs(name, CFG, 3, 4, 1)
    arguments = {p.name: _replace(p.node, call.arguments[p.name], inv.path, lambda x: _break(inv, x))
                 for p in contract.params if p.name in call.arguments}
    result = _replace(contract.returns, make_result(name, CFG, 3, 4, 1), inv.path, lambda x: _break(inv, x))
    found = _check(name, arguments, result)
    assert found and {(v.tensor, v.kind) for v in found} == {(inv.path, "value")}, found
    # `shapes` mode skips value invariants
    assert _check(name, arguments, result, values=False) == []


DICT_RETURNS = [m.name for m in all_methods() if isinstance(m.returns, DictNode)]


@pytest.mark.parametrize("name", DICT_RETURNS)
def test_a_bad_entry_that_is_not_the_first_key_is_found(name):
    """beartype alone checks one item of a dict: we check every entry."""
    contract = resolve(name)
    required = [k for k, _, req in contract.returns.entries if req]
    last = required[-1]
    assert last != required[0]
    result = make_result(name, CFG, 3, 4, 0)
    result[last] = result[last][..., :1]
    found = _check(name, make_inputs(name, CFG, 3, 4, 0).arguments, result)
    assert [v.tensor for v in found] == [last]


@pytest.mark.parametrize("name", DICT_RETURNS)
def test_a_missing_required_key_is_found(name):
    contract = resolve(name)
    required = [k for k, _, req in contract.returns.entries if req]
    result = make_result(name, CFG, 3, 4, 0)
    del result[required[-1]]
    found = _check(name, make_inputs(name, CFG, 3, 4, 0).arguments, result)
    assert [(v.tensor, v.kind) for v in found] == [(required[-1], "missing")]


def test_all_violations_are_returned_not_only_the_first():
    result = make_result("DPGMMPrior.forward", CFG, 8, 1)
    result["means"] = torch.randn(8, 15, 32)
    result["log_vars"] = torch.randn(8, 15, 32)
    result["pi"] = torch.rand(8, 15)
    found = _check("DPGMMPrior.forward", {"h": torch.randn(8, 768), "n_samples": 10}, result)
    assert [(v.tensor, v.kind) for v in found] == [("means", "shape"), ("log_vars", "shape"), ("pi", "value")]


def test_n_samples_is_bound_from_the_argument():
    result = make_result("DPGMMPrior.forward", CFG, 2, 1)
    found = _check("DPGMMPrior.forward", {"h": torch.randn(2, 768), "n_samples": 3}, result)
    assert [v.message for v in found] == [
        "DPGMMPrior.forward: alpha expected [B, n_samples] = [2, 3], got [2, 10] (B=2 n_samples=3)"
    ]


def test_optional_arguments_are_checked_when_given():
    call = make_inputs("SlotAttention.forward", CFG, 2, 1)
    found = _check("SlotAttention.forward", {**call.arguments, "seed_slots": torch.randn(2, 5, 64)},
                   make_result("SlotAttention.forward", CFG, 2, 1))
    assert [(v.tensor, v.expected_shape, v.got) for v in found] == [("seed_slots", [2, 4, 64], [2, 5, 64])]
