"""Reference model speed: train step and forward per checking mode, the cost of checking, RGB vs
a summed-loss step, achieved FLOP/s against a large matmul, peak memory. Prints one JSON document.

    python benchmarks/bench_model.py                 # the default config, B=8, T=16
    python benchmarks/bench_model.py --small --reps 5
    python benchmarks/bench_model.py --train-only    # only the training step's figures (below)

The training step (`train_step`): an RGB step balanced at the parameters (the seed's exact
method: four task backward passes) and at the outputs (approximate: one backward pass), each
against a summed-loss step (one backward of the four losses' sum), interleaved; FLOP/s of
each against the same run's 2048x2048 matmul; and the peak RSS of one step of each, each in
a fresh process (`ru_maxrss` is a process's high-water mark: one process cannot tell two
methods apart).

Two views of the cost of checking:
- measured: wall-clock medians per mode, modes interleaved (full, shapes, off, full, ...) so that
  drift on a shared machine does not favour one of them;
- replayed: every checked call of one forward is recorded, then its arguments and results are
  held to their contracts again and timed alone. This is the checking work itself, free of the
  machine's noise; `estimated_ratio` = (off step + that work) / off step.
"""

import argparse
import json
import platform
import resource
import statistics
import sys
import time

import torch
from bench_checking import replayed_work_s  # the one replay of the checking work (this folder)
from torch.utils.flop_counter import FlopCounterMode

import aimespec
from aimespec import AimeConfig, checking
from reference_model import AimeWorldModel, Trainer
from reference_model.synthetic import moving_shapes
from reference_model.trainer import BALANCE_AT

MODES = ("full", "shapes", "off")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_flop_per_s(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b) for _ in range(reps))


def summed_loss_step(trainer: Trainer, obs: torch.Tensor, actions: torch.Tensor) -> None:
    """The baseline: one backward of the four task losses' sum, clipped, an Adam step."""
    trainer.model.train()
    _, losses = trainer.forward(obs, actions)
    trainer.optimizer.zero_grad(set_to_none=True)
    losses.stacked().sum().backward()
    torch.nn.utils.clip_grad_norm_(trainer.params, trainer.cfg.grad_clip)
    trainer.optimizer.step()


STEPS = (*BALANCE_AT, "summed")  # "parameters", "outputs", "summed"


def one_step(kind: str, trainer: Trainer, obs: torch.Tensor, actions: torch.Tensor) -> None:
    """One training step of `kind`: RGB balanced at the parameters or at the outputs, or summed."""
    if kind == "summed":
        summed_loss_step(trainer, obs, actions)
        return
    trainer.balance_at = kind  # type: ignore[assignment]
    trainer.step(obs, actions)


def peak_rss_mib(small: bool, kind: str, threads: int) -> float:
    """The peak RSS of building the model and running one `kind` step, in a fresh process."""
    import subprocess

    args = [sys.executable, __file__, "--peak-rss", kind, "--threads", str(threads), *(["--small"] if small else [])]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout)["peak_rss_mib"])


def train_step_figures(cfg: AimeConfig, small: bool, reps: int, threads: int) -> dict:
    """Each kind of step timed (interleaved medians), its FLOPs counted once, its peak RSS in a fresh process."""
    torch.manual_seed(0)
    obs, actions = moving_shapes(cfg.batch_size, cfg.sequence_length, cfg.input_dim, cfg.action_dim, seed=0)
    trainer = Trainer(AimeWorldModel(cfg), cfg)
    times: dict[str, list[float]] = {kind: [] for kind in STEPS}
    flops: dict[str, int] = {}
    with checking("off"):
        for kind in STEPS:  # warm-up, and the FLOP count of each kind
            with FlopCounterMode(display=False) as counter:
                one_step(kind, trainer, obs, actions)
            flops[kind] = counter.get_total_flops()
        for _ in range(reps):
            for kind in STEPS:
                times[kind].append(timed(lambda kind=kind: one_step(kind, trainer, obs, actions)))
    med = {kind: statistics.median(v) for kind, v in times.items()}
    matmul = matmul_flop_per_s()
    rss = {kind: peak_rss_mib(small, kind, threads) for kind in STEPS}
    return {
        "step_s": med,
        "rgb/summed": {kind: med[kind] / med["summed"] for kind in BALANCE_AT},
        # the step's FLOPs over the summed step's: what rgb/summed would be at equal FLOP/s. The exact
        # method needs one backward pass through the shared layers per task (a task gradient is its own
        # vector-Jacobian product; batching them does not remove FLOPs), so this is its floor.
        "flops/summed": {kind: flops[kind] / flops["summed"] for kind in BALANCE_AT},
        "flops": flops,
        "flop_per_s": {kind: flops[kind] / med[kind] for kind in STEPS},
        "matmul_flop_per_s": matmul,
        "fraction_of_matmul": {kind: flops[kind] / med[kind] / matmul for kind in STEPS},
        "peak_rss_mib": rss,
        "raw_s": times,
    }


def peak_rss_child(cfg: AimeConfig, kind: str) -> None:
    torch.manual_seed(0)
    obs, actions = moving_shapes(cfg.batch_size, cfg.sequence_length, cfg.input_dim, cfg.action_dim, seed=0)
    trainer = Trainer(AimeWorldModel(cfg), cfg)
    with checking("off"):
        one_step(kind, trainer, obs, actions)
    json.dump({"kind": kind, "peak_rss_mib": own_peak_rss_mib()}, sys.stdout)


def own_peak_rss_mib() -> float:
    """This process's own high-water mark: VmHWM belongs to the address space, which exec replaces
    (`ru_maxrss` is carried over fork and exec: a child started by a large parent reports the parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="AimeConfig.small() instead of the default config")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions per mode")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--train-only", action="store_true", help="only the training step's figures")
    parser.add_argument("--peak-rss", choices=STEPS, help=argparse.SUPPRESS)  # the child of peak_rss_mib
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = AimeConfig.small() if args.small else AimeConfig()
    if args.peak_rss:
        peak_rss_child(cfg, args.peak_rss)
        return
    header = {
        "benchmark": "reference_model", "version": aimespec.__version__, "config": "small" if args.small else "default",
        "batch": cfg.batch_size, "seq_len": cfg.sequence_length, "threads": torch.get_num_threads(), "reps": args.reps,
        "torch": torch.__version__, "python": platform.python_version(),
    }
    if args.train_only:
        json.dump({**header, "train_step": train_step_figures(cfg, args.small, args.reps, args.threads)},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    B, T = cfg.batch_size, cfg.sequence_length
    obs, actions = moving_shapes(B, T, cfg.input_dim, cfg.action_dim, seed=0)
    model = AimeWorldModel(cfg)
    trainer = Trainer(model, cfg)

    def forward() -> None:
        with torch.no_grad():
            model.forward_sequence(obs, actions)

    def step() -> None:
        trainer.step(obs, actions)

    with checking("off"):  # warm-up: allocator, caches
        step()
        forward()
    times = {kind: {m: [] for m in MODES} for kind in ("step", "forward")}
    for _ in range(args.reps):
        for mode in MODES:
            with checking(mode):
                times["forward"][mode].append(timed(forward))
                times["step"][mode].append(timed(step))
    med = {kind: {m: statistics.median(v) for m, v in per.items()} for kind, per in times.items()}

    with checking("off"):
        summed = statistics.median(timed(lambda: summed_loss_step(trainer, obs, actions)) for _ in range(args.reps))
        with FlopCounterMode(display=False) as counter:
            step()
    flops = counter.get_total_flops()
    replay = replayed_work_s(model, cfg, obs, actions, reps=5)
    step_off, fwd_off = med["step"]["off"], med["forward"]["off"]
    peak = matmul_flop_per_s()

    doc = {
        "benchmark": "reference_model",
        "version": aimespec.__version__,
        "config": "small" if args.small else "default",
        "batch": B, "seq_len": T, "threads": torch.get_num_threads(), "reps": args.reps,
        "torch": torch.__version__, "python": platform.python_version(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_step_s": med["step"],
        "forward_s": med["forward"],
        "measured_ratio": {
            "step full/off": med["step"]["full"] / step_off, "step shapes/off": med["step"]["shapes"] / step_off,
            "forward full/off": med["forward"]["full"] / fwd_off,
            "forward shapes/off": med["forward"]["shapes"] / fwd_off,
        },
        "checking_work": replay,
        "estimated_ratio": {
            "step full/off": (step_off + replay["full_s"]) / step_off,
            "step shapes/off": (step_off + replay["shapes_s"]) / step_off,
            "forward full/off": (fwd_off + replay["full_s"]) / fwd_off,
            "forward shapes/off": (fwd_off + replay["shapes_s"]) / fwd_off,
        },
        "rgb_step_s": step_off,
        "summed_loss_step_s": summed,
        "rgb/summed": step_off / summed,
        "train_step_flops": flops,
        "train_step_flop_per_s": flops / step_off,
        "matmul_flop_per_s": peak,
        "train_step_fraction_of_matmul": flops / step_off / peak,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "raw_s": times,
        "train_step": train_step_figures(cfg, args.small, args.reps, args.threads),
    }
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
