"""The commands users wait for: `aimespec check` (reference model, example user model, meta vs real),
`diagnose --explain`, and dm_control collection frames per second. Prints one JSON document.

    python benchmarks/bench_cli.py [--reps 3] [--no-dmc] [--processes-only]
    python benchmarks/bench_cli.py --probes-cost [--before CHECKOUT] [--reps 3]

Each figure is the median wall time of `--reps` runs. `*_process_s` are whole processes
(`python -m aimespec.cli ...`, imports included), as a user sees them, beside a bare
`python -c "import torch"` timed in the same run (`import_torch_process_s`; the `*_over_torch`
ratios divide by it); `check_*_engine_s` time the library call alone in this process.

`--probes-cost` measures what the behavioural probes cost at the default config, runs
interleaved so that a busy machine slows both sides alike: `check` with and without probes
in this process (`*_engine_no_probes_s` is the engine as it was before them), and with
`--before CHECKOUT` (a checkout of the code before the probes) whole `aimespec check`
processes of that checkout beside this one's; `*_probes_ratio` divides the two.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aimespec
from aimespec import AimeConfig

ROOT = Path(__file__).resolve().parent.parent
SEED_ERRORS = [
    "RuntimeError: Expected input batch_size (128) to match target batch_size (8)",
    "RuntimeError: The size of tensor a (21) must match the size of tensor b (64) at non-singleton dimension 2",
    "RuntimeError: shape '[8, 16, 8, 8]' is invalid for input of size 1024",
    "RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x768 and 512x1080)",
    "RuntimeError: Expected 3D tensor [B, N, D], got 4D [B, C, H, W]",
]


def median_time(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_process(fn, reps: int) -> tuple[float, float]:
    """Median wall and median CPU (user + system) seconds of `reps` runs of a subprocess."""
    wall, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), children_cpu_s()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(children_cpu_s() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def process(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "aimespec.cli", *args], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"aimespec {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")


def bare_import_torch() -> None:
    subprocess.run([sys.executable, "-c", "import torch"], check=True)


def process_figures(doc: dict[str, object], user: str, reps: int) -> None:
    """Whole processes as a user waits for them, and a bare torch import in the same run."""
    process("diagnose", "--explain", SEED_ERRORS[3], "--json")  # warm the file cache
    runs = {
        "import_torch": bare_import_torch,
        "check_reference": lambda: process("check", "--json"),
        "check_user_model": lambda: process("check", user, "--json"),
        "explain": lambda: process("diagnose", "--explain", SEED_ERRORS[3], "--json"),
    }
    for name, fn in runs.items():
        doc[f"{name}_process_s"], doc[f"{name}_process_cpu_s"] = median_process(fn, reps)
    for name in list(runs)[1:]:
        doc[f"{name}_over_torch"] = doc[f"{name}_process_s"] / doc["import_torch_process_s"]  # type: ignore[operator]


def isolation_figures(doc: dict[str, object], user: str, reps: int) -> None:
    """What running the model in a worker process costs: an empty round trip (fork, heartbeat, pickle back,
    wait) and the example user model's check at the small config, isolated against in-process.
    Isolated runs come first: once this process has used torch's thread pool a worker runs single-threaded."""
    from aimespec.commands.check import check
    from aimespec.runtime.worker import isolated, mark_fresh

    mark_fresh()
    small = AimeConfig.small()
    doc["worker_round_trip_s"] = median_time(lambda: isolated(lambda: None, timeout=20.0), max(reps, 5))
    check(user, small)  # warm
    doc["check_user_model_small_isolated_s"] = median_time(lambda: check(user, small), reps)
    check(user, small, isolate=False)
    doc["check_user_model_small_in_process_s"] = median_time(lambda: check(user, small, isolate=False), reps)
    doc["isolation_over_in_process"] = (doc["check_user_model_small_isolated_s"]  # type: ignore[operator]
                                        / doc["check_user_model_small_in_process_s"])


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def probes_cost(doc: dict[str, object], user: str, reps: int, before: str | None) -> None:
    """Probes on vs off (and, with `before`, the old code's processes), interleaved, at the default config."""
    import os

    from aimespec.commands.check import check

    cfg = AimeConfig()
    for name, path in (("reference", None), ("user_model", user)):
        check(path, cfg)  # warm imports and caches
        off, on = [], []
        for _ in range(reps):
            off.append(_timed(lambda path=path: check(path, cfg, probes=False)))
            on.append(_timed(lambda path=path: check(path, cfg)))
        doc[f"check_{name}_engine_no_probes_s"] = statistics.median(off)
        doc[f"check_{name}_engine_s"] = statistics.median(on)
        doc[f"check_{name}_engine_probes_ratio"] = statistics.median(on) / statistics.median(off)
    if before is None:
        return
    old_env = {**os.environ, "PYTHONPATH": before}

    def run(env: dict[str, str] | None, *args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "aimespec.cli", *args], capture_output=True, text=True,
                              check=False, env=env, cwd=before if env else None)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"aimespec {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")

    for name, args in (("reference", ("check", "--json")), ("user_model", ("check", user, "--json"))):
        old, new = [], []
        for _ in range(reps):
            old.append(_timed(lambda args=args: run(old_env, *args)))
            new.append(_timed(lambda args=args: run(None, *args)))
        doc[f"check_{name}_process_before_s"] = statistics.median(old)
        doc[f"check_{name}_process_s"] = statistics.median(new)
        doc[f"check_{name}_process_probes_ratio"] = statistics.median(new) / statistics.median(old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-dmc", action="store_true", help="skip the dm_control collection figure")
    parser.add_argument("--processes-only", action="store_true",
                        help="only the whole-process figures (no in-process engine timings, no dm_control)")
    parser.add_argument("--isolation-only", action="store_true",
                        help="only what the worker process costs (a round trip; check isolated vs in-process)")
    parser.add_argument("--probes-cost", action="store_true",
                        help="only what the behavioural probes cost (check with and without them, interleaved)")
    parser.add_argument("--before", metavar="CHECKOUT", help="with --probes-cost: a checkout of the code before them")
    args = parser.parse_args()
    user = str(ROOT / "examples" / "user_model.py")
    doc: dict[str, object] = {"benchmark": "cli", "version": aimespec.__version__, "reps": args.reps}
    if args.probes_cost:
        doc["benchmark"] = "cli-probes-cost"
        probes_cost(doc, user, args.reps, args.before)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if args.isolation_only:
        isolation_figures(doc, user, args.reps)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    process_figures(doc, user, args.reps)  # first: a fresh machine state, no engine work in this process yet
    if args.processes_only:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return

    from aimespec.commands.check import check
    from aimespec.explain.engine import explain

    cfg = AimeConfig()
    check(None, cfg)  # warm imports and caches
    doc["check_reference_engine_s"] = median_time(lambda: check(None, cfg), args.reps)
    doc["check_reference_engine_no_meta_s"] = median_time(lambda: check(None, cfg, meta=False), args.reps)
    doc["check_user_model_engine_s"] = median_time(lambda: check(user, cfg), args.reps)
    doc["explain_per_message_s"] = median_time(lambda: [explain(t, cfg) for t in SEED_ERRORS], args.reps) / len(
        SEED_ERRORS)
    doc["explain_top_match"] = [explain(t, cfg).matches[0].error for t in SEED_ERRORS]

    if not args.no_dmc:
        from aimespec.data import collect

        frames, length = 4 * 50, 50
        collect("walker-walk", 1, 2, seed=0)  # warm the renderer
        elapsed = median_time(lambda: collect("walker-walk", 4, length, seed=0), 1)
        doc["collect_walker_fps"] = frames / elapsed
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            process("collect", "--env", "walker-walk", "--episodes", "4", "--length", "50", "--out",
                    str(Path(tmp) / "w.npz"))
            doc["collect_walker_process_fps"] = frames / (time.perf_counter() - start)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
