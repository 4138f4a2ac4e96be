"""The behavioural probes (SPEC "Behavioural probes"): each bug kind caught with its kind, its twin passing.

The bug files in `examples/probes/` are written the way users write them: every shape right,
`aimespec check` without probes passes each of them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

import aimespec
from aimespec import AimeConfig, Causal, check
from aimespec.cli import app
from aimespec.runtime.probe_compare import fold_pattern
from aimespec.runtime.rng import SeededDraws

ROOT = Path(__file__).resolve().parent.parent
PROBES = ROOT / "examples" / "probes"
CFG = AimeConfig()


def _check(name: str, cfg: AimeConfig = CFG, **options):
    return check(PROBES / name, cfg, examples=0, **options)


def _line(name: str, text: str) -> str:
    """`examples/probes/NAME:LINE` of the first line holding `text`."""
    lines = (PROBES / name).read_text().splitlines()
    return f"examples/probes/{name}:{next(i for i, line in enumerate(lines, 1) if text in line)}"


def _only(report, kind: str):
    found = [f.violation for f in report.findings if f.violation.kind == kind]
    assert found, f"no {kind} finding in {[f.violation.kind for f in report.findings]}"
    return found[0]


@pytest.mark.parametrize(("bug", "twin", "kind", "contract"), [
    ("fold.py", "fold_fixed.py", "batch", "CausalPerceiverIO.extract_context"),
    ("batch_first.py", "batch_first_fixed.py", "batch", "SlotAttention.forward"),
    ("unmasked.py", "masked.py", "causal", "CausalPerceiverIO.extract_context"),
    ("literal_width.py", "literal_width_fixed.py", "config", "LSTMLayer.forward"),
    ("stateful.py", "stateful_fixed.py", "repeat", "DPGMMPrior.forward"),
])
def test_each_bug_is_caught_with_its_kind_and_its_twin_passes(bug, twin, kind, contract):
    without = _check(bug, probes=False)
    assert without.ok, "the bug must be invisible to shapes, dtypes and value invariants"
    report = _check(bug)
    assert not report.ok
    v = _only(report, kind)
    assert v.contract == contract
    row = next(r for r in report.results if r.contract == contract)
    assert row.probes[kind] == "failed"
    fixed = _check(twin)
    assert fixed.ok, [f.violation.message for f in fixed.findings]
    for row in fixed.results:
        assert set(row.probes) == {"batch", "causal", "config", "repeat"}
        assert all(s == "ok" or s.startswith("skipped: ") for s in row.probes.values())
        assert row.probes[kind] == "ok"


def test_fold_is_documented_error_1_with_the_examples_it_mixed():
    v = _only(_check("fold.py"), "batch")
    assert v.documented_error == 1
    assert v.probe["changed_example"] == 1 and v.probe["affected_examples"] == [0]
    assert v.probe["max_change"] > 0
    assert "folded back in the wrong order" in v.probe["likely_cause"]
    assert v.where and v.where.endswith(_line("fold.py", "return self.out("))  # the method's return
    causal = _only(_check("fold.py"), "causal")  # the fold hands later frames to earlier steps too
    assert causal.documented_error == 1 and "wrong-order fold" in causal.probe["likely_cause"]


def test_batch_first_attention_names_the_module_and_where_it_is_built():
    v = _only(_check("batch_first.py"), "batch")
    assert v.documented_error is None
    assert v.probe["likely_cause"].startswith("context is nn.MultiheadAttention(batch_first=False)")
    assert v.fix == "construct context with batch_first=True (or transpose to [L, B, E] before it and back after)"
    assert v.where.endswith(_line("batch_first.py", "self.context = nn.MultiheadAttention"))


def test_unmasked_temporal_attention_reports_the_first_leaked_step():
    v = _only(_check("unmasked.py"), "causal")
    assert v.probe["changed_from_step"] == 1
    assert v.probe["affected_steps"] == [0]
    assert v.tensor == "context"
    assert "without a causal mask" in v.probe["likely_cause"]


def test_literal_width_names_the_field_it_should_have_read():
    v = _only(_check("literal_width.py"), "config")
    assert v.message == (
        "LSTMLayer.forward: at the varied config raised RuntimeError: input has inconsistent input_size: got 79 "
        "expected 298; 298 = D + context_dim + A = 36 + 256 + 6 at the first config, but at the varied config "
        "D + context_dim + A is 24 + 48 + 7 = 79: the code wrote 298 where it should read latent_dim + "
        "num_latent_channels_perceiver + action_dim")
    assert v.fix == "read the width from the config: cfg.latent_dim + cfg.num_latent_channels_perceiver + " \
                    "cfg.action_dim instead of 298"
    assert v.where.endswith(_line("literal_width.py", "nn.LSTMCell(36 + 256 + 6"))
    assert v.probe["config"]["action_dim"] == 7 and v.probe["literal"]["number"] == 298
    varied = v.probe["config"]
    for field in ("latent_dim", "hidden_dim", "num_latent_channels_perceiver", "max_components",
                  "num_semantic_slots", "attention_dim", "action_dim"):
        assert varied[field] != getattr(CFG, field)
    assert varied.get("input_dim", CFG.input_dim) == CFG.input_dim  # the image size is kept


WHOLE_MODEL = """
import sys
sys.path.insert(0, {examples!r})
from user_model import TinyWorld
from probes.literal_width import LSTMLayer as LiteralLSTM


class World(TinyWorld):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.lstm = LiteralLSTM(cfg)


def build_model(cfg):
    return World(cfg)
"""


def test_a_whole_model_file_with_an_imported_literal_width_fails_the_config_probe(tmp_path):
    path = tmp_path / "world.py"
    path.write_text(WHOLE_MODEL.format(examples=str(ROOT / "examples")))
    report = check(path, CFG, examples=0)
    world = next(r for r in report.results if r.implementation == "build_model")
    assert world.probes["config"] == "failed" and world.probes["batch"] == "ok"
    lstm = next(r for r in report.results if r.implementation == "build_model → lstm (LSTMLayer)")
    assert lstm.probes["config"] == "failed"
    assert lstm.probes["batch"] == "skipped: called inside build_model, whose own probes cover the whole call"
    v = _only(report, "config")
    assert "298 = D + context_dim + A = 36 + 256 + 6 at the first config" in v.message


@pytest.mark.parametrize("name", ["batchnorm.py", "masked.py"])
def test_no_false_alarm_on_batchnorm_dropout_noise_and_causal_masks(name):
    report = _check(name)
    assert report.ok, [f.violation.message for f in report.findings]
    assert report.results[0].probes["batch"] == "ok" and report.results[0].probes["repeat"] == "ok"


def test_no_vary_config_skips_the_config_probe():
    report = _check("literal_width.py", vary_config=False)
    assert report.ok
    assert report.results[0].probes["config"] == "skipped: --no-vary-config"
    assert report.probe_config is None


def test_no_probes_turns_them_all_off():
    result = CliRunner().invoke(app, ["check", str(PROBES / "fold.py"), "--json", "--examples", "0", "--no-probes"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["probes"] == dict.fromkeys(
        ("batch", "causal", "config", "repeat"), "skipped: --no-probes")


def test_reference_model_passes_every_probe(small_cfg):
    report = check(None, small_cfg, examples=0)
    assert report.ok, [f.violation.message for f in report.findings]
    by = {(r.contract, r.implementation): r.probes for r in report.results}
    world = by[("AimeWorldModel.forward_sequence", "build_model")]
    assert world == {"batch": "ok", "causal": "ok", "config": "ok", "repeat": "ok"}
    assert by[("CausalPerceiverIO.extract_context", "CausalPerceiverIO")]["causal"] == "ok"
    assert by[("RGB.balance", "RGB")]["batch"] == "skipped: no input has a batch axis B"
    assert by[("RGB.balance", "RGB")]["repeat"] == "ok"  # Stateful: compared from a snapshot
    for probes in by.values():
        assert all(s in ("ok",) or s.startswith("skipped: ") for s in probes.values()), probes


def test_user_model_passes_every_probe(small_cfg):
    report = check(ROOT / "examples" / "user_model.py", small_cfg, examples=0)
    assert report.ok, [f.violation.message for f in report.findings]
    world = next(r for r in report.results if r.implementation == "build_model")
    assert world.probes == {"batch": "ok", "causal": "ok", "config": "ok", "repeat": "ok"}


def test_json_carries_probes_per_result_and_probe_per_finding():
    result = CliRunner().invoke(app, ["check", str(PROBES / "fold.py"), "--json", "--examples", "0"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    row = doc["results"][0]
    assert row["probes"] == {"batch": "failed", "causal": "failed", "config": "ok", "repeat": "ok"}
    batch = next(v for v in row["violations"] if v["kind"] == "batch")
    assert batch["documented_error"] == 1
    assert {"changed_example", "affected_examples", "max_change"} <= set(batch["probe"])
    causal = next(v for v in row["violations"] if v["kind"] == "causal")
    assert {"changed_from_step", "affected_steps", "max_change"} <= set(causal["probe"])
    assert doc["probe_config"]["latent_dim"] == 24


def test_terminal_view_of_a_probe_finding():
    result = CliRunner().invoke(app, ["check", str(PROBES / "batch_first.py"), "--examples", "0"],
                                terminal_width=200)
    assert result.exit_code == 1
    out = result.output
    for label in ("probe", "changed", "problem", "likely cause", "fix", "where", "reproduce"):
        assert f"│ {label}" in out, label
    assert "example 1 of x (fresh values from the contract)" in out
    assert "probes: 3 ok, 1 failed, 0 skipped" not in out  # causal is skipped for SlotAttention
    assert "probes: 2 ok, 1 failed, 1 skipped" in out


def test_check_subprocess_exits_1_on_a_probe_finding():
    done = subprocess.run([sys.executable, "-m", "aimespec", "check", str(PROBES / "unmasked.py"), "--json",
                           "--examples", "0", "--no-vary-config"], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=300)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert [v["kind"] for r in doc["results"] for v in r["violations"]] == ["causal"]


# --- the Python API ---------------------------------------------------------------------------------
class _Fold(nn.Module):
    """A perceiver that folds [B*T, ctx] back as (T, B): written here, not in a fixture file."""

    def __init__(self, cfg, wrong=True):
        super().__init__()
        self.wrong = wrong
        self.proj = nn.Linear(cfg.image_channels, cfg.context_dim)

    def extract_context(self, videos):
        b, t = videos.shape[:2]
        feats = self.proj(videos.reshape(b * t, *videos.shape[2:]).mean(dim=(2, 3)))
        return feats.view(t, b, -1).transpose(0, 1) if self.wrong else feats.view(b, t, -1)


@given(B=st.integers(2, 4), T=st.integers(2, 4))
def test_probe_api_catches_a_fold_at_any_small_batch_and_length(B, T):
    cfg = AimeConfig.small()
    report = aimespec.probe(_Fold(cfg), "CausalPerceiverIO.extract_context", cfg, B, T)
    assert report.results["batch"] == "failed"
    assert report.violations[0].kind == "batch"
    assert report.results["config"] == "skipped: give the class to rebuild it at the varied config"
    fixed = aimespec.probe(_Fold(cfg, wrong=False), "CausalPerceiverIO.extract_context", cfg, B, T)
    assert fixed.ok and fixed.results["batch"] == "ok" and fixed.results["causal"] == "ok"


def test_probe_api_rebuilds_a_class_at_the_varied_config(small_cfg):
    from examples.probes.literal_width import LSTMLayer

    report = aimespec.probe(LSTMLayer, "LSTMLayer.forward", CFG)
    assert report.results["config"] == "failed"
    assert report.violations[-1].kind == "config"


def test_causal_is_public_and_described():
    decl = Causal(axis="T", outputs=("context",))
    assert decl.describe() == "causal over T: context at step t depends only on steps <= t"
    from aimespec.core.contract import resolve

    assert any(isinstance(i, Causal) for i in resolve("AimeWorldModel.forward_sequence").invariants)
    assert any(isinstance(i, Causal) for i in resolve("CausalPerceiverIO.extract_context").invariants)


# --- the mechanics ----------------------------------------------------------------------------------
def test_fold_pattern_tells_a_fold_from_whole_example_mixing():
    B, T, j = 2, 3, 1
    rows = torch.arange(B * T).reshape(B, T)  # b-major frame index b*T + t
    folded = rows.reshape(-1).view(T, B).transpose(0, 1)  # out[b, t] = frame t*B + b
    mask = (folded // T) == j
    assert fold_pattern([mask], j)
    everything = torch.ones(B, T, dtype=torch.bool)
    assert not fold_pattern([everything], j)


def test_seeded_draws_keep_examples_apart_in_value_dependent_samplers():
    a = torch.full((3, 4), 0.7)
    b = a.clone()
    b[1] = 0.01  # example 1's concentration changes; a Gamma sampler rejects more or fewer times

    def draw(x):
        g = torch.distributions.Gamma(x, torch.ones_like(x)).rsample((2,))
        return g, torch.randn(3)

    with SeededDraws(1):
        first = draw(a)
    with SeededDraws(1):
        second = draw(b)
    per_example = (first[0] - second[0]).abs().amax(dim=(0, 2))
    assert per_example[0] == 0 and per_example[2] == 0 and per_example[1] > 0
    assert torch.equal(first[1], second[1])  # the next draw is not shifted either
    assert torch.randn is torch._C._VariableFunctions.randn  # restored after
