"""Timeouts that help: the default limit follows the work, the message says how to rerun, and the
smaller examples still run, so a crash behind a slow call is still found."""

import pytest

from aimespec.commands import check_timing
from aimespec.commands.check import check
from aimespec.commands.check_timing import Measured, rerun_hint, scaled_limit, timeout_message

# 0.12 s per example of the batch: at the config's B the call is slow, at the small B it is quick
SLOW_WITH_B = """
import time
import torch

class RGB:
    def __init__(self, cfg):
        pass

    def balance(self, grads):
        return grads.mean(0)

class VAEEncoder:
    def __init__(self, cfg):
        self.d = cfg.latent_dim

    def forward(self, x, context):
        time.sleep(0.12 * x.shape[0])
        return {"mu": torch.zeros(x.shape[0], self.d), "logvar": torch.zeros(x.shape[0], self.d)}
"""

# slow at the config's own batch; a crash at every smaller one
CRASH_BEHIND_SLOW = """
import time
import torch

class VAEEncoder:
    def __init__(self, cfg):
        self.cfg = cfg

    def forward(self, x, context):
        if x.shape[0] >= self.cfg.batch_size:
            time.sleep(5)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x7 and 9x3)")
"""


def _write(tmp_path, text):
    path = tmp_path / "model.py"
    path.write_text(text)
    return path


def test_the_default_limit_follows_the_measured_work(tmp_path, small_cfg, monkeypatch):
    monkeypatch.setattr(check_timing, "DEFAULT_TIMEOUT", 0.35)  # a small call's limit, shrunk for the test
    path = _write(tmp_path, SLOW_WITH_B)
    report = check(path, small_cfg, examples=0, meta=False)  # B=4: 0.48 s > 0.35 s, yet no finding
    assert report.ok, [f.violation.message for r in report.results for f in r.findings]
    fixed = check(path, small_cfg, examples=0, meta=False, timeout=0.35)  # a fixed limit: it runs out
    (finding,) = [f for r in fixed.results for f in r.findings]
    assert finding.violation.kind == "timeout"
    assert finding.violation.message == (
        "VAEEncoder.forward: did not return within 0.35 s at B=4, T=8; if it is only slow, rerun with "
        "--timeout 30")


def test_a_crash_behind_a_slow_call_is_still_found(tmp_path, small_cfg):
    report = check(_write(tmp_path, CRASH_BEHIND_SLOW), small_cfg, examples=2, meta=False, timeout=0.3)
    kinds = {f.violation.kind: f.violation for r in report.results for f in r.findings}
    assert set(kinds) == {"timeout", "exception"}
    assert kinds["timeout"].batch == small_cfg.batch_size
    assert kinds["exception"].batch < small_cfg.batch_size and "mat1 and mat2" in kinds["exception"].message


def test_limits_and_hints():
    small = Measured((2, 3), 0.5)
    assert scaled_limit(20.0, small, (8, 16)) == pytest.approx(4 * 0.5 * 128 / 6)
    assert scaled_limit(20.0, small, (2, 3)) == 20.0  # never below the base
    assert scaled_limit(20.0, Measured((2, 3), None), (8, 16)) == 20.0
    assert rerun_hint(20.0, None, (8, 16)) == 60
    assert rerun_hint(42.0, small, (8, 16)) == 120
    text = timeout_message("X.f", 42.0, (8, 16), small)
    assert text == ("X.f: did not return within 42 s at B=8, T=16 (a call at B=2, T=3 took 0.5 s); if it is only "
                    "slow, rerun with --timeout 120")
    hung = timeout_message("X.f", 20.0, (2, 3), Measured((2, 3), None, timed_out=True))
    assert hung.endswith("even the small call did not return: a loop that never ends, or a wait on something that "
                         "never comes")
