"""Multi-process training: 2 CPU processes under torchrun (gloo) end where one process on the whole batch ends."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from aimespec import AimeConfig, UsageError
from aimespec.data import EpisodeData
from reference_model.losses import TASKS
from reference_model.synthetic import moving_shapes
from reference_model.train import distributed as ddp
from reference_model.train import train
from reference_model.world import build_model

# 3 episodes, batch_size 4: global batches of 3 rows, split 2 + 1 (the reducer weights the ranks)
CFG = AimeConfig.small(sequence_length=4)
STEPS = 3
# Adam turns a gradient that is zero up to round-off (a bias in front of a normalisation, a shift
# before a softmax) into a +-lr step whose sign is the round-off's: such elements are only held to
# stay within 2 lr a step of each other. Every other element must agree to ATOL / rtol 1e-4:
# 3e-5 is 15% of one Adam step (lr 2e-4); the sign-random steps above perturb the next steps'
# real gradients a little (measured: at most 1.3e-5 after 3 steps).
ROUNDOFF_GRAD = 1e-7
ATOL = 3e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gradient_rms(optimizer_state: dict, names: list[str], step: int) -> dict[str, torch.Tensor]:
    """Each element's RMS gradient over the run, from Adam's second moment."""
    return {name: (optimizer_state["state"][i]["exp_avg_sq"] / (1 - 0.999**step)).sqrt()
            for i, name in enumerate(names)}


def test_shards_cover_the_batch_and_differ_by_at_most_one_row():
    for rows, world in [(3, 2), (8, 2), (7, 3), (4, 4)]:
        parts = [ddp.shard(ddp.Distributed(rank=r, world_size=world), rows) for r in range(world)]
        assert [i for p in parts for i in range(rows)[p]] == list(range(rows))
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
    with pytest.raises(UsageError, match="a batch of 1 rows cannot be split over 2 processes"):
        ddp.shard(ddp.Distributed(rank=0, world_size=2), 1)


def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    obs, act = moving_shapes(3, 6, CFG.input_dim, CFG.action_dim, seed=4)
    data = EpisodeData.from_float(obs, act).save(tmp_path / "shapes.npz")
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(CFG.to_dict()))
    two = tmp_path / "two"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "aimespec.cli", "train", "--data", str(data), "--config", str(config), "--steps", str(STEPS),
        "--out", str(two), "--deterministic", "--seed", "7", "--figure-every", "0", "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(f"trained steps 1..{STEPS} on 2 processes") == 1  # rank 0 alone speaks

    one = train(data, CFG, steps=STEPS, out_dir=tmp_path / "one", deterministic=True, seed=7, figure_every=0,
                progress=False, device="cpu")
    assert one.world_size == 1 and one.step == STEPS

    logs = [[json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
            for out in (two, tmp_path / "one")]
    assert [r["step"] for r in logs[0]] == list(range(1, STEPS + 1))  # one log, written once
    for multi, single in zip(*logs, strict=True):
        assert multi["rows"] == single["rows"] == 3
        for key in (*TASKS, "reconstruction", "kl_z", "grad_norm", "discriminator"):
            assert multi[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), (multi["step"], key)

    a = torch.load(two / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == STEPS and a["world_size"] == 2
    model = build_model(CFG)
    disc_names = [f"discriminator.{n}" for n, _ in model.discriminator.named_parameters()]
    gen_names = [n for n, _ in model.named_parameters() if n not in disc_names]
    rms = {**gradient_rms(b["trainer"]["optimizer"], gen_names, STEPS),
           **gradient_rms(b["trainer"]["disc_optimizer"], disc_names, STEPS)}
    torch.manual_seed(7)
    initial = build_model(CFG).state_dict()
    worst, compared, moved = 0.0, 0, 0.0
    for name, grad in rms.items():
        pa, pb = a["trainer"]["model"][name], b["trainer"]["model"][name]
        real = grad > ROUNDOFF_GRAD
        torch.testing.assert_close(pa[real], pb[real], atol=ATOL, rtol=1e-4, msg=name)
        assert (pa - pb).abs().max() <= 2 * STEPS * CFG.learning_rate * 1.01, name
        worst = max(worst, float((pa[real] - pb[real]).abs().max()) if real.any() else 0.0)
        compared += int(real.sum())
        moved = max(moved, float((pb - initial[name]).abs().max()))
    total = sum(g.numel() for g in rms.values())
    print(f"max |parameter difference| over {compared}/{total} elements with a real gradient: {worst:.3g}")
    assert compared > 0.9 * total
    assert moved > 10 * 1e-5  # training moved the parameters: the equality above is not trivial


NAN_ON_RANK_1 = """
import os, sys
import reference_model.trainer as trainer_module
from aimespec import AimeConfig
from reference_model.train import TrainingStopped, train

real, calls = trainer_module.compute_losses, [0]

def compute_losses(out, observations, discriminator):  # rank 1 alone sees a NaN VQ loss at step 3
    losses = real(out, observations, discriminator)
    calls[0] += 1
    if calls[0] == 3 and os.environ["RANK"] == "1":
        losses.terms["vq"] = losses.terms["vq"] * float("nan")
        losses.tasks["perceiver"] = losses.tasks["perceiver"] + losses.terms["vq"]
    return losses

trainer_module.compute_losses = compute_losses
try:
    train(sys.argv[1], AimeConfig.from_file(sys.argv[2]), steps=5, out_dir=sys.argv[3], progress=False,
          figure_every=0, device="cpu")
except TrainingStopped as stopped:
    sys.stdout.write(f"rank {os.environ['RANK']}: {stopped}\\n")  # one write: lines of two ranks never interleave
    sys.stdout.flush()
    sys.exit(1)
"""


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step_without_hanging(tmp_path):
    obs, act = moving_shapes(4, 4, CFG.input_dim, CFG.action_dim, seed=1)
    data = EpisodeData.from_float(obs, act).save(tmp_path / "shapes.npz")
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(CFG.to_dict()))
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               str(script), str(data), str(config), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode != 0
    said = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    sentence = "training stopped at step 3: loss term vq is NaN (so is perceiver); the last good checkpoint"
    assert len(said) == 2 and all(sentence in line and line.endswith("(step 2) is kept.") for line in said), said
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 2
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
