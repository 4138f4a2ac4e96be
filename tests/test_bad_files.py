"""Bad files, bad output paths and bad sizes: every one is one sentence and its exit code, nothing lost.

Output paths live in temporary folders only (a FIFO made with os.mkfifo stands for a device:
as root, an atomic rename would replace a real one). The numbered cases are issue 12's.
"""

import errno
import json
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from bad_input import cli, one_sentence

import aimespec.data._dmc as dmc
import aimespec.data._episodes as episodes
from aimespec import AimeConfig, UsageError
from aimespec.data import EpisodeData
from reference_model.synthetic import moving_shapes
from reference_model.train import train
from reference_model.train.checkpoint import CHECKPOINT, LOG, load_checkpoint

TINY = AimeConfig.small(sequence_length=4, batch_size=2)


def write_shapes(path: Path, n: int = 2, T: int = 4) -> Path:
    obs, act = moving_shapes(n, T, 32, 6, 0)
    return EpisodeData.from_float(obs, act, task="moving-shapes").save(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> dict[str, Path]:
    """One trained step: a real checkpoint and log to damage (copied per test)."""
    root = tmp_path_factory.mktemp("bad_train")
    data = write_shapes(root / "shapes.npz")
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY.to_dict()))
    out = root / "run"
    train(data, TINY, steps=1, out_dir=out, figure_every=0, checkpoint_every=0, progress=False)
    return {"data": data, "config": config, "run": out}


def copy_run(run_dir: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir(parents=True)
    for name in (CHECKPOINT, LOG):
        (out / name).write_bytes((run_dir["run"] / name).read_bytes())
    return out


def resume(run_dir: dict[str, Path], out: Path, *extra: str):
    return cli("train", "--data", str(run_dir["data"]), "--out", str(out), "--steps", "2", "--resume",
               "--figure-every", "0", *extra)


def flip(path: Path, n: int, seed: int, start: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for _ in range(n):
        i = rng.randrange(start, len(raw))
        raw[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(raw))


# --- 1, 6: output paths checked before any work ------------------------------------------------------
def test_1_collect_never_replaces_a_device_fifo_or_folder(tmp_path, monkeypatch):
    fifo = tmp_path / "device"
    os.mkfifo(fifo)
    started = []
    monkeypatch.setattr(dmc, "_load", lambda *a: started.append(a))  # no work may start
    line = one_sentence(cli("collect", "--env", "walker-walk", "--out", str(fifo)), 2)
    assert line == f"error: {fifo} is a FIFO (named pipe), not a regular file: give a file path for the episodes"
    assert fifo.exists() and not fifo.is_file() and not started
    one_sentence(cli("collect", "--env", "walker-walk", "--out", str(tmp_path)), 2, "is a folder")


def test_1_a_save_never_renames_over_a_non_regular_file(tmp_path):
    fifo = tmp_path / "device"
    os.mkfifo(fifo)
    obs, act = moving_shapes(1, 2, 32, 6, 0)
    with pytest.raises(UsageError, match="FIFO"):
        EpisodeData.from_float(obs, act).save(fifo)
    assert not fifo.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["device"]  # no temporary file left behind


def test_2_collect_into_a_folder_that_cannot_be_written_fails_before_recording(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # root writes anywhere: a read-only folder is simulated
        if dir is not None and Path(dir) == locked:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(dmc, "_load", lambda *a: pytest.fail("collection started"))
    line = one_sentence(cli("collect", "--env", "walker-walk", "--out", str(locked / "x.npz")), 2)
    assert line == f"error: cannot write the episodes in {locked} (Permission denied): choose a folder you can write to"


@pytest.mark.dmc
def test_2_collect_onto_a_full_disk_keeps_every_episode(tmp_path, monkeypatch):
    pytest.importorskip("dm_control")
    out = tmp_path / "walker.npz"
    real = episodes.replace_into

    def full(tmp, target, what="the output"):
        if Path(target).parent == tmp_path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tmp, target, what)

    monkeypatch.setattr(episodes, "replace_into", full)
    run = cli("collect", "--env", "walker-walk", "--episodes", "2", "--length", "2", "--size", "16",
              "--out", str(out))
    line = one_sentence(run, 2, "the disk is full", "the 2 episodes recorded were saved to")
    rescued = Path(line.split("saved to ")[1].split(" instead")[0])
    try:
        assert episodes.load_episodes(rescued).observations.shape == (2, 2, 3, 16, 16)
    finally:
        rescued.unlink()
    assert not out.exists()


@pytest.mark.dmc
def test_2_collection_that_stops_midway_saves_the_complete_episodes(tmp_path, monkeypatch):
    pytest.importorskip("dm_control")
    real, calls = dmc._render, []

    def render(*args):
        calls.append(1)
        if len(calls) > 3:  # episode 2 of 3 (length 2) breaks
            raise dmc.DataError("the renderer lost its context")
        return real(*args)

    monkeypatch.setattr(dmc, "_render", render)
    out = tmp_path / "walker.npz"
    run = cli("collect", "--env", "walker-walk", "--episodes", "3", "--length", "2", "--size", "16",
              "--out", str(out))
    one_sentence(run, 2, "collection stopped after 1 complete episode (the renderer lost its context)",
                 f"they were saved to {out}")
    assert episodes.load_episodes(out).observations.shape == (1, 2, 3, 16, 16)


def test_6_train_out_a_file_or_a_fifo_fails_before_any_work(run_dir, tmp_path):
    for bad, kind in ((tmp_path / "file", "a regular file"), (tmp_path / "fifo", "a FIFO (named pipe)")):
        bad.write_text("kept") if kind == "a regular file" else os.mkfifo(bad)
        run = cli("train", "--data", str(run_dir["data"]), "--config", str(run_dir["config"]), "--out", str(bad),
                  "--steps", "1")
        line = one_sentence(run, 2)
        assert line == f"error: {bad} is {kind}, not a folder: give a folder path for the training run"
    assert (tmp_path / "file").read_text() == "kept"
    inner = tmp_path / "run"
    inner.mkdir()
    os.mkfifo(inner / LOG)
    run = cli("train", "--data", str(run_dir["data"]), "--config", str(run_dir["config"]), "--out", str(inner),
              "--steps", "1")
    one_sentence(run, 2, f"{inner / LOG} is a FIFO (named pipe), not a regular file")


def test_6_train_onto_a_full_disk_is_one_sentence_and_keeps_the_checkpoint(run_dir, tmp_path, monkeypatch):
    import reference_model.train.checkpoint as ckpt

    out = copy_run(run_dir, tmp_path)
    before = (out / CHECKPOINT).read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / ".checkpoint.pt.tmp"))

    monkeypatch.setattr(ckpt.torch, "save", full)
    line = one_sentence(resume(run_dir, out), 2, "the disk is full")
    assert f"{out / CHECKPOINT} keeps the last checkpoint written" in line
    assert (out / CHECKPOINT).read_bytes() == before


# --- 3, 4, 6: checkpoints ------------------------------------------------------------------------
def test_3_a_checkpoint_with_flipped_bytes_never_resumes(run_dir, tmp_path):
    for seed in range(3):
        out = copy_run(run_dir, tmp_path / str(seed))
        flip(out / CHECKPOINT, 64, seed, start=len((out / CHECKPOINT).read_bytes()) // 4)
        line = one_sentence(resume(run_dir, out), 2)
        assert str(out / CHECKPOINT) in line
        assert "damaged" in line, line


def test_3_a_flipped_tensor_byte_is_caught_by_the_checksum(run_dir, tmp_path):
    """A change inside a tensor that leaves the zip readable (what an unchecked load resumes silently)."""
    out = copy_run(run_dir, tmp_path)
    path = out / CHECKPOINT
    with zipfile.ZipFile(path) as z:
        infos = {i.filename: i for i in z.infolist()}
        name = max((n for n in infos if "/data/" in n), key=lambda n: infos[n].file_size)
    raw = bytearray(path.read_bytes())
    head = infos[name].header_offset  # the local header's own name and extra (padding) lengths
    offset = head + 30 + int.from_bytes(raw[head + 26:head + 28], "little") + int.from_bytes(raw[head + 28:head + 30],
                                                                                              "little")
    raw[offset + 8] ^= 0x40  # torch stores entries uncompressed: this flips one weight's bits
    path.write_bytes(bytes(raw))
    with pytest.raises(UsageError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"the checkpoint {path} is damaged: its contents do not match the checksum")


def test_4_a_malicious_pickle_in_a_checkpoint_never_runs(run_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    out = tmp_path / "run"
    out.mkdir()
    with (out / CHECKPOINT).open("wb") as fh:
        torch.save({"format": "aimespec-checkpoint/2", "trainer": Payload(), "checksum": "x"}, fh)
    line = one_sentence(resume(run_dir, out), 2)
    assert line.startswith(f"error: refusing to load the checkpoint {out / CHECKPOINT}: it holds objects other")
    assert not marker.exists()
    (out / CHECKPOINT).write_bytes(pickle.dumps(Payload()))  # a bare pickle, not even a torch file
    one_sentence(resume(run_dir, out), 2)
    assert not marker.exists()


def test_6_checkpoints_with_missing_keys_other_shapes_or_no_checksum_are_one_sentence(run_dir, tmp_path):
    from reference_model.train.checkpoint import checksum

    state = torch.load(run_dir["run"] / CHECKPOINT, weights_only=True)
    body = {k: v for k, v in state.items() if k != "checksum"}
    missing = {k: v for k, v in body.items() if k != "rng"}
    shapes = {**body, "trainer": {**body["trainer"], "model": {
        k: torch.zeros(3, 3) if i == 0 else v for i, (k, v) in enumerate(body["trainer"]["model"].items())}}}
    cases = {
        "missing": ({**missing, "checksum": checksum(missing)}, "its 'rng' entry is missing or malformed"),
        "shapes": ({**shapes, "checksum": checksum(shapes)}, "does not fit the model its config builds"),
        "unchecked": (body, "no checksum"),
        "old": ({**body, "format": "aimespec-checkpoint/1"}, "format 'aimespec-checkpoint/1'"),
        "truncated": (None, "damaged or truncated"),
        "empty": (b"", "damaged or truncated"),
    }
    for name, (content, needle) in cases.items():
        out = copy_run(run_dir, tmp_path / name)
        if isinstance(content, dict):
            torch.save(content, out / CHECKPOINT)
        elif content is None:
            raw = (out / CHECKPOINT).read_bytes()
            (out / CHECKPOINT).write_bytes(raw[: len(raw) // 2])
        else:
            (out / CHECKPOINT).write_bytes(content)
        one_sentence(resume(run_dir, out), 2, needle)


def test_a_good_checkpoint_still_resumes(run_dir, tmp_path):
    out = copy_run(run_dir, tmp_path)
    run = resume(run_dir, out)
    assert run.code == 0, run
    assert [json.loads(line)["step"] for line in (out / LOG).read_text().splitlines()] == [1, 2]


def test_6_a_damaged_log_is_one_sentence_and_kept(run_dir, tmp_path):
    for name, content in (("binary", b"\xff\xfe\x00garbage\n"), ("middle", b'{"step": 1}\nnot json\n{"step": 2}\n')):
        out = copy_run(run_dir, tmp_path / name)
        (out / LOG).write_bytes(content)
        one_sentence(resume(run_dir, out), 2, f"the training log {out / LOG} is damaged")
        assert (out / LOG).read_bytes() == content
    out = copy_run(run_dir, tmp_path / "cut")  # a last line cut short by a crash is not damage
    (out / LOG).write_bytes((run_dir["run"] / LOG).read_bytes() + b'{"step": 2, "elb')
    assert resume(run_dir, out).code == 0


# --- 6: damaged data files ---------------------------------------------------------------------------
def test_6_a_bit_flipped_npz_is_one_sentence(run_dir, tmp_path):
    codes = set()
    for seed in range(12):
        bad = tmp_path / f"bad{seed}.npz"
        bad.write_bytes(run_dir["data"].read_bytes())
        flip(bad, 64, seed)
        run = cli("train", "--data", str(bad), "--config", str(run_dir["config"]), "--out", str(tmp_path / "o"),
                  "--steps", "1")
        if run.code != 0:  # a flip in a file's slack may leave it readable; any failure must be a sentence
            one_sentence(run, 2, str(bad))
        codes.add(run.code)
    assert 2 in codes


def test_6_a_fifo_as_data_file_does_not_block(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="is a FIFO"):
        episodes.load_episodes(fifo)


# --- 6, 9: bounds ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["spec", "--set", "latent_dim=1000000000"], "latent_dim: must be at most 1048576"),
    (["spec", "--set", "hidden_dim=" + "9" * 3000], "hidden_dim: must be at most 1048576"),
    (["spec", "--set", "vae_channels=" + ",".join(["8"] * 40)], "vae_channels: must hold at most 16"),
    (["spec", "--env", ""], "unknown dm_control task ''"),
    (["check", "--timeout", "inf"], "--timeout must be a finite positive number"),
    (["check", "--timeout", "nan"], "--timeout must be a finite positive number"),
    (["check", "--timeout", "0"], "--timeout must be a finite positive number"),
    (["trace", "--timeout", "-1"], "--timeout must be a finite positive number"),
    (["trace", "--timeout", "nan"], "--timeout must be a finite positive number"),
    (["trace", "--timeout", "0"], "--timeout must be a finite positive number"),
    (["check", "--seed", str(10**24)], "--seed must be an integer in [0, 2**63 - 1]"),
    (["check", "--examples", "1000000000"], "--examples must be an integer in [0, 512]"),
    (["trace", "--batch", "100000000"], "--batch must be an integer in [1, 1048576]"),
    (["trace", "--seq-len", "0"], "--seq-len must be an integer in [1, 1048576]"),
])
def test_6_9_out_of_bounds_options_are_one_sentence(args, needle):
    one_sentence(cli(*args), 2, needle)


def test_6_train_device_foo_is_one_sentence(run_dir, tmp_path):
    run = cli("train", "--data", str(run_dir["data"]), "--out", str(tmp_path / "o"), "--device", "foo")
    one_sentence(run, 2, "--device must be auto, cpu, cuda, cuda:N or mps, got 'foo'")
    assert not (tmp_path / "o").exists()


def test_collect_episodes_beyond_memory_is_one_sentence(tmp_path, monkeypatch):
    pytest.importorskip("dm_control")
    run = cli("collect", "--env", "walker-walk", "--episodes", "1000000000", "--out", str(tmp_path / "x.npz"))
    one_sentence(run, 2, "the observations [1000000000, 64, 3, 64, 64] would take", "record fewer")


# --- 10: --explain ---------------------------------------------------------------------------------------
def test_10_explain_a_number_past_the_int_string_limit():
    big = "7" * 5000
    run = cli("diagnose", "--explain", f"mat1 and mat2 shapes cannot be multiplied (128x{big} and 768x36)", "--json")
    assert run.code == 0, run
    document = json.loads(run.stdout)
    assert "1 number of more than 24 digits, no size of any config, not read" in document["explanation"]


def test_10_explain_a_megabyte_of_traceback_reads_its_end():
    rng = random.Random(0)
    frames = "".join(f'  File "/x/m{rng.randrange(10**6)}.py", line {i}, in f\n    y = g(x)\n' for i in range(25000))
    text = "Traceback (most recent call last):\n" + frames + (
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (128x512 and 768x36)\n")
    assert len(text) > 1_000_000
    run = cli("diagnose", "--explain", "-", "--json", input=text)
    assert run.code == 0, run
    document = json.loads(run.stdout)
    assert document["matches"][0]["error"] == 4
    assert "characters read" in document["explanation"]
    one_line = cli("diagnose", "--explain", "x" * 1_000_000, "--json")  # one long line: no quadratic regex
    assert one_line.code == 0, one_line


def test_every_command_says_bad_options_in_one_sentence(run_dir, tmp_path):
    data, out = str(run_dir["data"]), str(tmp_path / "out")
    rows = [
        (["collect", "--env", "", "--out", str(tmp_path / "x.npz")], "unknown dm_control task ''"),
        (["collect", "--env", "walker-walk", "--size", "0", "--out", str(tmp_path / "x.npz")], "--size"),
        (["train", "--data", data, "--out", out, "--seed", str(10**24)], "--seed"),
        (["train", "--data", data, "--out", out, "--set", "latent_dim=1000000000"], "latent_dim: must be at most"),
        (["train", "--data", str(tmp_path / "missing.npz"), "--out", out], "does not exist"),
        (["train", "--data", data, "--out", out, "--env", ""], "unknown dm_control task ''"),
        (["diagnose", "9"], "errors 1 to 5"),
        (["check", str(tmp_path)], "is a directory"),
        (["trace", str(tmp_path / "missing.py")], "does not exist"),
        (["spec", "--config", str(tmp_path)], "is not a readable file"),
    ]
    for args, needle in rows:
        one_sentence(cli(*args), 2, needle)
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.npz").exists()
