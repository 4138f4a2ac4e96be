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
