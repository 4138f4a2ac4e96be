"""dm_control collection, action specs and `aimespec collect` (needs the `dmc` extra)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("dm_control")

from aimespec import AimeConfig
from aimespec.cli import app
from aimespec.data import DataError, action_dim_for, batches, collect, load_episodes, resolve_task

pytestmark = pytest.mark.dmc
runner = CliRunner()


@pytest.fixture(scope="module")
def walker():
    return collect("walker-walk", episodes=2, length=4, seed=0)


def test_walker_episodes_have_the_documented_shapes_and_dtypes(walker):
    assert walker.observations.shape == (2, 4, 3, 64, 64) and walker.observations.dtype == np.uint8
    assert walker.actions.shape == (2, 4, 6) and walker.actions.dtype == np.float32
    assert walker.task == "walker-walk" and walker.action_repeat == 2 and walker.camera_id == 0
    np.testing.assert_array_equal(walker.action_min, -np.ones(6, np.float32))
    np.testing.assert_array_equal(walker.action_max, np.ones(6, np.float32))
    assert (walker.actions >= walker.action_min).all() and (walker.actions <= walker.action_max).all()
    # Real frames: not blank, and the walker moves between the first and the last frame.
    assert walker.observations.std() > 10
    assert not np.array_equal(walker.observations[:, 0], walker.observations[:, -1])
    walker.check(AimeConfig())


def test_collection_is_reproducible_from_the_seed_and_the_scripted_policy_stays_in_bounds():
    a = collect("walker-walk", 1, 3, seed=5, policy="scripted")
    b = collect("walker-walk", 1, 3, seed=5, policy="scripted")
    c = collect("walker-walk", 1, 3, seed=6, policy="scripted")
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)
    assert (np.abs(a.actions) <= 1).all() and a.policy == "scripted"


def test_action_dim_comes_from_the_tasks_action_spec():
    assert action_dim_for("walker-walk") == 6
    assert action_dim_for("cheetah-run") == 6
    assert action_dim_for("humanoid-walk") == 21
    assert resolve_task("ball_in_cup-catch") == resolve_task("ball-in-cup-catch") == ("ball_in_cup", "catch")


def test_unknown_tasks_name_the_close_matches():
    with pytest.raises(DataError, match=r"unknown dm_control task 'walker-wlak': did you mean walker-walk"):
        action_dim_for("walker-wlak")
    with pytest.raises(DataError, match=r"walker has the tasks stand, walk, run"):
        resolve_task("walker")
    with pytest.raises(DataError, match=r"the domains are acrobot, .*walker"):
        resolve_task("spaceship-fly")


def test_spec_with_a_humanoid_env_binds_A_to_21():
    result = runner.invoke(app, ["spec", "--env", "humanoid-walk", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["symbols"]["A"] == 21 and doc["config"]["action_dim"] == 21
    actions = next(t for t in doc["tensors"] if t["name"] == "Actions")
    assert actions["shape"][-1] == 21


def test_cli_collect_writes_a_file_that_loads_back(tmp_path):
    out = tmp_path / "walker.npz"
    result = runner.invoke(
        app, ["collect", "--env", "walker-walk", "--episodes", "2", "--length", "3", "--out", str(out), "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "2 episodes x 3 frames of walker-walk" in lines[0] and "frames/s" in lines[0]
    data = load_episodes(out, AimeConfig())
    assert data.observations.shape == (2, 3, 3, 64, 64) and data.seed == 1
    batch = next(batches(data, batch_size=8, seq_len=2, seed=0))
    assert tuple(batch.observations.shape) == (2, 2, 3, 64, 64) and tuple(batch.actions.shape) == (2, 2, 6)


def test_cli_collect_json_is_one_document(tmp_path):
    out = tmp_path / "c.npz"
    result = runner.invoke(
        app,
        [
            "collect",
            "--env",
            "cheetah-run",
            "-n",
            "1",
            "-T",
            "2",
            "--size",
            "32",
            "--policy",
            "scripted",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["observations"] == [1, 2, 3, 32, 32] and doc["actions"] == [1, 2, 6]
    assert doc["task"] == "cheetah-run" and doc["policy"] == "scripted" and doc["version"]
    assert doc["frames_per_second"] > 0


def test_cli_collect_in_a_real_process(tmp_path):
    out = tmp_path / "proc.npz"
    cmd = [
        sys.executable,
        "-m",
        "aimespec.cli",
        "collect",
        "--env",
        "walker-walk",
        "--episodes",
        "1",
        "--length",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and proc.stderr == ""
    assert load_episodes(out).observations.shape == (1, 2, 3, 64, 64)


def test_cli_unknown_env_exits_2_with_one_sentence(tmp_path):
    result = runner.invoke(app, ["collect", "--env", "walker-wlak", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: unknown dm_control task 'walker-wlak': did you mean walker-walk or walker-stand or walker-run?"
    ]
    assert not (tmp_path / "x.npz").exists()


def test_cli_bad_size_exits_2(tmp_path):
    result = runner.invoke(app, ["collect", "--env", "walker-walk", "--size", "0", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2


def test_missing_dm_control_is_the_install_sentence(monkeypatch, tmp_path):
    for name in ("dm_control", "dm_control.suite"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DataError, match=r"pip install 'aimespec\[dmc\]'"):
        action_dim_for("walker-walk")
    for args in (
        ["collect", "--env", "walker-walk", "--out", str(tmp_path / "x.npz")],
        ["spec", "--env", "walker-walk", "--json"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            "error: dm_control is not installed: install it with pip install 'aimespec[dmc]' (dm_control and mujoco<4)."
        ]


def test_env_and_a_contradicting_set_action_dim_is_a_usage_error():
    result = CliRunner().invoke(app, ["spec", "--env", "walker-walk", "--set", "action_dim=3", "--json"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == ("error: action_dim: --set action_dim=3 contradicts --env walker-walk, "
                                     "whose action_spec() has 6 actions: drop one of them")
    agreeing = CliRunner().invoke(app, ["spec", "--env", "walker-walk", "--set", "action_dim=6", "--json"])
    assert agreeing.exit_code == 0, agreeing.output
