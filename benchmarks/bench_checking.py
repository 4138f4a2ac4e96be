"""The cost of runtime checking on one reference-model forward: checked (`full`, `shapes`) over
unchecked (`off`), at the small and the default config. Prints one JSON document.

    python benchmarks/bench_checking.py                      # both configs
    python benchmarks/bench_checking.py --configs small --reps 241

Measured, interleaved: each rep runs every mode once, in an order that rotates from rep to rep,
so that drift on a shared machine favours no mode; the ratio is of the modes' medians, with a 90%
bootstrap interval over the reps (and, as a second view, of their minima, the least disturbed
runs). Replayed: every checked call of one forward is recorded, then held to its contract again
and timed alone: the checking work itself, free of the model's FLOPs and of most of the machine's
noise; `replayed_ratio` = (off + work) / off.
"""

import argparse
import json
import random
import statistics
import sys
import time

import torch

import aimespec
from aimespec import AimeConfig, checking, observing
from aimespec.core.validate import CallChecker
from reference_model import AimeWorldModel
from reference_model.synthetic import moving_shapes

MODES = ("full", "shapes", "off")
DEFAULT_REPS = {"small": 121, "default": 9}  # small: at 41 reps the ratio moved by +-0.01 from run to run
BOOTSTRAP = 2000  # resamples of the reps for the ratio's interval


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def replayed_work_s(model: AimeWorldModel, cfg: AimeConfig, obs: torch.Tensor, actions: torch.Tensor,
                    reps: int = 7) -> dict[str, float | int]:
    """Record every checked call of one forward, then time holding them to their contracts again."""
    calls = []
    with checking("full"), observing(lambda c, a, r: calls.append((c, a, r))), torch.no_grad():
        model.forward_sequence(obs, actions)

    def replay(values: bool) -> None:
        for contract, arguments, result in calls:
            checker = CallChecker(contract, cfg, values=values)
            checker.check_inputs(arguments)
            checker.check_outputs(result)

    replay(True)
    return {
        "checked_calls_per_forward": len(calls),
        "full_s": min(timed(lambda: replay(True)) for _ in range(reps)),
        "shapes_s": min(timed(lambda: replay(False)) for _ in range(reps)),
    }


def ratio_interval(times: dict[str, list[float]], mode: str, seed: int = 0) -> list[float]:
    """A 90% bootstrap interval of median(mode) / median(off): whole reps are resampled, so a mode's
    forward and the off forward it ran beside stay together (drift moves both)."""
    rng = random.Random(seed)
    n = len(times["off"])
    ratios = []
    for _ in range(BOOTSTRAP):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(statistics.median(times[mode][i] for i in picks)
                      / statistics.median(times["off"][i] for i in picks))
    ratios.sort()
    return [ratios[int(0.05 * BOOTSTRAP)], ratios[int(0.95 * BOOTSTRAP) - 1]]


def measure(name: str, reps: int) -> dict[str, object]:
    cfg = AimeConfig.small() if name == "small" else AimeConfig()
    torch.manual_seed(0)
    obs, actions = moving_shapes(cfg.batch_size, cfg.sequence_length, cfg.input_dim, cfg.action_dim, seed=0)
    model = AimeWorldModel(cfg).eval()

    def forward() -> None:
        with torch.no_grad():
            model.forward_sequence(obs, actions)

    for mode in MODES:  # warm-up: allocator, caches, the checker's per-config tables
        with checking(mode):
            forward()
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for rep in range(reps):
        order = MODES[rep % len(MODES):] + MODES[:rep % len(MODES)]
        for mode in order:
            with checking(mode):
                times[mode].append(timed(forward))
    med = {m: statistics.median(v) for m, v in times.items()}
    low = {m: min(v) for m, v in times.items()}
    work = replayed_work_s(model, cfg, obs, actions)
    return {
        "batch": cfg.batch_size, "seq_len": cfg.sequence_length, "reps": reps,
        "forward_median_s": med,
        "forward_min_s": low,
        "ratio_of_medians": {f"{m}/off": med[m] / med["off"] for m in ("full", "shapes")},
        "ratio_of_medians_90": {f"{m}/off": ratio_interval(times, m) for m in ("full", "shapes")},
        "ratio_of_minima": {f"{m}/off": low[m] / low["off"] for m in ("full", "shapes")},
        "checking_work": work,
        "replayed_ratio": {f"{m}/off": (med["off"] + work[f"{m}_s"]) / med["off"] for m in ("full", "shapes")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=("small", "default"), default=["small", "default"])
    parser.add_argument("--reps", type=int, default=None, help="interleaved reps (default: 121 small, 9 default)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    doc: dict[str, object] = {"benchmark": "checking", "version": aimespec.__version__,
                              "threads": torch.get_num_threads()}
    for name in args.configs:
        doc[name] = measure(name, args.reps or DEFAULT_REPS[name])
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
