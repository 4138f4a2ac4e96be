"""`aimespec diagnose`: the seed's five errors reproduced live, explained in symbols, fixes verified; the CLI."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from aimespec import AimeConfig
from aimespec.cli import app
from aimespec.explain.diagnose import diagnose
from aimespec.explain.documented import documented_error, documented_errors

runner = CliRunner()
OTHER = dict(hidden_dim=256, latent_dim=16, attention_resolution=11, batch_size=4)
SMALL_SETS = ["--set", "hidden_dim=32", "--set", "latent_dim=8", "--set", "attention_resolution=7",
              "--set", "batch_size=2", "--set", "sequence_length=8", "--set", "input_dim=32"]
KEYS = {"version", "error", "title", "raw_error", "cause", "fix", "fix_verified", "document_error"}


# --- the documented errors as data --------------------------------------------------------------------------
def test_five_documented_errors_with_the_documents_texts():
    errors = documented_errors()
    assert [e.number for e in errors] == [1, 2, 3, 4, 5]
    assert errors[3].document_error == (
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x768 and 512x1080)")
    assert errors[2].document_error == "RuntimeError: shape '[8, 16, 8, 8]' is invalid for input of size 1024"
    assert all(e.title and e.cause and e.fix and e.right_code for e in errors)
    assert documented_error(5).title == "Slot Attention Input Not Flattened"
    for bad in (0, 6, -1):
        with pytest.raises(ValueError, match="errors 1 to 5"):
            documented_error(bad)


# --- live reproduction --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("changes", [{}, OTHER], ids=["default", "other"])
def test_each_error_is_reproduced_and_its_fix_verified(n, changes):
    cfg = AimeConfig().replace(**changes)
    d = diagnose(n, cfg)
    assert d.reproduced and d.raw_error and d.raw_error_type
    assert d.fix_verified, d.fix_shapes
    assert d.recognised_as == n
    assert d.batch == cfg.batch_size and d.seq_len == cfg.sequence_length
    doc = d.to_json()
    assert KEYS <= set(doc) and doc["error"] == n
    json.dumps(doc)


def test_real_messages_and_causes_at_the_default():
    cfg = AimeConfig()
    d1, d2, d3, d4, d5 = (diagnose(n, cfg) for n in range(1, 6))
    assert "128" in d1.raw_error and "8" in d1.raw_error
    assert "128 = B*T = 8*16" in d1.cause
    assert d2.raw_error == "The size of tensor a (64) must match the size of tensor b (21) at non-singleton dimension 3"
    assert d3.raw_error == "shape '[8, 16, 8, 8]' is invalid for input of size 1024"
    assert "1024 = B*T_enc*H_t*W_t = 8*2*8*8" in d3.cause
    assert d4.raw_error == "mat1 and mat2 shapes cannot be multiplied (8x512 and 768x1080)"
    assert "768 = hidden_dim + context_dim = 512 + 256" in d4.cause and "1080 = 2*K*D" in d4.cause
    assert any("(8x768 and 512x1080)" in v["raw_error"] for v in d4.variants)  # the document's orientation
    assert any(v["raw_error"].startswith("Expected input batch_size (128) to match target batch_size (8)")
               for v in d1.variants)  # the document's (loss function's) text
    assert d5.raw_error == "mat1 and mat2 shapes cannot be multiplied (10752x21 and 64x64)"
    assert d3.fix_shapes["tokens"] == [8, 16, 8, 8] and d5.fix_shapes["attn"] == [8, 4, 441]


def test_the_numbers_follow_the_config():
    d = diagnose(4, AimeConfig().replace(**OTHER))
    assert d.raw_error == "mat1 and mat2 shapes cannot be multiplied (4x256 and 512x480)"
    assert "512 = hidden_dim + context_dim = 256 + 256" in d.cause
    d = diagnose(1, AimeConfig(), batch=3, seq_len=5)
    assert "15 = B*T = 3*5" in d.cause and d.fix_shapes["hidden_states"] == [3, 5, 512]


@pytest.mark.parametrize(("n", "kwargs", "changes", "why"), [
    (1, {"seq_len": 1}, {}, "B*T = B"),
    (3, {}, {"temporal_downsample": 1}, "T_enc = T"),
    (2, {}, {"attention_resolution": 64}, "H_att = H"),
])
def test_configs_where_the_wrong_code_is_not_that_error_say_so(n, kwargs, changes, why):
    d = diagnose(n, AimeConfig().replace(**changes), **kwargs)
    assert not d.reproduced
    assert why in d.note
    assert d.fix_verified
    if n != 2:
        assert d.raw_error == "" and d.recognised_as is None
    else:  # the product still fails, on the missing channel axis: not Error 2, and not read as Error 2
        assert d.recognised_as != 2


# --- CLI ----------------------------------------------------------------------------------------------------
def _invoke(*args, input=None):
    return runner.invoke(app, ["diagnose", *args], input=input)


def test_cli_list():
    result = _invoke("--list", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["version"] and [e["error"] for e in doc["errors"]] == [1, 2, 3, 4, 5]
    assert {"title", "document_error", "fix"} <= set(doc["errors"][0])
    result = _invoke("--list")
    assert result.exit_code == 0 and "Slot Attention Input Not Flattened" in result.stdout


def test_cli_one_error_json_and_panel():
    result = _invoke("4", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert KEYS <= set(doc) and doc["fix_verified"] is True and doc["config"]["hidden_dim"] == 512
    result = _invoke("2", *SMALL_SETS)
    assert result.exit_code == 0, result.output
    assert "fix verified" in result.stdout and "must match the size of tensor b (7)" in result.stdout


def test_cli_all_with_sets():
    result = _invoke("--all", "--json", *SMALL_SETS, "--batch", "3")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["version"] and doc["batch"] == 3 and doc["config"]["hidden_dim"] == 32
    assert [d["error"] for d in doc["errors"]] == [1, 2, 3, 4, 5]
    assert all(d["fix_verified"] and d["raw_error"] and KEYS <= set(d) for d in doc["errors"])


def test_cli_explain_text_and_stdin():
    result = _invoke("--explain", "mat1 and mat2 shapes cannot be multiplied (8x768 and 512x1080)", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"version", "numbers", "matches", "explanation"} <= set(doc)
    assert doc["matches"][0]["error"] == 4 and doc["numbers"]["768"][0].startswith("hidden_dim + context_dim")
    traceback = ('Traceback (most recent call last):\n  File "model.py", line 41, in forward\n'
                 "    h, c = self.lstm(x, (h0, c0))\nRuntimeError: Input batch size 64 doesn't match hidden0 batch "
                 "size 4\n")
    result = _invoke("--explain", "-", "--set", "batch_size=4", input=traceback)
    assert result.exit_code == 0, result.output
    assert "B*T = 4*16" in result.stdout and "Dimension Mismatch in LSTM Input" in result.stdout
    result = _invoke("--explain", "something unrelated", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["matches"] == []


def test_explain_of_empty_stdin_is_a_usage_error():
    result = _invoke("--explain", "-", "--json", input="")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == ("error: standard input held no text to explain: pass an error message or "
                                     "traceback (`--explain \"RuntimeError: ...\"`, or `--explain -` with the text "
                                     "on stdin)")


@pytest.mark.parametrize(("args", "needle"), [
    ((), "give an error number"), (("9",), "errors 1 to 5"), (("0",), "errors 1 to 5"),
    (("2", "--list"), "choose one"), (("1", "--set", "latent_dim=-3"), "latent_dim"),
    (("--explain", ""), "--explain held no text to explain"), (("--explain", " \n\t"), "held no text to explain"),
])
def test_cli_usage_errors_exit_2_with_one_sentence(args, needle):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_as_a_real_process():
    cmd = [sys.executable, "-m", "aimespec.cli", "diagnose"]
    done = subprocess.run([*cmd, "--explain", "-", "--json"], input=documented_errors()[2].document_error,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["matches"][0]["error"] == 3 and doc["numbers"]["1024"][0].startswith("B*T_enc*H_t*W_t")
    done = subprocess.run([*cmd, "4", "--json", "--set", "hidden_dim=256"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert KEYS <= set(doc) and doc["fix_verified"] and "(8x256 and 512x1080)" in doc["raw_error"]
    done = subprocess.run([*cmd, "6"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "errors 1 to 5" in done.stderr


def test_error_2_is_not_claimed_when_a_1x1_attention_map_cannot_cause_it():
    from aimespec import AimeConfig
    from aimespec.explain.diagnose import diagnose

    d = diagnose(2, AimeConfig.small(attention_resolution=1))
    assert d.reproduced is False and d.fix_verified is True
    assert d.note.startswith("at this config H_att = W_att = 1: a 1x1 map broadcasts against any H x W")
