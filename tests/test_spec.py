"""`aimespec spec`: generated from the contracts and the symbol table; the seed's values and shapes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimespec.cli import app

GOLDEN = Path(__file__).parent / "golden"
runner = CliRunner()

# The seed's "Standard Dimensions" typical values (K_slots "4-5": the default is 4).
SEED_SYMBOLS = {"B": 8, "T": 16, "C": 3, "H": 64, "W": 64, "D": 36, "K": 15, "K_slots": 4, "H_att": 21,
                "W_att": 21, "H_t": 8, "W_t": 8, "A": 6, "hidden_dim": 512, "context_dim": 256}
# The seed's "Key Tensor Shapes at a Glance" (Slot features [B, T, K_slots, 64] at K_slots = 4).
SEED_TENSORS = {
    "Observations": [8, 16, 3, 64, 64], "Actions": [8, 16, 6], "VQ Tokens": [8, 16, 8, 8],
    "Context": [8, 16, 256], "Latent z": [8, 16, 36], "LSTM hidden": [8, 16, 512], "DPGMM weights": [8, 16, 15],
    "Attention map": [8, 16, 21, 21], "Slot features": [8, 16, 4, 64], "Reconstructions": [8, 16, 3, 64, 64],
}


def _json(*args):
    result = runner.invoke(app, ["spec", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_default_symbols_are_the_seeds_typical_values():
    doc = _json()
    assert {k: doc["symbols"][k] for k in SEED_SYMBOLS} == SEED_SYMBOLS
    assert doc["version"]
    assert [r["symbol"] for r in doc["symbol_table"] if r["seed"]] == list(SEED_SYMBOLS)


def test_default_tensors_are_exactly_the_seeds_shapes():
    doc = _json()
    assert {t["name"]: t["shape"] for t in doc["tensors"]} == SEED_TENSORS
    assert [t["name"] for t in doc["tensors"]] == list(SEED_TENSORS)
    assert {t["name"]: t["symbolic"] for t in doc["tensors"]}["Slot features"] == "[B, T, K_slots, attention_dim]"


def test_spec_follows_the_config():
    doc = _json("--set", "hidden_dim=256", "--set", "attention_resolution=11", "--set", "batch_size=2")
    assert doc["symbols"]["hidden_dim"] == 256
    shapes = {t["name"]: t["shape"] for t in doc["tensors"]}
    assert shapes["Attention map"] == [2, 16, 11, 11]
    prior = next(c for c in doc["contracts"] if c["contract"] == "DPGMMPrior.forward")
    assert prior["tensors"][0] == {"name": "h", "role": "input", "symbolic": "[B, hidden_dim+context_dim]",
                                   "dtype": "float", "shape": [2, 512], "optional": False}


def test_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("latent_dim = 16\n")
    assert _json("--config", str(f))["symbols"]["D"] == 16


def test_markdown_golden():
    result = runner.invoke(app, ["spec", "--markdown"])
    assert result.exit_code == 0, result.output
    golden = GOLDEN / "spec_default.md"
    if os.environ.get("AIMESPEC_REGEN_GOLDEN"):
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()


def test_table_golden():
    result = runner.invoke(app, ["spec"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    golden = GOLDEN / "spec_default.txt"
    if os.environ.get("AIMESPEC_REGEN_GOLDEN"):
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "latnet_dim=3"], "error: latnet_dim: is not a config key"),
    (["--set", "latent_dim=x"], "error: latent_dim: must be an integer, got 'x'"),
    (["--set", "input_dim=60"], "error: input_dim: 60 is not divisible"),
    (["--config", "/nonexistent.toml"], "error: /nonexistent.toml: is not a readable file"),
])
def test_bad_input_is_exit_2_and_one_sentence(args, message):
    result = runner.invoke(app, ["spec", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_verbose_adds_the_traceback():
    result = runner.invoke(app, ["spec", "--set", "latent_dim=x", "--verbose"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_real_subprocess_json_only_on_stdout():
    proc = subprocess.run([sys.executable, "-m", "aimespec.cli", "spec", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {t["name"]: t["shape"] for t in doc["tensors"]} == SEED_TENSORS
    bad = subprocess.run([sys.executable, "-m", "aimespec.cli", "spec", "--set", "nope=1"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip() == "error: nope: is not a config key (--set); see `aimespec spec` for the keys"


def test_usage_errors_of_the_console_script_are_one_sentence():
    for args, message in ((["spec", "--bogus"], "error: No such option: --bogus"),
                          (["chek"], "error: No such command 'chek'. Did you mean 'check'?"),
                          (["spec", "--json", "--markdown"], "error: --json and --markdown are two different outputs")):
        proc = subprocess.run([sys.executable, "-m", "aimespec.cli", *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith(message) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_bad_checking_mode_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "aimespec.cli", "spec"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "AIMESPEC_CHECK": "bogus"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: AIMESPEC_CHECK='bogus' is not a checking mode: use one of full, shapes, off"


def test_spec_of_a_model_file_ends_the_usual_way_so_the_files_exit_hooks_run(tmp_path):
    # The console script skips the interpreter's teardown for its own commands, but not when a model
    # file was imported in its process (`spec PATH`): the file's atexit hooks and buffered writes are its own.
    marker = tmp_path / "marker.txt"
    model = tmp_path / "model.py"
    model.write_text(f"import atexit\nlog = open({str(marker)!r}, 'w')\nlog.write('buffered')\n"
                     f"atexit.register(lambda: open({str(marker)!r} + '.atexit', 'w').close())\n"
                     "from aimespec import Contract\n")
    proc = subprocess.run([sys.executable, "-m", "aimespec", "spec", str(model), "--json"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "buffered" and (tmp_path / "marker.txt.atexit").exists()
