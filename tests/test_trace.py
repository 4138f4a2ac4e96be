"""`aimespec.trace`: every component call of one forward pass, in order, per timestep, with shapes."""

import os
from pathlib import Path

import pytest

from aimespec import AimeConfig, UsageError
from aimespec.commands.trace import trace

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "trace_default.txt"
USER = ROOT / "examples" / "user_model.py"
BUGGY = ROOT / "examples" / "buggy_model.py"
SEED_TENSORS = {
    "Observations": [8, 16, 3, 64, 64], "Actions": [8, 16, 6], "VQ Tokens": [8, 16, 8, 8],
    "Context": [8, 16, 256], "Latent z": [8, 16, 36], "LSTM hidden": [8, 16, 512], "DPGMM weights": [8, 16, 15],
    "Attention map": [8, 16, 21, 21], "Slot features": [8, 16, 4, 64], "Reconstructions": [8, 16, 3, 64, 64],
}
PER_STEP = ("VAEEncoder.forward", "DPGMMPrior.forward", "LSTMLayer.forward", "AttentionSchema.forward",
            "SlotAttention.forward", "VAEDecoder.forward")


@pytest.fixture(scope="module")
def default_trace():
    return trace(None, AimeConfig())


@pytest.mark.slow
def test_default_trace_has_every_timestep_and_the_seeds_key_shapes(default_trace):
    doc = default_trace.to_json()
    assert doc["version"] and doc["config"]["hidden_dim"] == 512 and (doc["batch"], doc["seq_len"]) == (8, 16)
    assert doc["tensors"] == SEED_TENSORS
    for contract in PER_STEP:
        steps = [c["step"] for c in doc["calls"] if f"{c['component']}.{c['method']}" == contract]
        assert steps == list(range(16)), contract
    once = [c for c in doc["calls"] if c["component"] == "CausalPerceiverIO"]
    assert len(once) == 1 and once[0]["step"] is None
    assert once[0]["inputs"] == {"videos": [8, 16, 3, 64, 64]} and once[0]["outputs"] == {"context": [8, 16, 256]}
    prior = next(c for c in doc["calls"] if c["component"] == "DPGMMPrior")
    assert prior["inputs"] == {"h": [8, 768]} and prior["outputs"]["pi"] == [8, 15]
    assert prior["outputs"]["means"] == [8, 15, 36] and prior["outputs"]["kumar_a"] == [8, 14]
    lstm = next(c for c in doc["calls"] if c["component"] == "LSTMLayer")
    assert lstm["inputs"]["input"] == [8, 298] and lstm["outputs"]["output"] == [8, 512]
    slot = next(c for c in doc["calls"] if c["component"] == "SlotAttention")
    assert slot["inputs"]["x"] == [8, 441, 64] and slot["outputs"]["attn"] == [8, 4, 441]
    for c in doc["calls"]:
        assert set(c) >= {"component", "method", "step", "inputs", "outputs"}
    # the seed's order inside one step: encoder, prior, LSTM, attention schema, decoder
    step3 = [c["component"] for c in doc["calls"] if c["step"] == 3]
    assert step3 == ["VAEEncoder", "DPGMMPrior", "LSTMLayer", "AttentionSchema", "SlotAttention", "VAEDecoder"]


@pytest.mark.slow
def test_default_trace_table_matches_the_golden_file(default_trace):
    text = default_trace.render_text(width=100)
    if os.environ.get("AIMESPEC_REGEN_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    assert "… steps 1-14 (14 calls, same shapes; --all-steps shows them)" in text
    assert "in  h [B, hidden_dim+context_dim] = [8, 768]" in text


def test_all_steps_shows_every_step(small_cfg):
    report = trace(USER, small_cfg, batch=3, seq_len=5)
    short, full = report.render_text(width=120), report.render_text(width=120, all_steps=True)
    assert "LSTMLayer.forward  step 2" not in short and "LSTMLayer.forward  step 2" in full
    assert "LSTMLayer.forward  step 4" in short and "steps 1-3 (3 calls" in short


def test_user_model_trace_follows_batch_and_seq_len(small_cfg):
    report = trace(USER, small_cfg, batch=3, seq_len=5)
    assert report.ok and (report.batch, report.seq_len) == (3, 5)
    assert report.tensors["Latent z"] == [3, 5, small_cfg.latent_dim]
    assert report.tensors["Slot features"] == [3, 5, small_cfg.num_semantic_slots, small_cfg.attention_dim]
    by_contract: dict[str, list] = {}
    for c in report.calls:
        by_contract.setdefault(c.contract, []).append(c.step)
    assert by_contract["VQPTTokenizer.encode"] == [None]
    assert by_contract["DPGMMPrior.forward"] == [0, 1, 2, 3, 4]
    assert by_contract["SlotAttention.forward"] == [0, 1, 2, 3, 4]  # called inside AttentionSchema
    decoder = next(c for c in report.calls if c.component == "VAEDecoder")
    assert decoder.implementation == "FrameDecoder" and decoder.owner == "decoder"
    assert decoder.symbolic["attention_map"] == "[B, H_att, W_att]"
    assert [c.index for c in report.calls] == list(range(len(report.calls)))


def test_reference_trace_at_a_small_config(small_cfg):
    report = trace(None, small_cfg, batch=2, seq_len=3)
    assert report.ok and report.tensors["Attention map"] == [2, 3, 7, 7]
    assert [c.step for c in report.calls if c.component == "LSTMLayer"] == [0, 1, 2]
    assert {c.pillar for c in report.calls} >= {"perceiver", "vae", "prior", "dynamics", "attention"}


def test_a_failing_forward_is_reported_with_the_calls_up_to_it(small_cfg):
    report = trace(BUGGY, small_cfg)
    assert not report.ok and "Input batch size" in report.error
    assert report.where.endswith(f"buggy_model.py:{_line_of(BUGGY, 'BUG 1: B*T rows')}")
    assert [c.component for c in report.calls] == ["VQPTTokenizer", "CausalPerceiverIO", "VAEEncoder", "LSTMLayer"]
    assert report.calls[-1].inputs["input"] == [small_cfg.batch_size * small_cfg.sequence_length,
                                                small_cfg.lstm_input_dim]
    assert report.to_json()["error"] == report.error


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if needle in text)


def test_trace_usage_errors(tmp_path, small_cfg):
    only_parts = tmp_path / "parts.py"
    only_parts.write_text("class LSTMLayer:\n    def __init__(self, cfg):\n        pass\n")
    with pytest.raises(UsageError, match="no forward pass to trace"):
        trace(only_parts, small_cfg)
    with pytest.raises(UsageError, match="--batch"):
        trace(None, small_cfg, batch=0)


def test_a_hanging_model_hits_the_timeout(tmp_path, small_cfg):
    path = tmp_path / "hang.py"
    path.write_text(
        "import time\nfrom torch import nn\n\n\n"
        "class Model(nn.Module):\n"
        "    def forward_sequence(self, observations, actions):\n"
        "        time.sleep(30)\n\n\n"
        "def build_model(cfg):\n    return Model()\n"
    )
    report = trace(path, small_cfg, timeout=0.5)
    assert not report.ok
    assert report.error == "the forward pass did not return within 0.5 s of silence"
