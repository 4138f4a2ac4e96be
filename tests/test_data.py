"""The episodes format and the batch loader (`aimespec.data`), without dm_control."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aimespec import AimeConfig, AimespecError, UsageError
from aimespec.data import Batch, DataError, EpisodeData, batch_size_for, batches, load_episodes


def make_data(n=5, t=10, a=6, size=8, rng_seed=0, **meta) -> EpisodeData:
    rng = np.random.default_rng(rng_seed)
    return EpisodeData(
        observations=rng.integers(0, 256, (n, t, 3, size, size), dtype=np.uint8),
        actions=rng.uniform(-1, 1, (n, t, a)).astype(np.float32),
        **meta,
    )


def one_sentence(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and message.endswith((".", "?")), message
    return message


# --- the file format ------------------------------------------------------------------------------


def test_save_load_round_trip_keeps_arrays_and_metadata(tmp_path):
    lo, hi = -np.ones(6, np.float32), np.ones(6, np.float32)
    data = make_data(
        task="walker-walk", seed=3, action_repeat=2, policy="random", camera_id=0, action_min=lo, action_max=hi
    )
    path = data.save(tmp_path / "sub" / "walker.npz")
    back = load_episodes(path)
    np.testing.assert_array_equal(back.observations, data.observations)
    np.testing.assert_array_equal(back.actions, data.actions)
    np.testing.assert_array_equal(back.action_min, lo)
    np.testing.assert_array_equal(back.action_max, hi)
    assert back.observations.dtype == np.uint8 and back.actions.dtype == np.float32
    assert (back.task, back.seed, back.action_repeat, back.policy, back.camera_id) == ("walker-walk", 3, 2, "random", 0)
    assert back.version == "0.1.0"
    assert (back.num_episodes, back.length, back.action_dim, back.image_size) == (5, 10, 6, (8, 8))
    with np.load(path) as npz:
        meta = json.loads(str(npz["metadata"]))
    assert meta["image_size"] == [8, 8] and meta["action_repeat"] == 2 and meta["task"] == "walker-walk"


def test_save_writes_exactly_the_path_given_and_leaves_no_temporary_file(tmp_path):
    path = make_data().save(tmp_path / "episodes.data")
    assert path == tmp_path / "episodes.data" and path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.data"]


def test_a_plain_npz_without_metadata_loads(tmp_path):
    data = make_data(n=2, t=3)
    np.savez(tmp_path / "plain.npz", observations=data.observations, actions=data.actions)
    back = load_episodes(tmp_path / "plain.npz")
    assert back.task == "unknown" and back.action_min is None and back.seed is None


def _write(tmp_path, name, **arrays):
    path = tmp_path / name
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _bad_files(tmp_path):
    good = make_data(n=2, t=3)
    obs, act = good.observations, good.actions
    text = tmp_path / "notes.npz"
    text.write_text("observations, actions\n1, 2\n")
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as fh:
        np.save(fh, obs)
    truncated = tmp_path / "truncated.npz"
    whole = good.save(tmp_path / "whole.npz").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    return {
        "missing": (tmp_path / "nope.npz", "does not exist"),
        "directory": (tmp_path, "is a directory"),
        "not npz": (text, "is not an .npz file"),
        "npy": (npy, "single .npy array"),
        "truncated": (truncated, "damaged or truncated"),
        "no actions": (_write(tmp_path, "a.npz", observations=obs), "has no 'actions' array"),
        "float frames": (_write(tmp_path, "b.npz", observations=obs / 255.0, actions=act), "expected uint8"),
        "float64 actions": (
            _write(tmp_path, "c.npz", observations=obs, actions=act.astype(np.float64)),
            "expected float32",
        ),
        "channels last": (
            _write(tmp_path, "d.npz", observations=np.ascontiguousarray(obs.transpose(0, 1, 3, 4, 2)), actions=act),
            "channels first",
        ),
        "4-d frames": (_write(tmp_path, "e.npz", observations=obs[0], actions=act), "expected 5 axes"),
        "2-d actions": (_write(tmp_path, "f.npz", observations=obs, actions=act[0]), "expected 3 axes"),
        "N mismatch": (_write(tmp_path, "g.npz", observations=obs, actions=act[:1]), "same episodes"),
        "T mismatch": (_write(tmp_path, "h.npz", observations=obs, actions=act[:, :2]), "same episodes"),
        "nan actions": (_write(tmp_path, "i.npz", observations=obs, actions=np.full_like(act, np.nan)), "NaN"),
        "bad metadata": (
            _write(tmp_path, "j.npz", observations=obs, actions=act, metadata=np.array("{oops")),
            "not a JSON record",
        ),
        "object array": (
            _write(tmp_path, "k.npz", observations=obs, actions=act, metadata=np.array([{"task": 1}], dtype=object)),
            "pickled object arrays",
        ),
        "bounds shape": (
            _write(
                tmp_path,
                "l.npz",
                observations=obs,
                actions=act,
                action_min=np.zeros(2, np.float32),
                action_max=np.ones(2, np.float32),
            ),
            "action_min has shape [2]",
        ),
        "one bound": (
            _write(tmp_path, "m.npz", observations=obs, actions=act, action_min=np.zeros(6, np.float32)),
            "only one of action_min",
        ),
    }


def test_every_bad_file_is_one_sentence_naming_the_reason(tmp_path):
    for label, (path, reason) in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as info:
            load_episodes(path)
        message = one_sentence(info.value)
        assert reason in message, (label, message)
        assert str(path) in message, (label, message)


def test_data_errors_are_usage_errors_so_the_cli_exits_2():
    assert issubclass(DataError, UsageError) and issubclass(DataError, AimespecError)


def test_a_file_whose_action_dim_differs_from_the_config_is_refused(tmp_path):
    path = make_data(a=21, size=64, task="humanoid-walk").save(tmp_path / "humanoid.npz")
    with pytest.raises(DataError) as info:
        load_episodes(path, AimeConfig())
    message = one_sentence(info.value)
    assert "A = 21" in message and "action_dim is 6" in message
    assert "--env humanoid-walk" in message and "--set action_dim=21" in message
    assert load_episodes(path, AimeConfig(action_dim=21)).action_dim == 21
    with pytest.raises(DataError, match="A = 21 but A = 6 was expected"):
        load_episodes(path, action_dim=6)


def test_a_file_whose_frames_differ_from_input_dim_is_refused(tmp_path):
    path = make_data(size=8).save(tmp_path / "small.npz")
    with pytest.raises(DataError, match=r"8x8 frames but the config's input_dim is 64: collect with --size 64"):
        load_episodes(path, AimeConfig())


def test_episode_data_validates_what_it_is_built_from():
    good = make_data(n=2, t=3)
    with pytest.raises(DataError, match="expected uint8"):
        EpisodeData(good.observations.astype(np.float32), good.actions)
    with pytest.raises(DataError, match="expected float32"):
        EpisodeData(good.observations, good.actions.astype(np.float16))
    with pytest.raises(DataError, match="empty axis"):
        EpisodeData(good.observations[:, :0], good.actions[:, :0])


def test_the_package_imports_without_dm_control():
    code = (
        "import sys; sys.modules['dm_control'] = None\n"
        "import aimespec.data as d\n"
        "assert 'mujoco' not in sys.modules and 'dm_control.suite' not in sys.modules\n"
        "try:\n    d.action_dim_for('walker-walk')\nexcept d.DataError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'aimespec[dmc]'" in out.stdout


# --- the loader -----------------------------------------------------------------------------------


def test_batches_are_float_frames_in_unit_range_matching_the_episodes():
    data = make_data(n=6, t=10, a=4)
    batch = next(batches(data, batch_size=4, seq_len=5, seed=1))
    assert isinstance(batch, Batch)
    assert batch.observations.shape == (4, 5, 3, 8, 8) and batch.observations.dtype == torch.float32
    assert batch.actions.shape == (4, 5, 4) and batch.actions.dtype == torch.float32
    assert 0.0 <= batch.observations.min() and batch.observations.max() <= 1.0
    for row, (i, s) in enumerate(zip(batch.indices.tolist(), batch.starts.tolist(), strict=True)):
        assert 0 <= s <= 10 - 5
        expected = torch.from_numpy(data.observations[i, s : s + 5]).float() / 255.0
        torch.testing.assert_close(batch.observations[row], expected, rtol=0, atol=0)
        torch.testing.assert_close(batch.actions[row], torch.from_numpy(data.actions[i, s : s + 5]))
    assert batch.indices.dtype == batch.starts.dtype == batch.seeds.dtype == torch.int64


def test_fewer_episodes_than_the_batch_size_gives_batches_of_all_of_them():
    data = make_data(n=3, t=4)
    assert batch_size_for(data, 8) == 3
    epoch = list(batches(data, batch_size=8, seed=0))
    assert len(epoch) == 1 and epoch[0].observations.shape[0] == 3
    assert sorted(epoch[0].indices.tolist()) == [0, 1, 2]
    several = list(batches(data, batch_size=8, num_batches=5, seed=0))
    assert len(several) == 5 and all(sorted(b.indices.tolist()) == [0, 1, 2] for b in several)


def test_sampling_with_replacement_keeps_the_requested_batch_size():
    data = make_data(n=2, t=4)
    out = list(batches(data, batch_size=8, num_batches=3, replacement=True, seed=0))
    assert [b.observations.shape[0] for b in out] == [8, 8, 8]
    assert set(torch.cat([b.indices for b in out]).tolist()) == {0, 1}


def test_an_epoch_visits_each_episode_at_most_once_and_epochs_reshuffle():
    data = make_data(n=10, t=3)
    epoch = list(batches(data, batch_size=3, seed=4))
    assert len(epoch) == 3
    seen = torch.cat([b.indices for b in epoch]).tolist()
    assert len(set(seen)) == 9
    long = list(batches(data, batch_size=3, num_batches=12, seed=4))
    firsts = [torch.cat([b.indices for b in long[k : k + 3]]).tolist() for k in (0, 3, 6, 9)]
    assert all(len(set(f)) == 9 for f in firsts) and len({tuple(f) for f in firsts}) > 1
    ordered = list(batches(data, batch_size=5, shuffle=False))
    assert [b.indices.tolist() for b in ordered] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_time_crops_vary_and_a_full_length_request_starts_at_zero():
    data = make_data(n=4, t=12)
    starts = torch.cat([b.starts for b in batches(data, 4, seq_len=3, num_batches=20, seed=0)])
    assert starts.min() >= 0 and starts.max() <= 9 and len(set(starts.tolist())) > 5
    full = next(batches(data, 4, seed=0))
    assert full.observations.shape[1] == 12 and full.starts.tolist() == [0, 0, 0, 0]


def test_the_same_seed_gives_the_same_batches_and_another_seed_does_not():
    data = make_data(n=7, t=9)

    def run(seed):
        return list(batches(data, 3, seq_len=4, num_batches=4, seed=seed))

    a, b, c = run(11), run(11), run(12)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            assert torch.equal(u, v)
    assert any(
        not torch.equal(x.indices, y.indices) or not torch.equal(x.starts, y.starts) for x, y in zip(a, c, strict=True)
    )
    seeds = torch.cat([x.seeds for x in a])
    assert len(set(seeds.tolist())) == len(seeds) and seeds.min() >= 0


def test_bad_loader_requests_are_one_sentence():
    data = make_data(n=2, t=5)
    with pytest.raises(DataError, match="exceeds the episodes' length 5: collect longer episodes"):
        next(batches(data, 2, seq_len=6))
    with pytest.raises(DataError, match="batch size must be a positive integer"):
        next(batches(data, 0))
    with pytest.raises(DataError, match="sequence length must be a positive integer"):
        next(batches(data, 2, seq_len=0))


@given(
    n=st.integers(1, 6),
    t=st.integers(1, 8),
    b=st.integers(1, 9),
    crop=st.integers(1, 8),
    replacement=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_batch_shapes_for_any_request(n, t, b, crop, replacement, seed):
    data = make_data(n=n, t=t, a=2, size=4, rng_seed=seed % 7)
    seq_len = min(crop, t)
    out = list(batches(data, b, seq_len=seq_len, num_batches=2, replacement=replacement, seed=seed))
    rows = b if replacement else min(b, n)
    assert len(out) == 2
    for batch in out:
        assert batch.observations.shape == (rows, seq_len, 3, 4, 4)
        assert batch.actions.shape == (rows, seq_len, 2)
        assert ((batch.starts >= 0) & (batch.starts + seq_len <= t)).all()
        if not replacement:
            assert len(set(batch.indices.tolist())) == rows


def test_the_file_is_a_zip_of_plain_npy_arrays_only(tmp_path):
    path = make_data(n=1, t=2, task="cheetah-run").save(tmp_path / "c.npz")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["actions.npy", "metadata.npy", "observations.npy"]


def test_from_float_stores_frames_as_collect_does():
    obs = np.array([0.0, 0.5, 1.0, 1.2, -0.1], dtype=np.float32).reshape(1, 1, 1, 1, 5).repeat(3, axis=2)
    data = EpisodeData.from_float(obs, np.zeros((1, 1, 2)), task="synthetic")
    assert data.observations.dtype == np.uint8 and data.actions.dtype == np.float32
    assert data.observations[0, 0, 0, 0].tolist() == [0, 128, 255, 255, 0]  # x255 rounded, clipped to [0, 1]
    assert data.task == "synthetic"
