"""One dims module: one evaluator (contract dims and message axes), one shape formatter."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimespec.core.dims import DimError, axis_value, evaluate, format_shape, substitute

VALUES = {"B": 8, "T": 16, "hidden_dim": 512, "context_dim": 256, "K": 15, "D": 36, "H": 64}


@pytest.mark.parametrize(("dim", "value"), [
    ("768", 768), ("B", 8), ("hidden_dim+context_dim", 768), ("K-1", 14), ("2*K*D", 1080), ("B*T", 128),
    ("H//8", 8), ("(B+T)*2", 48), ("T_enc", None), ("B*T_enc", None)])
def test_evaluate(dim, value):
    assert evaluate(dim, VALUES) == value


@pytest.mark.parametrize("dim", ["H/8", "B**2", "f(B)", "B.real", "1.5", "B if T else K", "*B"])
def test_evaluate_rejects_what_a_contract_may_not_write(dim):
    with pytest.raises(DimError):
        evaluate(dim, VALUES)


@pytest.mark.parametrize(("axis", "value"), [
    ("D=36", 36), ("#B", 8), ("_hidden_dim+context_dim", 768), ("H/8", 8), ("H/3", None), ("H/0", None),
    ("B**2", None), ("banana", None), ("1.5", None), ("-B+T", 8), ("*B", None), ("?K", 15)])
def test_axis_value_reads_what_a_message_writes(axis, value):
    assert axis_value(axis, VALUES) == value


names = st.sampled_from(sorted(VALUES))
terms = st.one_of(names, st.integers(0, 99).map(str))


@given(st.lists(st.tuples(terms, st.sampled_from(["+", "-", "*", "//"])), min_size=1, max_size=4), terms)
def test_one_evaluator_for_contracts_and_messages(pairs, last):
    expr = "".join(t + op for t, op in pairs) + last
    try:
        expected = eval(expr, {}, dict(VALUES))  # the reference: Python's own arithmetic
    except ZeroDivisionError:
        assert axis_value(expr, VALUES) is None
        return
    assert evaluate(expr, VALUES) == expected == axis_value(expr, VALUES)
    assert axis_value(f"x={expr}", VALUES) == expected


def test_format_shape_and_substitute():
    assert format_shape(["B", "T", "hidden_dim"]) == "[B, T, hidden_dim]"
    assert format_shape([8, None, 64]) == "[8, ?, 64]"
    assert format_shape(()) == "[]"
    assert substitute("D + context_dim + A", {"D": 36, "context_dim": 256, "A": 6}) == "36 + 256 + 6"
    assert substitute("B*T_enc", {"B": 8}) == "8*T_enc"
