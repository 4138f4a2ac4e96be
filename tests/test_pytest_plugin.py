"""The pytest plugin: `--aimespec` switches full checking on, for reference_model and named packages."""

import textwrap

pytest_plugins = ["pytester"]

USER_PACKAGE = '''
import torch
from jaxtyping import Float
from torch import Tensor


def head(h: Float[Tensor, "B 768"]) -> Float[Tensor, "B 15"]:
    return torch.softmax(h[:, :15], dim=-1)
'''

TESTS = '''
import os

import torch

import mypkg


def test_mode():
    assert os.environ.get("AIMESPEC_CHECK") == "full"


def test_wrong_width_is_caught_under_the_plugin():
    mypkg.head(torch.randn(8, 512))
'''


def _project(pytester):
    pkg = pytester.mkpydir("mypkg")
    (pkg / "__init__.py").write_text(textwrap.dedent(USER_PACKAGE))
    pytester.makepyfile(test_user=TESTS)
    pytester.syspathinsert()


def test_without_the_flag_nothing_is_checked(pytester, monkeypatch):
    monkeypatch.setenv("AIMESPEC_CHECK", "off")
    _project(pytester)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)  # test_mode fails (off), the wrong call is not seen
    result.stdout.fnmatch_lines(["*test_mode*"])


def test_flag_turns_on_full_checking_and_the_import_hook(pytester, monkeypatch):
    monkeypatch.setenv("AIMESPEC_CHECK", "off")
    _project(pytester)
    result = pytester.runpytest_subprocess("--aimespec", "--aimespec-packages=mypkg")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "aimespec: full contract checking; jaxtyping+beartype on mypkg",
        "*aimespec: 1 test(s) failed on a contract*",
        "*test_wrong_width_is_caught_under_the_plugin*",
    ])


def test_ini_options(pytester, monkeypatch):
    monkeypatch.setenv("AIMESPEC_CHECK", "off")
    _project(pytester)
    pytester.makeini("[pytest]\naimespec = true\naimespec_packages = mypkg\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*aimespec: 1 test(s) failed on a contract*"])


HOLD_TESTS = '''
import torch
from torch import nn

import aimespec


class Prior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.k = cfg.max_components

    def forward(self, h, n_samples=10):
        B = h.shape[0]
        k = self.k
        return {"pi": torch.full((B, k + 1), 1.0 / (k + 1)), "means": torch.zeros(B, k, 8),
                "log_vars": torch.zeros(B, k, 8), "kumar_a": torch.ones(B, k - 1), "kumar_b": torch.ones(B, k - 1),
                "alpha": torch.ones(B, n_samples)}


def test_prior_holds():
    cfg = aimespec.AimeConfig.small()
    assert aimespec.hold(Prior, "DPGMMPrior.forward", cfg, B=2) == []


def test_unrelated_failure():
    assert 1 == 2
'''


def test_the_summary_lists_hold_failures_with_their_first_message(pytester, monkeypatch):
    monkeypatch.setenv("AIMESPEC_CHECK", "off")
    pytester.makepyfile(test_hold_user=HOLD_TESTS)
    result = pytester.runpytest_subprocess("--aimespec")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*aimespec: 1 test(s) failed on a contract*",
        "  test_hold_user.py::test_prior_holds: hold found DPGMMPrior.forward: pi expected [B, K] = [2, 5], "
        "got [2, 6] (B=2 K=5)",
    ])
    assert "test_unrelated_failure: hold" not in result.stdout.str()
