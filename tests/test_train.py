"""`aimespec train`: log, figures, checkpoints and resume, NaN safety, bad data (library, CliRunner, subprocess)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from aimespec import AimeConfig
from aimespec.cli import app
from aimespec.data import EpisodeData
from reference_model.losses import TASKS, TERMS
from reference_model.synthetic import moving_shapes
from reference_model.train import TrainingStopped, train

runner = CliRunner()
SMALL = AimeConfig.small()  # input_dim 32, action_dim 6, sequence_length 8, batch_size 4
TINY = AimeConfig.small(sequence_length=4, batch_size=2)
LOG_KEYS = {"step", "time", "elapsed", "seconds", "epoch", "rows", *TASKS, *TERMS, "discriminator", "grad_norm",
            "perplexity"}


def write_shapes(path: Path, n: int = 3, T: int = 8, action_dim: int = 6, seed: int = 0) -> Path:
    obs, act = moving_shapes(n, T, 32, action_dim, seed)
    return EpisodeData.from_float(obs, act, task="moving-shapes").save(path)


def write_config(path: Path, cfg: AimeConfig) -> Path:
    path.write_text(json.dumps(cfg.to_dict()))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    return {
        "shapes": write_shapes(root / "shapes.npz"),  # 3 episodes < batch_size 4: batches of 3
        "small": write_config(root / "small.json", SMALL),
        "tiny": write_config(root / "tiny.json", TINY),
    }


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_trained(out: Path, steps: int, rows: int, T: int = 8) -> None:
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, steps + 1))
    for record in log:
        assert set(record) >= LOG_KEYS, LOG_KEYS - set(record)
        assert all(isinstance(record[k], float) and math.isfinite(record[k]) for k in LOG_KEYS - {"step", "epoch",
                                                                                                     "rows"}), record
        assert record["rows"] == rows
        assert record["reconstruction"] >= 0 and record["kl_z"] >= 0
    assert log[-1]["elapsed"] >= log[0]["elapsed"] > 0
    assert checkpoint(out)["step"] == steps
    png = out / "figures" / f"step_{steps:06d}.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        width, height = image.size
        # 2 examples x (frame, reconstruction, attention, 3 slot masks) rows of >= 64 px cells, min(6, T) columns
        assert width >= min(6, T) * 64 and height >= 2 * 6 * 64, image.size
        assert np.asarray(image).std() > 5  # not a blank canvas


def train_cli(*args: str):
    return runner.invoke(app, ["train", *args])


def test_twenty_steps_on_synthetic_episodes_write_the_log_checkpoint_and_figures(files, tmp_path):
    out = tmp_path / "run"
    result = train_cli("--data", str(files["shapes"]), "--config", str(files["small"]), "--steps", "20",
                       "--out", str(out), "--figure-every", "10", "--checkpoint-every", "10")
    assert result.exit_code == 0, result.output
    assert "trained steps 1..20" in result.stdout and "s/step" in result.stdout
    assert_trained(out, 20, rows=3)  # fewer episodes (3) than batch_size (4): batches of 3
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["step_000010.png", "step_000020.png"]
    first, last = read_log(out)[0], read_log(out)[-1]
    assert last["reconstruction"] < first["reconstruction"]  # it learns
    print(f"small config: {sum(r['seconds'] for r in read_log(out)) / 20:.3f} s/step")


@pytest.mark.dmc
def test_twenty_steps_on_walker_walk(tmp_path):
    pytest.importorskip("dm_control")
    from aimespec.data import collect

    data = collect("walker-walk", episodes=3, length=8, seed=0, size=32).save(tmp_path / "walker.npz")
    out = tmp_path / "walker"
    sets = [f"--set={k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in SMALL.to_dict().items()]
    result = train_cli("--data", str(data), *sets, "--steps", "20", "--out", str(out), "--figure-every", "0")
    assert result.exit_code == 0, result.output
    assert_trained(out, 20, rows=3)
    assert [p.name for p in (out / "figures").iterdir()] == ["step_000020.png"]  # always one at the end


def test_resume_continues_the_step_count_data_order_and_noise(files, tmp_path):
    common = ["--data", str(files["shapes"]), "--config", str(files["tiny"]), "--figure-every", "0"]
    out = tmp_path / "resumed"
    assert train_cli(*common, "--steps", "10", "--out", str(out)).exit_code == 0
    assert checkpoint(out)["step"] == 10
    result = train_cli("--data", str(files["shapes"]), "--resume", "--steps", "20", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "trained steps 11..20" in result.stdout
    assert_trained(out, 20, rows=2, T=4)
    # the same as one uninterrupted run: the checkpoint carries the data order and the RNG state
    straight = train(files["shapes"], TINY, steps=20, out_dir=tmp_path / "straight", figure_every=0,
                     progress=False)
    assert straight.step == 20
    assert read_log(out)[-1]["elbo"] == read_log(tmp_path / "straight")[-1]["elbo"]
    a, b = checkpoint(out)["trainer"]["model"], checkpoint(tmp_path / "straight")["trainer"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished run resumed to the same step trains nothing
    again = train_cli("--data", str(files["shapes"]), "--resume", "--steps", "20", "--out", str(out))
    assert again.exit_code == 0 and "already at step 20" in again.stdout
    assert len(read_log(out)) == 20


def test_resume_and_overwrite_mistakes_are_usage_errors(files, tmp_path):
    common = ["--data", str(files["shapes"]), "--config", str(files["tiny"]), "--figure-every", "0"]
    missing = train_cli(*common, "--resume", "--out", str(tmp_path / "none"))
    assert missing.exit_code == 2 and "no checkpoint to resume from" in missing.stderr
    out = tmp_path / "run"
    assert train_cli(*common, "--steps", "1", "--out", str(out)).exit_code == 0
    again = train_cli(*common, "--steps", "2", "--out", str(out))
    assert again.exit_code == 2 and "already holds a checkpoint: pass --resume" in again.stderr
    other = train_cli(*common, "--resume", "--steps", "2", "--out", str(out), "--set", "latent_dim=4")
    assert other.exit_code == 2 and "latent_dim 8 -> 4" in other.stderr


def inject_nan(monkeypatch, term: str, at_call: int) -> None:
    """Make `term` NaN in the losses of the `at_call`-th training step (figures compute no losses)."""
    import reference_model.trainer as trainer_module

    real = trainer_module.compute_losses
    calls = {"n": 0}

    def compute_losses(out, observations, discriminator):
        losses = real(out, observations, discriminator)
        calls["n"] += 1
        if calls["n"] == at_call:
            losses.terms[term] = losses.terms[term] * float("nan")
            task = TERMS[term][0]
            losses.tasks[task] = losses.tasks[task] + losses.terms[term]
        return losses

    monkeypatch.setattr(trainer_module, "compute_losses", compute_losses)


def test_a_nan_loss_stops_training_naming_the_term_and_step_and_keeps_the_last_good_checkpoint(
    files, tmp_path, monkeypatch
):
    inject_nan(monkeypatch, "kl_z", at_call=6)
    out = tmp_path / "nan"
    with pytest.raises(TrainingStopped) as info:
        train(files["shapes"], TINY, steps=10, out_dir=out, checkpoint_every=4, figure_every=0, progress=False)
    stopped = info.value
    assert stopped.step == 6 and stopped.terms == ["kl_z"] and stopped.checkpoint_step == 5
    assert str(stopped).startswith("training stopped at step 6: loss term kl_z is NaN (so is elbo)")
    assert str(stopped).endswith("(step 5) is kept.") and "\n" not in str(stopped)  # one sentence
    state = checkpoint(out)
    assert state["step"] == 5 < stopped.step
    assert all(torch.isfinite(t).all() for t in state["trainer"]["model"].values() if t.is_floating_point())
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4, 5]


def test_a_nan_gradient_stops_training_naming_the_task(files, tmp_path, monkeypatch):
    """The stop names what the NonFiniteLoss carries (here a task's gradient, whose message has no
    `name=value` pair to read back), not what can be parsed from its text."""
    import reference_model.trainer as trainer_module

    real = trainer_module.Trainer.task_gradients

    def task_gradients(self, losses):
        grads = real(self, losses)
        if self.step_count == 1:
            grads = grads.clone()
            grads[3, 0] = float("nan")  # the adversarial task's gradient
        return grads

    monkeypatch.setattr(trainer_module.Trainer, "task_gradients", task_gradients)
    with pytest.raises(TrainingStopped) as info:
        train(files["shapes"], TINY, steps=4, out_dir=tmp_path / "grad", figure_every=0, progress=False)
    assert info.value.step == 2 and info.value.terms == ["adversarial"]
    assert str(info.value).startswith("training stopped at step 2: loss term adversarial is NaN;")


def test_a_nan_loss_exits_1_via_the_cli(files, tmp_path, monkeypatch):
    inject_nan(monkeypatch, "reconstruction", at_call=3)
    out = tmp_path / "nan"
    result = train_cli("--data", str(files["shapes"]), "--config", str(files["tiny"]), "--steps", "5",
                       "--out", str(out), "--figure-every", "0")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()  # the progress lines of steps 1-2, then one sentence
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and errors[0].startswith("error: training stopped at step 3: loss term reconstruction")
    assert errors[0].endswith("(step 2) is kept.")
    assert checkpoint(out)["step"] == 2
    # resuming from the kept checkpoint works (the NaN was a one-off here)
    monkeypatch.undo()
    resumed = train_cli("--data", str(files["shapes"]), "--resume", "--steps", "4", "--out", str(out))
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4]


def test_bad_data_files_exit_2_with_one_sentence(files, tmp_path):
    common = ["--config", str(files["tiny"]), "--steps", "1", "--out", str(tmp_path / "run")]
    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    frames = np.zeros((2, 4, 32, 32), np.uint8)  # no channel axis
    np.savez(tmp_path / "flat.npz", observations=frames, actions=np.zeros((2, 4, 6), np.float32))
    for path, reason in [(text, "is not an .npz file"), (tmp_path / "flat.npz", "expected 5 axes"),
                         (tmp_path / "absent.npz", "does not exist")]:
        result = train_cli("--data", str(path), *common)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_action_dim_and_sequence_length_mismatches_give_the_set_that_fixes_them(files, tmp_path):
    humanoid_like = write_shapes(tmp_path / "a21.npz", n=2, T=8, action_dim=21)
    result = train_cli("--data", str(humanoid_like), "--config", str(files["tiny"]), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "actions with A = 21 but the config's action_dim is 6" in result.stderr
    assert "--set action_dim=21" in result.stderr
    fixed = train_cli("--data", str(humanoid_like), "--config", str(files["tiny"]), "--set", "action_dim=21",
                      "--steps", "1", "--figure-every", "0", "--out", str(tmp_path / "r"))
    assert fixed.exit_code == 0, fixed.output
    short = train_cli("--data", str(files["shapes"]), "--config", str(files["tiny"]), "--set",
                      "sequence_length=12", "--out", str(tmp_path / "s"))
    assert short.exit_code == 2 and "--set sequence_length=8" in short.stderr


def test_a_real_subprocess_trains_and_reports_bad_input(files, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "aimespec.cli", "train", "--config", str(files["tiny"]), "--figure-every", "0"]
    ok = subprocess.run([*base, "--data", str(files["shapes"]), "--steps", "2", "--out", str(tmp_path / "run"),
                         "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    document = json.loads(ok.stdout)  # --json: exactly one JSON document on stdout
    assert document["step"] == 2 and document["steps_run"] == 2 and "version" in document
    assert set(document["losses"]) >= set(TASKS)
    assert Path(document["figures"][-1]).name == "step_000002.png"
    assert len(read_log(tmp_path / "run")) == 2
    bad = subprocess.run([*base, "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: data file {tmp_path / 'missing.npz'} does not exist."]


def test_training_balanced_at_the_outputs_via_the_cli(files, tmp_path):
    out = tmp_path / "outputs"
    result = train_cli("--data", str(files["shapes"]), "--config", str(files["tiny"]), "--steps", "2",
                       "--out", str(out), "--figure-every", "0", "--balance-at", "outputs")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_log(out)] == [1, 2]
    assert all(math.isfinite(r["grad_norm"]) for r in read_log(out))
    bad = train_cli("--data", str(files["shapes"]), "--config", str(files["tiny"]), "--steps", "2",
                    "--out", str(tmp_path / "bad"), "--balance-at", "loss")
    assert bad.exit_code == 2
    assert bad.stderr.strip().endswith("balance_at must be one of parameters, outputs, got 'loss'.")
