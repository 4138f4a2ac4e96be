"""Every finding says why and what to do: value invariants (each its own text, at the line that made the
tensor), aimespec's own messages under `--explain`, and tracebacks read whole (hard-coded sizes named)."""

import json
import textwrap
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimespec import AimeConfig
from aimespec.cli import app
from aimespec.commands.check import check
from aimespec.explain import values
from aimespec.explain.engine import explain
from aimespec.explain.values import advise

runner = CliRunner()

VALUE_BUGS = '''
import torch
import torch.nn.functional as F
from torch import nn


class DPGMMPrior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.k, self.d = cfg.max_components, cfg.latent_dim
        self.net = nn.Linear(cfg.hidden_dim + cfg.context_dim, self.k * (2 * self.d + 3))

    def forward(self, h, n_samples=10):
        B = h.shape[0]
        out = self.net(h)
        logits = out[:, : self.k]
        pi = torch.sigmoid(logits)  # LINE pi: not normalised over K
        means = out[:, self.k: self.k + self.k * self.d].reshape(B, self.k, self.d)
        log_vars = torch.zeros_like(means)
        a = F.softplus(out[:, -2 * (self.k - 1):-(self.k - 1)]) + 1e-3
        b = out[:, -(self.k - 1):]  # LINE kumar_b: raw, can be negative
        alpha = torch.ones(B, n_samples)
        return {"pi": pi, "means": means, "log_vars": log_vars, "kumar_a": a, "kumar_b": b,
                "alpha": alpha}


class AttentionSchema(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.res = cfg.attention_resolution

    def forward(self, observation, hidden_state, context, fused_feat=None):
        B = observation.shape[0]
        logits = F.adaptive_avg_pool2d(observation.mean(1, keepdim=True), self.res).squeeze(1)
        probs = logits.softmax(dim=-1)  # LINE attention_probs_2d: per row only
        coords = torch.full((B, 2), 3.0)  # LINE regularized_coords: off the image
        return probs, coords
'''


def _line(text: str, tag: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if f"LINE {tag}" in line)


def test_each_value_finding_has_why_fix_and_the_line_that_made_the_tensor(tmp_path, small_cfg):
    path = tmp_path / "value_bugs.py"
    path.write_text(VALUE_BUGS)
    report = check(path, small_cfg, examples=0)
    found = {f.violation.tensor: f for r in report.results for f in r.findings}
    assert set(found) == {"pi", "kumar_b", "attention_probs_2d", "regularized_coords"}
    texts = {"pi": values.MIXTURE_WHY, "kumar_b": values.POSITIVE_WHY, "attention_probs_2d": values.ATTENTION_WHY,
             "regularized_coords": values.COORDS_WHY}
    for tensor, f in found.items():
        v = f.violation
        assert v.kind == "value"
        assert f.explanation == texts[tensor].format(t=tensor), tensor
        assert v.fix and v.fix != f.explanation
        assert v.where == f"{path}:{_line(VALUE_BUGS, tensor)}" or v.where.endswith(
            f"value_bugs.py:{_line(VALUE_BUGS, tensor)}"), (tensor, v.where)
    assert len({f.violation.fix for f in found.values()}) == 4  # each invariant its own fix


def test_the_terminal_view_shows_why_and_fix(tmp_path, small_cfg):
    path = tmp_path / "value_bugs.py"
    path.write_text(VALUE_BUGS)
    out = runner.invoke(app, ["check", str(path), "--examples", "0", "--set", "input_dim=32",
                              "--set", "attention_resolution=7"]).stdout
    assert "why" in out and "stick-breaking" in out and "linspace(-1, 1)" in out


@pytest.mark.parametrize(("tensor", "problem", "rule"), [
    ("pi", "must sum to 1 over K, but the largest |sum - 1| is 0.69", "mixture-simplex"),
    ("attention_map", "must sum to 1 over H_att x W_att, but the largest |sum - 1| is 0.2", "attention-normalisation"),
    ("attn", "must sum to 1 over K_slots, but the largest |sum - 1| is 3", "slot-competition"),
    ("tokens", "must hold indices in [0, num_codes-1] = [0, 31], but spans [0, 40]", "token-range"),
    ("kumar_a", "must lie in (0, inf], but spans [-1, 2]", "positivity"),
    ("regularized_coords", "must lie in [-1, 1], but spans [-3, 3]", "coordinate-range"),
    ("sticks", "must lie in (0, 1), but spans [0, 1]", "stick-range"),
    ("observations", "must lie in [0, 1], but spans [0, 255]", "unit-range"),
    ("vq_loss", "must be finite, but is [nan]", "finite-loss"),
    ("recon_loss", "must be >= 0, but is -0.3", "nonnegative-loss"),
    ("means", "holds NaN or Inf", "finite"),
    ("weights", "must sum to 1 over 2, but the largest |sum - 1| is 1", "simplex"),
])
def test_every_invariant_has_its_own_text(tensor, problem, rule):
    advice = advise(tensor, problem)
    assert advice is not None and advice.rule == rule
    assert tensor in advice.why or rule in ("finite-loss",) or tensor in advice.fix


def test_explain_understands_aimespecs_own_value_message(cfg):
    result = explain("DPGMMPrior.forward: pi must sum to 1 over K, but the largest |sum - 1| is 0.69", cfg)
    assert "No documented error fits: this is aimespec's value check" in result.explanation
    assert "stick-breaking" in result.explanation
    (advice,) = result.advice
    assert advice["rule"] == "mixture-simplex" and advice["tensor"] == "pi"


# --- tracebacks read whole ------------------------------------------------------------------------------
HARD_CODED = """
import torch

def component_params(params):
    return params.view(8, 15, 2, 36)  # the document's snippet, B written as a number
"""


def _traceback(tmp_path: Path, code: str, call: str, **scope) -> str:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(code))
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # a real traceback through a real file
    try:
        eval(call, {**namespace, **scope})
    except RuntimeError:
        return traceback.format_exc()
    raise AssertionError("expected an error")


def test_a_hard_coded_batch_size_is_named_and_not_read_as_symbols(tmp_path):
    import torch

    cfg = AimeConfig()
    text = _traceback(tmp_path, HARD_CODED, "component_params(torch.zeros(2, 1080))", torch=torch)
    result = explain(text, cfg, batch=2)
    assert result.where.endswith("model.py:5") and result.code == "return params.view(8, 15, 2, 36)"
    assert ("8 is written as a number in `return params.view(8, 15, 2, 36)`" in result.explanation
            and "it equals batch_size at the default config (here B = 2); read B from the tensor" in result.explanation)
    view = next(line for line in result.explanation.splitlines() if "view to" in line)
    assert "[8 (hard-coded batch_size), K (hard-coded 15), 2, D (hard-coded 36)]" in view
    assert "H_t" not in view and ", B," not in view
    assert {lit.value for lit in result.literals} == {8, 15, 36}
    assert result.numbers["2160"][0] == "2*B*K*D = 2*2*15*36"
    doc = result.to_json()
    assert doc["where"] == result.where and doc["literals"][0]["field"] == "batch_size"
    json.dumps(doc)


def test_the_users_frame_is_the_where_not_torchs(tmp_path):
    import torch

    code = "import torch\nfrom torch import nn\n\ndef prior(h):\n    return nn.Linear(768, 1080)(h)\n"
    text = _traceback(tmp_path, code, "prior(torch.zeros(8, 512))", torch=torch)
    result = explain(text, AimeConfig())
    assert result.where.endswith("model.py:5") and "nn.Linear(768, 1080)" in result.code
    assert result.matches[0].error == 4
    assert "768 is written as a number" in result.explanation  # hidden_dim + context_dim, hard-coded


def test_no_literal_is_named_when_the_code_reads_the_sizes(tmp_path):
    import torch

    code = "def tokens(idx, B, T, h):\n    return idx.view(B, T, h, h)\n"
    text = _traceback(tmp_path, code, "tokens(torch.zeros(1024), 8, 16, 8)", torch=torch)
    result = explain(text, AimeConfig())
    assert result.literals == [] and result.matches[0].error == 3


# --- aimespec's probe findings under --explain ---------------------------------------------------------
MIXES_THE_BATCH = '''
import torch
from torch import nn


class VAEEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.d = cfg.latent_dim
        self.net = nn.Linear(cfg.image_channels + cfg.context_dim, 2 * cfg.latent_dim)

    def forward(self, x, context):
        pooled = torch.cat([x.mean(dim=(2, 3)), context], dim=-1)
        pooled = pooled - pooled.mean(dim=0, keepdim=True)  # a statistic over the batch
        mu, logvar = self.net(pooled).chunk(2, dim=-1)
        return {"mu": mu, "logvar": logvar}
'''


def test_explain_understands_a_real_probe_finding(tmp_path, small_cfg):
    path = tmp_path / "mixer.py"
    path.write_text(MIXES_THE_BATCH)
    report = check(path, small_cfg, examples=0, vary_config=False)
    (finding,) = [f for r in report.results for f in r.findings]
    assert finding.violation.kind == "batch"
    result = explain(finding.violation.message, small_cfg)
    (advice,) = result.advice
    assert advice["rule"] == "batch-probe" and advice["tensor"] == "VAEEncoder.forward"
    assert "statistic over dim 0" in result.explanation and "behavioural probe" in result.explanation
    assert not result.matches


@pytest.mark.parametrize(("text", "rule"), [
    ("X.f: changing video at steps >= 2 changed context at steps 0, 1 (by up to 0.5; first leaked step 0): the "
     "output at step t may read steps <= t only", "causal-probe"),
    ("X.f: two calls with the same inputs and seed gave different outputs (out by up to 1, its scale 1): the same "
     "inputs and seed must give the same outputs", "repeat-probe"),
    ("X.f: at the varied config h expected [B, hidden_dim+context_dim] = [2, 96], got [2, 768]", "config-probe"),
])
def test_every_probe_message_has_its_advice(text, rule, cfg):
    assert [a["rule"] for a in explain(text, cfg).advice] == [rule]


HARD_CODED_PRIOR = '''
from torch import nn


class DPGMMPrior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.net = nn.Linear(cfg.hidden_dim + cfg.context_dim, 2 * cfg.max_components * cfg.latent_dim)

    def forward(self, h, n_samples=10):
        params = self.net(h)
        params = params.view(8, 15, 2, 36)  # the document's snippet
        return params
'''


def test_check_names_a_size_hard_coded_in_the_failing_line(tmp_path):
    path = tmp_path / "prior.py"
    path.write_text(HARD_CODED_PRIOR)
    cfg = AimeConfig(batch_size=2)
    report = check(path, cfg, examples=0, probes=False)
    crash = next(f for r in report.results for f in r.findings if f.violation.kind == "exception")
    assert crash.violation.where.endswith("prior.py:12")
    assert crash.explanation.startswith("sizes written as numbers in `params = params.view(8, 15, 2, 36)`")
    assert "8 = batch_size at the default config (not this run's): read B from the tensor" in crash.explanation
    assert "15 = K = max_components, 36 = D = latent_dim: read them from the config" in crash.explanation
    assert crash.numbers["8"] == "hard-coded batch_size (the default config's)"
    assert crash.numbers["2"] == "a constant written in the code"  # not B, although B = 2 here
    assert crash.numbers["2160"] == "2*B*K*D = 2*2*15*36"


def test_a_token_view_reads_time_on_its_time_axis_never_the_batch():
    cfg = AimeConfig(batch_size=4, sequence_length=12, downsample_perceiver=4, use_3d_conv=False,
                     temporal_downsample=4)  # a 16x16 token grid, T_enc = 3
    result = explain("shape '[4, 12, 16, 16]' is invalid for input of size 3072", cfg)
    assert result.matches[0].error == 3
    assert "T = 12 frames on axis 1" in result.matches[0].reason and "axis 0" not in result.matches[0].reason
    assert result.numbers["16"][0] == "H_t" and result.numbers["3072"][0] == "B*T_enc*H_t*W_t = 4*3*16*16"
    assert not any("+" in r for rs in result.numbers.values() for r in rs)
