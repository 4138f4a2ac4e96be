"""The runtime switch: AIMESPEC_CHECK=full|shapes|off read at call time, and aimespec.checking()."""

import pytest
import torch
from torch import nn

import aimespec.runtime.checked as checking_module
from aimespec import AimeConfig, ContractViolation, checked, checking, current_mode
from aimespec.runtime.hold import make_result


class Prior(nn.Module):
    """A prior whose output can be made wrong in shape or in value on demand."""

    def __init__(self, cfg, bad_shape=False, bad_value=False):
        super().__init__()
        self.cfg, self.bad_shape, self.bad_value = cfg, bad_shape, bad_value
        self.calls = 0

    @checked("DPGMMPrior.forward")
    def forward(self, h, n_samples=10):
        self.calls += 1
        out = make_result("DPGMMPrior.forward", self.cfg, h.shape[0], 1, overrides={"n_samples": n_samples})
        if self.bad_shape:
            out["means"] = out["means"][..., :-1]
        if self.bad_value:
            out["pi"] = out["pi"] * 3
        return out


CFG = AimeConfig()
H = torch.randn(4, 768)


def test_default_mode_is_full(monkeypatch):
    monkeypatch.delenv("AIMESPEC_CHECK", raising=False)
    assert current_mode() == "full"
    with pytest.raises(ContractViolation, match="pi must sum to 1"):
        Prior(CFG, bad_value=True)(H)


def test_env_is_read_at_call_time(monkeypatch):
    prior = Prior(CFG, bad_shape=True)
    monkeypatch.setenv("AIMESPEC_CHECK", "off")
    prior(H)  # no error
    monkeypatch.setenv("AIMESPEC_CHECK", "shapes")
    with pytest.raises(ContractViolation, match="means expected"):
        prior(H)


def test_shapes_mode_skips_value_invariants(monkeypatch):
    monkeypatch.setenv("AIMESPEC_CHECK", "shapes")
    Prior(CFG, bad_value=True)(H)
    with pytest.raises(ContractViolation):
        Prior(CFG, bad_shape=True)(H)


def test_off_does_no_checking_work(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("checking work was done in off mode")

    monkeypatch.setattr(checking_module, "CallChecker", boom)
    monkeypatch.setattr(checking_module, "resolve", boom)
    prior = Prior(CFG, bad_shape=True, bad_value=True)
    with checking("off"):
        prior(torch.randn(3, 5))  # wrong input too: not looked at
    assert prior.calls == 1
    with pytest.raises(AssertionError, match="off mode"):
        prior(H)  # full again outside the block


def test_checking_overrides_env_and_restores(monkeypatch):
    monkeypatch.setenv("AIMESPEC_CHECK", "off")
    with checking("full"):
        assert current_mode() == "full"
        with checking("shapes"):
            assert current_mode() == "shapes"
        assert current_mode() == "full"
    assert current_mode() == "off"


def test_bad_modes_are_one_sentence(monkeypatch):
    with pytest.raises(ValueError, match=r"^'fast' is not a checking mode: use one of full, shapes, off$"):
        with checking("fast"):
            pass
    monkeypatch.setenv("AIMESPEC_CHECK", "loud")
    with pytest.raises(ValueError, match=r"^AIMESPEC_CHECK='loud' is not a checking mode"):
        current_mode()
