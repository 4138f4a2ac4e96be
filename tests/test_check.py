"""`aimespec.check`: discovery, holding components and build_model's model to their contracts, findings."""

import re
import threading
import time
from pathlib import Path

import pytest

from aimespec import AimeConfig, UsageError, check
from aimespec.commands.check import example_pairs
from aimespec.core.violation import Violation
from aimespec.explain.findings import shape_documented_error

ROOT = Path(__file__).resolve().parent.parent
USER = ROOT / "examples" / "user_model.py"
BUGGY = ROOT / "examples" / "buggy_model.py"
SPEC_RESULT_KEYS = {"contract", "implementation", "ok", "violations"}
SPEC_VIOLATION_KEYS = {"tensor", "expected", "expected_shape", "got", "message", "documented_error"}
ALL_CONTRACTS = {
    "VQPTTokenizer.encode", "VQPTTokenizer.decode", "CausalPerceiverIO.extract_context", "DPGMMPrior.forward",
    "LSTMLayer.forward", "SlotAttention.forward", "AttentionSchema.forward", "VAEEncoder.forward",
    "VAEDecoder.forward", "Discriminator.forward", "RGB.balance", "AimeWorldModel.forward_sequence",
}


def _write(tmp_path: Path, text: str, name: str = "model.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _failures(report):
    return [f for r in report.results for f in r.findings]


# --- the reference model and the example user model pass -----------------------------------------
@pytest.mark.slow
def test_reference_model_holds_at_the_default_config():
    report = check(None, AimeConfig(), examples=1)
    assert report.ok, report.summary() + str([f.violation.message for f in _failures(report)])
    assert {r.contract for r in report.results} == ALL_CONTRACTS
    inside = {r.contract for r in report.results if r.checked_in == "inside"}
    assert {"DPGMMPrior.forward", "LSTMLayer.forward", "VAEDecoder.forward", "SlotAttention.forward"} <= inside


def test_reference_model_holds_at_the_small_config(small_cfg):
    report = check(None, small_cfg)
    assert report.ok, [f.violation.message for f in _failures(report)]
    doc = report.to_json()
    assert doc["ok"] is True and doc["version"] and doc["config"]["latent_dim"] == small_cfg.latent_dim
    assert {r["contract"] for r in doc["results"]} == ALL_CONTRACTS
    for row in doc["results"]:
        assert SPEC_RESULT_KEYS <= set(row) and row["violations"] == []
    steps = next(r for r in report.results if r.implementation == "build_model → prior (DPGMMPrior)")
    # one call per timestep: every (B, T) on the meta device, plus one small real (2, 3) for the values
    small_T = min(3, small_cfg.sequence_length)
    assert steps.calls == sum(T for _, T in report_world_pairs(small_cfg)) + small_T
    assert (2, small_T) in steps.examples


def report_world_pairs(cfg):
    from aimespec.commands.check import WORLD_BUDGET

    frames = cfg.batch_size * cfg.sequence_length
    return example_pairs(cfg, 3, 0, cap=(cfg.batch_size, cfg.sequence_length), budget=max(frames // WORLD_BUDGET, 2))


def test_user_model_passes_at_the_default_config(cfg):
    started = time.perf_counter()
    report = check(USER, cfg)
    assert report.ok, [f.violation.message for f in _failures(report)]
    assert time.perf_counter() - started < 30
    impl = {r.contract: r.implementation for r in report.results if r.checked_in == "standalone"}
    assert impl["VAEDecoder.forward"] == "FrameDecoder"  # found by @aimespec.implements
    assert impl["RGB.balance"] == "GradientRotator"
    assert {r.contract for r in report.results} == ALL_CONTRACTS


# --- the buggy model: the documented errors, at the user's lines -------------------------------------
def _bug_lines() -> dict[int, set[int]]:
    lines: dict[int, set[int]] = {}
    for i, text in enumerate(BUGGY.read_text().splitlines(), start=1):
        m = re.search(r"# BUG (\d)", text)
        if m:
            lines.setdefault(int(m.group(1)), set()).add(i)
    return lines


def test_buggy_model_reports_the_documented_errors_at_the_users_lines(cfg):
    report = check(BUGGY, cfg)
    assert not report.ok
    bugs = _bug_lines()
    found: dict[int, set[int]] = {}
    for f in _failures(report):
        v = f.violation
        if v.documented_error is None or f.repeat_of:
            continue
        assert v.where and re.search(r"buggy_model\.py:\d+$", v.where), v.where
        assert v.fix and f.title
        assert (v.batch, v.seq_len, v.seed) != (None, None, None)
        found.setdefault(v.documented_error, set()).add(int(v.where.rsplit(":", 1)[1]))
    assert set(found) == {1, 2, 3, 4, 5}
    for n, at in found.items():
        assert at <= bugs[n], (n, at, bugs[n])
    assert found[1] == bugs[1]  # the flattened return and the flattened LSTM input


def test_buggy_model_findings_say_what_and_where(cfg):
    report = check(BUGGY, cfg)
    by_contract = {}
    for r in report.results:
        for f in r.findings:
            by_contract.setdefault(f.violation.contract, []).append(f)
    context = by_contract["CausalPerceiverIO.extract_context"][0].violation
    assert (context.tensor, context.kind, context.expected) == ("context", "rank", "[B, T, context_dim]")
    assert context.expected_shape == [8, 16, 256] and context.got == [128, 256]
    prior = by_contract["DPGMMPrior.forward"][0]
    assert prior.violation.kind == "exception" and "mat1 and mat2" in prior.violation.message
    assert prior.numbers and "hidden_dim + context_dim" in prior.numbers["768"]
    lstm = next(f for f in by_contract["LSTMLayer.forward"] if f.violation.tensor == "input")
    assert lstm.violation.got == [128, 298] and lstm.violation.documented_error == 1
    assert "then raised RuntimeError" in lstm.violation.message
    world = next(r for r in report.results if r.contract == "AimeWorldModel.forward_sequence")
    assert not world.ok and world.findings[0].repeat_of.startswith("LSTMLayer.forward")
    # imported classes (LSTMLayer from user_model) are held when build_model's model calls them, not alone
    assert not any(r.implementation == "LSTMLayer" for r in report.results)
    assert any(r.implementation == "build_model → lstm (LSTMLayer)" for r in report.results)


# --- exceptions, timeouts, constructors ---------------------------------------------------------------
PRIOR_MAT1 = """
import torch
from torch import nn

class DPGMMPrior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.net = nn.Linear(cfg.hidden_dim, 2 * cfg.max_components * cfg.latent_dim)

    def forward(self, h, n_samples=10):
        return self.net(h)
"""


def test_a_mat1_mat2_error_in_user_code_is_a_finding_with_error_4(tmp_path, small_cfg):
    path = _write(tmp_path, PRIOR_MAT1)
    report = check(path, small_cfg, examples=1)
    (finding,) = _failures(report)
    v = finding.violation
    assert v.kind == "exception" and "mat1 and mat2 shapes cannot be multiplied" in v.message
    assert v.documented_error == 4 and v.fix
    assert v.where == f"{path}:11" or v.where.endswith("model.py:11")
    assert finding.occurrences == 2


HANGING = """
import time

class DPGMMPrior:
    def __init__(self, cfg):
        self.cfg = cfg

    def forward(self, h, n_samples=10):
        until = time.monotonic() + 10  # long past the limit (a leaked worker thread ends by itself)
        while time.monotonic() < until:
            time.sleep(0.01)
"""


def test_a_hanging_component_hits_the_timeout(tmp_path, small_cfg):
    started = time.perf_counter()
    report = check(_write(tmp_path, HANGING), small_cfg, timeout=0.3)
    assert time.perf_counter() - started < 5
    (finding,) = _failures(report)
    assert finding.violation.kind == "timeout" and "did not return within 0.3 s" in finding.violation.message
    assert "rerun with --timeout 30" in finding.violation.message
    # after a timeout the examples with fewer frames (here: a smaller B) still run; each runs out too here,
    # so every later example no smaller than one that ran out is skipped
    ran, smallest = 0, None
    for B in dict.fromkeys(B for B, _ in report.examples):
        if smallest is None or B < smallest:
            ran, smallest = ran + 1, B
    assert ran > 1 and report.results[0].calls == ran


def test_the_timeout_also_works_off_the_main_thread(tmp_path, small_cfg):
    path = _write(tmp_path, HANGING)
    box = {}
    worker = threading.Thread(target=lambda: box.update(report=check(path, small_cfg, timeout=0.3)))
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert _failures(box["report"])[0].violation.kind == "timeout"


HANGING_INSIDE = """
import time
import torch
from torch import nn

class LSTMLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()

    def forward(self, input, hx):
        until = time.monotonic() + 10
        while time.monotonic() < until:
            time.sleep(0.01)

class World(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.lstm = LSTMLayer(cfg)

    def forward_sequence(self, observations, actions):
        return self.lstm(observations, actions)

def build_model(cfg):
    return World(cfg)
"""


def test_a_hang_inside_build_models_model_is_pinned_on_the_component(tmp_path, small_cfg):
    report = check(_write(tmp_path, HANGING_INSIDE), small_cfg, timeout=0.3, examples=0)
    world = next(r for r in report.results if r.contract == "AimeWorldModel.forward_sequence")
    assert world.findings[0].violation.kind == "timeout"
    assert world.findings[0].repeat_of.startswith("LSTMLayer.forward")
    inside = next(r for r in report.results if r.implementation == "build_model → lstm (LSTMLayer)")
    assert any(f.violation.kind == "timeout" for f in inside.findings)


def test_a_raising_constructor_is_a_finding(tmp_path, small_cfg):
    path = _write(tmp_path, "class VAEEncoder:\n    def __init__(self, cfg):\n        raise ValueError('no weights')\n")
    report = check(path, small_cfg)
    (row,) = report.results
    (finding,) = row.findings
    assert finding.violation.kind == "constructor" and "no weights" in finding.violation.message
    assert finding.violation.where.endswith(":3") and not report.ok
    assert row.contract == "VAEEncoder.forward"  # filed under the method, as every other row


def test_a_raising_constructor_is_a_finding_for_each_method(tmp_path, small_cfg):
    path = _write(tmp_path, "class VQPTTokenizer:\n    def __init__(self, cfg):\n        raise ValueError('x')\n")
    assert [r.contract for r in check(path, small_cfg).results] == ["VQPTTokenizer.encode", "VQPTTokenizer.decode"]


GAMMA_PRIOR = """
import torch
import torch.nn.functional as F
from torch import nn

class GammaPrior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.k = cfg.max_components
        self.d = cfg.latent_dim
        self.net = nn.Linear(cfg.hidden_dim + cfg.context_dim, 2 * self.k * self.d + 2 * (self.k - 1) + 2)

    def forward(self, h, n_samples=10):
        out = self.net(h)
        comp, sticks, conc = out.split([2 * self.k * self.d, 2 * (self.k - 1), 2], dim=-1)
        a, b = (F.softplus(sticks) + 1e-3).chunk(2, dim=-1)
        v = torch.distributions.Beta(a, b).rsample().clamp(1e-4, 1 - 1e-4)
        rest = torch.cumprod(1 - v, -1)
        pi = torch.cat([v * torch.cat([torch.ones_like(v[:, :1]), rest[:, :-1]], -1), rest[:, -1:]], -1)
        shape, rate = (F.softplus(conc) + 1).unbind(-1)
        alpha = torch.distributions.Gamma(shape, rate).sample((n_samples,)).T
        comp = comp.reshape(-1, self.k, 2, self.d)
        return {"pi": pi, "means": comp[:, :, 0], "log_vars": comp[:, :, 1], "kumar_a": a, "kumar_b": b,
                "alpha": alpha.clamp_min(1e-6)}

import aimespec
aimespec.implements("DPGMMPrior")(GammaPrior)
"""


def test_a_correct_prior_sampling_from_gamma_passes(tmp_path, small_cfg):
    report = check(_write(tmp_path, GAMMA_PRIOR), small_cfg)
    assert report.ok, [f.violation.message for f in _failures(report)]
    assert [(r.contract, r.implementation) for r in report.results] == [("DPGMMPrior.forward", "GammaPrior")]


def test_a_wrong_shape_is_pinned_on_the_return_line(tmp_path, small_cfg):
    text = ("import torch\n\nclass VAEEncoder:\n    def __init__(self, cfg):\n        self.d = cfg.latent_dim\n\n"
            "    def forward(self, x, context):\n        if x.shape[0] < 0:\n            return None\n"
            "        mu = torch.zeros(x.shape[0], self.d + 1)\n        return {'mu': mu, 'logvar': mu}\n")
    report = check(_write(tmp_path, text), small_cfg, examples=0)
    findings = {f.violation.tensor: f.violation for f in _failures(report)}
    assert set(findings) == {"mu", "logvar"}
    assert findings["mu"].where.endswith(":11") and findings["mu"].expected == "[B, D]"
    assert findings["mu"].expected_shape == [4, small_cfg.latent_dim] and findings["mu"].got == [4, 9]


# --- discovery -----------------------------------------------------------------------------------------
DISCOVERY = """
import aimespec
from reference_model import VAEDecoder            # imported: not checked on its own
from reference_model.vae import VAEEncoder as RefEncoder

class MyEncoder(RefEncoder):                      # subclasses a reference component
    pass

@aimespec.implements("Discriminator")
class Critic:
    def __init__(self, cfg):
        import torch
        self.torch = torch

    def forward(self, video):
        return self.torch.full((video.shape[0], 1), 0.5)

class Helper:                                     # no contract
    pass
"""


def test_discovery_by_name_decorator_and_reference_subclass(tmp_path, small_cfg):
    report = check(_write(tmp_path, DISCOVERY), small_cfg, examples=1)
    assert [(r.contract, r.implementation) for r in report.results] == [
        ("VAEEncoder.forward", "MyEncoder"), ("Discriminator.forward", "Critic")]
    critic = report.results[1]
    # the calls go through Critic.forward positionally: two (B, T) on meta, one small real (2, 3) for the values
    assert critic.ok and critic.calls == 3 and critic.examples[-1] == (2, 3)


@pytest.mark.parametrize("text, needle", [
    ("def f(:\n", "syntax error"),
    ("import not_a_module_anywhere\n", "importing"),
    ("x = 1\n", "defines no component"),
])
def test_bad_model_files_are_usage_errors(tmp_path, small_cfg, text, needle):
    with pytest.raises(UsageError, match=needle):
        check(_write(tmp_path, text), small_cfg)


def test_missing_files_and_directories_are_usage_errors(tmp_path, small_cfg):
    with pytest.raises(UsageError, match="does not exist"):
        check(tmp_path / "nope.py", small_cfg)
    with pytest.raises(UsageError, match="is a directory"):
        check(tmp_path, small_cfg)
    with pytest.raises(UsageError, match="--examples"):
        check(USER, small_cfg, examples=-1)


# --- examples and documented errors from shapes ---------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_example_pairs(seed, cfg, small_cfg):
    for c in (cfg, small_cfg):
        pairs = example_pairs(c, 3, seed)
        assert pairs[0] == (c.batch_size, c.sequence_length) and len(set(pairs)) == len(pairs) == 4
        assert any(b != t for b, t in pairs) and pairs == example_pairs(c, 3, seed)
        assert all(1 <= b <= 16 and 1 <= t <= 32 and b * t <= c.batch_size * c.sequence_length for b, t in pairs)
    one = AimeConfig.small(batch_size=2, sequence_length=2)
    assert any(b != t for b, t in example_pairs(one, 1, seed))


def _v(tensor: str, expected: str, got: list[int], exp_shape=None, kind="shape", **bindings) -> Violation:
    dims = tuple(d.strip() for d in expected.strip("[]").split(","))
    return Violation(contract="X.forward", tensor=tensor, kind=kind, message="", expected=expected,
                     expected_shape=exp_shape or [], got=got, dims=dims, bindings=bindings)


@pytest.mark.parametrize("cfg_changes", [{}, {"hidden_dim": 48, "num_latent_channels_perceiver": 20,
                                              "perceiver_heads": 2, "attention_resolution": 9}])
def test_shape_documented_errors_are_read_from_symbols(cfg_changes):
    cfg = AimeConfig().replace(**cfg_changes) if cfg_changes else AimeConfig()
    B, T, hid, ctx = 3, 5, cfg.hidden_dim, cfg.context_dim
    att, dim = cfg.attention_resolution, cfg.attention_dim
    assert shape_documented_error(_v("input", "[B, D+context_dim+A]", [B * T, 298], [B, 298]), cfg, B, T) == 1
    assert shape_documented_error(_v("context", "[B, T, context_dim]", [B * T, ctx], kind="rank"), cfg, B, T) == 1
    assert shape_documented_error(_v("z", "[B, D]", [B, T, cfg.latent_dim], [B, cfg.latent_dim], kind="rank"),
                                  cfg, B, T) == 1
    assert shape_documented_error(_v("am", "[B, H_att, W_att]", [B, 16, 16]), cfg, B, T) == 2
    assert shape_documented_error(_v("r", "[B, C, H, W]", [B, 3, att, att]), cfg, B, T) == 2
    t_enc = cfg.encoded_length(T + 11)
    assert shape_documented_error(_v("tokens", "[B, T, H_t, W_t]", [B, t_enc, 8, 8]), cfg, B, T + 11) == 3
    assert shape_documented_error(_v("h", "[B, hidden_dim+context_dim]", [B, hid]), cfg, B, T) == 4
    assert shape_documented_error(_v("hidden_state", "[B, hidden_dim]", [B, hid + ctx]), cfg, B, T) == 4
    assert shape_documented_error(_v("x", "[B, N, attention_dim]", [B, dim, att, att], kind="rank"), cfg, B, T) == 5
    assert shape_documented_error(_v("x", "[B, N, attention_dim]", [B, att * att, 7]), cfg, B, T) is None
    assert shape_documented_error(_v("pi", "[B, K]", [B, 3], kind="value"), cfg, B, T) is None


PLAIN_PART = """
import torch
from torch import nn

class RGB:                                        # a plain object, held as an attribute of the model
    def __init__(self, cfg):
        pass

    def balance(self, grads):
        return grads                              # [num_tasks, P], not [P]

class World(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.rgb = RGB(cfg)

    def forward_sequence(self, observations, actions):
        self.rgb.balance(torch.ones(4, 10))
        b, t = observations.shape[:2]
        return {"latents": torch.zeros(b, t, 3)}

def build_model(cfg):
    return World(cfg)
"""


def test_plain_components_held_by_the_model_are_recorded_too(tmp_path, small_cfg):
    report = check(_write(tmp_path, PLAIN_PART), small_cfg, examples=0)
    inside = next(r for r in report.results if r.implementation == "build_model → rgb (RGB)")
    (finding,) = inside.findings
    assert finding.repeat_of == "RGB.balance (RGB)" and finding.violation.tensor == "balanced_grad"
    world = next(r for r in report.results if r.contract == "AimeWorldModel.forward_sequence")
    problems = {(f.violation.tensor, f.violation.kind) for f in world.findings}
    assert problems == {("latents", "shape"), ("reconstructions", "missing"), ("attention_maps", "missing")}


def test_a_wrong_n_samples_width_is_found_by_check(tmp_path, small_cfg):
    """Positional calls leave n_samples at its default, which still binds the symbol."""
    path = _write(tmp_path, """
import torch
from torch import nn


class DPGMMPrior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.K, self.D = cfg.max_components, cfg.latent_dim

    def forward(self, h, n_samples=10):
        B = h.shape[0]
        return {"pi": torch.softmax(torch.zeros(B, self.K), -1), "means": torch.zeros(B, self.K, self.D),
                "log_vars": torch.zeros(B, self.K, self.D), "kumar_a": torch.ones(B, self.K - 1),
                "kumar_b": torch.ones(B, self.K - 1), "alpha": torch.ones(B, 5)}
""")
    report = check(path, small_cfg, examples=0)
    messages = [v["message"] for r in report.to_json()["results"] for v in r["violations"]]
    assert messages == ["DPGMMPrior.forward: alpha expected [B, n_samples] = [4, 10], got [4, 5] (B=4 n_samples=10)"]


def test_the_python_api_returns_the_report_the_cli_prints(small_cfg, tmp_path):
    """SPEC: `aimespec.check(path, cfg)` is the same report `aimespec check --json` prints."""
    import json as json_module

    from typer.testing import CliRunner

    from aimespec.cli import app

    config = tmp_path / "small.json"
    config.write_text(json_module.dumps(small_cfg.to_dict()))
    report = check(USER, small_cfg, examples=1)
    printed = json_module.loads(CliRunner().invoke(app, ["check", str(USER), "--json", "--examples", "1",
                                                          "--config", str(config)]).stdout)
    assert report["ok"] is True and set(report) == set(printed)
    drop = {"seconds"}
    assert {k: v for k, v in report.items() if k not in drop} == {k: v for k, v in printed.items() if k not in drop}
