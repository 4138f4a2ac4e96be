"""The typed core: a frozen Violation with an enum kind, context attached by replace, read by structure."""

import dataclasses

import pytest
import torch

from aimespec import AimeConfig, ContractViolation, resolve
from aimespec.core.validate import CallChecker
from aimespec.core.violation import Violation, ViolationKind, exception_violation
from aimespec.explain.engine import explain, explain_violations
from aimespec.explain.findings import explain_exception, shape_documented_error
from aimespec.runtime.hold import make_result

CFG = AimeConfig()


def _violations(name, arguments, result=None):
    checker = CallChecker(resolve(name), CFG)
    found = checker.check_inputs(arguments)
    return found + (checker.check_outputs(result) if result is not None else [])


def _prior_width():  # Error 4: h_t alone where hidden_dim + context_dim was expected
    return _violations("DPGMMPrior.forward", {"h": torch.randn(8, 512)}, make_result("DPGMMPrior.forward", CFG, 8, 1))


def _slots_rank():  # Error 5: a spatial map where [B, N, attention_dim] was expected
    return _violations("SlotAttention.forward", {"x": torch.randn(8, 64, 21, 21)},
                       make_result("SlotAttention.forward", CFG, 8, 1))


def test_violation_is_frozen_keyword_only_and_its_kind_an_enum():
    v = Violation(contract="X.f", tensor="h", kind="value", message="X.f: h is bad")
    assert v.kind is ViolationKind.VALUE and v.kind == "value"
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.batch = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Violation("X.f", "h", "value", "X.f: h is bad")  # type: ignore[misc]
    with pytest.raises(ValueError, match="banana"):
        Violation(contract="X.f", tensor="h", kind="banana", message="")


def test_call_context_and_documented_error_are_attached_by_replace():
    v = exception_violation("X.f", ViolationKind.EXCEPTION, RuntimeError("boom"))
    at = v.at(4, 9, 3, "model.py:12")
    assert (at.batch, at.seq_len, at.seed, at.where) == (4, 9, 3, "model.py:12")
    assert (v.batch, v.where) == (None, None)  # the original is untouched
    assert at.at(5, 6, 7, "other.py:1").where == "model.py:12"  # a known place stays
    fixed = at.explained_as(4, "concatenate").explained_as(4, "another fix")
    assert (fixed.documented_error, fixed.fix) == (4, "concatenate")
    assert at.to_json()["kind"] == "exception" and at.to_json()["dims"] == []


def test_violations_carry_their_axes_as_structure():
    (v,) = _prior_width()
    assert v.kind is ViolationKind.SHAPE and v.dims == ("B", "hidden_dim+context_dim")
    assert v.expected == "[B, hidden_dim+context_dim]" and v.expected_sizes == [8, 768] and v.got == [8, 512]
    (r,) = _slots_rank()
    assert r.kind is ViolationKind.RANK and r.dims == ("B", "N", "attention_dim")


def test_classification_reads_the_axes_never_the_text():
    (v,) = _prior_width()
    assert shape_documented_error(v, CFG, 8, 16) == 4
    garbled = dataclasses.replace(v, expected="", message="")  # no text left to read
    assert shape_documented_error(garbled, CFG, 8, 16) == 4


@pytest.mark.parametrize(("make", "error"), [(_prior_width, 4), (_slots_rank, 5)])
def test_explaining_our_own_violations_reads_their_structure(make, error):
    found = make()
    structural = explain_violations(found, CFG)
    textual = explain(str(ContractViolation(found)), CFG)  # what a user pasting our message gets
    assert structural.matches[0].error == textual.matches[0].error == error
    assert structural.numbers and all(textual.numbers.get(n) == d for n, d in structural.numbers.items())
    garbled = [dataclasses.replace(v, message="(no text)") for v in found]
    assert explain_violations(garbled, CFG).matches[0].error == error
    assert explain_exception(ContractViolation(garbled), CFG, 8, 16).error == error
    assert explain("(no text)", CFG).matches == []
