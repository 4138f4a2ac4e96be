"""`aimespec check` and `aimespec trace` on the command line: exit codes, one JSON document, one-sentence errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimespec.cli import app

ROOT = Path(__file__).resolve().parent.parent
USER = str(ROOT / "examples" / "user_model.py")
BUGGY = str(ROOT / "examples" / "buggy_model.py")
SMALL = ["--set", "input_dim=32", "--set", "hidden_dim=32", "--set", "num_latent_channels_perceiver=32",
         "--set", "attention_resolution=7", "--set", "batch_size=2", "--set", "sequence_length=4",
         "--set", "num_codebook_perceiver=32", "--set", "perceiver_code_dim=16", "--set", "latent_dim=8",
         "--set", "attention_dim=16"]
runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- check -------------------------------------------------------------------------------------------
def test_check_user_model_passes():
    result = _invoke("check", USER, *SMALL)
    assert result.exit_code == 0, result.output
    assert "every contract holds" in result.stdout and "DPGMMPrior.forward" in result.stdout


def test_check_json_is_one_document_with_the_spec_keys():
    result = _invoke("check", BUGGY, *SMALL, "--json", "--examples", "1")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert {"version", "ok", "config", "results"} <= set(doc) and doc["ok"] is False
    assert doc["config"]["batch_size"] == 2
    for row in doc["results"]:
        assert {"contract", "implementation", "ok", "violations"} <= set(row)
        for v in row["violations"]:
            assert {"tensor", "expected", "expected_shape", "got", "message", "documented_error"} <= set(v)
            assert {"kind", "where", "fix", "batch", "seq_len", "seed"} <= set(v)
    errors = {v["documented_error"] for row in doc["results"] for v in row["violations"]}
    assert {1, 2, 3, 4, 5} <= errors


def test_check_buggy_terminal_view():
    result = _invoke("check", BUGGY, *SMALL, "--examples", "0")
    assert result.exit_code == 1
    out = result.stdout
    assert "error 5: Slot Attention Input Not Flattened" in out and "buggy_model.py:" in out
    assert "aimespec check" in out and "--seed 0" in out and "B=2, T=4" in out
    assert "[B, N, attention_dim] = [2, 49, 16]" in out


def test_check_a_raising_constructor_exits_1(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("class LSTMLayer:\n    def __init__(self, cfg):\n        raise RuntimeError('boom')\n")
    result = _invoke("check", str(path), "--json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)["results"]
    assert row["violations"][0]["kind"] == "constructor" and "boom" in row["violations"][0]["message"]


def test_check_timeout_option(tmp_path):
    path = tmp_path / "slow.py"
    path.write_text("import time\nclass RGB:\n    def __init__(self, cfg):\n        pass\n"
                    "    def balance(self, grads):\n        time.sleep(5)\n")
    result = _invoke("check", str(path), "--timeout", "0.2", "--json")
    assert result.exit_code == 1
    (violation,) = json.loads(result.stdout)["results"][0]["violations"]
    assert violation["kind"] == "timeout" and "0.2 s" in violation["message"]


def test_check_json_stays_clean_when_the_model_prints(tmp_path):
    path = tmp_path / "chatty.py"
    path.write_text("import torch\nprint('importing chatty')\nclass RGB:\n    def __init__(self, cfg):\n"
                    "        print('built')\n    def balance(self, grads):\n        print('balancing')\n"
                    "        return grads.mean(0)\n")
    result = _invoke("check", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.py", "does not exist"),
    (lambda d: d, "is a directory"),
    (lambda d: _file(d, "def broken(:\n"), "syntax error"),
    (lambda d: _file(d, "import no_such_package_here\n"), "ModuleNotFoundError"),
    (lambda d: _file(d, "x = 1\n"), "defines no component"),
])
def test_check_usage_errors_exit_2_with_one_sentence(tmp_path, make, needle):
    result = _invoke("check", str(make(tmp_path)))
    assert result.exit_code == 2, result.output
    assert needle in _one_sentence(result.stderr) and result.stdout == ""


def _file(directory: Path, text: str) -> Path:
    path = directory / "model.py"
    path.write_text(text)
    return path


def test_check_unknown_set_key_exits_2():
    result = _invoke("check", USER, "--set", "no_such_key=3")
    assert result.exit_code == 2
    assert "no_such_key" in _one_sentence(result.stderr)


def test_verbose_shows_the_traceback(tmp_path):
    result = _invoke("check", str(_file(tmp_path, "import no_such_package_here\n")), "--verbose")
    assert result.exit_code == 2 and "Traceback" in result.stderr


# --- trace -------------------------------------------------------------------------------------------
def test_trace_user_model_terminal_and_json():
    result = _invoke("trace", USER, *SMALL, "--batch", "3", "--seq-len", "5")
    assert result.exit_code == 0, result.output
    assert "LSTMLayer.forward  step 4" in result.stdout and "LSTMLayer.forward  step 2" not in result.stdout
    full = _invoke("trace", USER, *SMALL, "--seq-len", "3", "--all-steps")
    assert "LSTMLayer.forward  step 1" in full.stdout
    doc = json.loads(_invoke("trace", USER, *SMALL, "--json").stdout)
    assert {"version", "config", "batch", "seq_len", "calls", "tensors"} <= set(doc)
    assert (doc["batch"], doc["seq_len"]) == (2, 4)
    assert [c["step"] for c in doc["calls"] if c["component"] == "LSTMLayer"] == [0, 1, 2, 3]
    assert doc["tensors"]["DPGMM weights"] == [2, 4, 15]


def test_trace_failing_model_exits_1_and_usage_errors_exit_2(tmp_path):
    result = _invoke("trace", BUGGY, *SMALL)
    assert result.exit_code == 1 and "forward_sequence raised" in result.stdout
    bad = _invoke("trace", str(tmp_path / "none.py"))
    assert bad.exit_code == 2 and "does not exist" in _one_sentence(bad.stderr)
    bad = _invoke("trace", USER, "--batch", "0")
    assert bad.exit_code == 2 and "--batch" in _one_sentence(bad.stderr)


# --- a real process ------------------------------------------------------------------------------------
def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aimespec.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_subprocess_check_and_trace():
    done = _run("check", "examples/user_model.py", *SMALL, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    done = _run("trace", *SMALL, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["tensors"]["Reconstructions"] == [2, 4, 3, 32, 32]
    done = _run("check", "no/such/file.py")
    assert done.returncode == 2 and _one_sentence(done.stderr)
