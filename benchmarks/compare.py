"""Before and after, in one run: the waits of issue 13 for another checkout of aimespec beside this one.

    python benchmarks/compare.py --before CHECKOUT [--reps 3] [--no-checking]

Whole processes as a user sees them (`aimespec check` of the reference model and of
examples/user_model.py, `aimespec diagnose --explain`, and a bare `python -c "import torch"`),
the two checkouts interleaved rep by rep so that a busy machine slows both alike; wall and CPU
(user + system) seconds, medians. Then bench_checking.py (checked / unchecked forward) on each.
The other checkout runs from its own folder with `PYTHONPATH` pointing at it, this one's
installed packages beneath.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXPLAIN = "RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x768 and 512x1080)"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    start, start_cpu = time.perf_counter(), _cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-1000:]}")
    return time.perf_counter() - start, _cpu() - start_cpu


def _side(tree: Path) -> tuple[dict[str, str], Path]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return env, tree


def processes(before: Path, reps: int, no_probes: bool = False) -> dict[str, Any]:
    sides = {"before": _side(before), "after": _side(ROOT)}
    aimespec = [sys.executable, "-m", "aimespec.cli"]
    runs = {
        "check_reference": [*aimespec, "check", "--json"],
        "check_user_model": [*aimespec, "check", "examples/user_model.py", "--json"],
        "explain": [*aimespec, "diagnose", "--explain", EXPLAIN, "--json"],
    }
    if no_probes:  # this checkout's check without the config probe (a second whole check; probes came after)
        runs["check_reference_no_probes"] = [*runs["check_reference"], "--no-vary-config"]
        runs["check_user_model_no_probes"] = [*runs["check_user_model"], "--no-vary-config"]
    raw: dict[str, dict[str, list[tuple[float, float]]]] = {s: {k: [] for k in runs} for s in sides}
    torch_runs: list[tuple[float, float]] = []
    for rep in range(reps):
        torch_runs.append(_timed([sys.executable, "-c", "import torch"], dict(os.environ), ROOT))
        order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
        for name, cmd in runs.items():
            for side in order:
                if side == "before" and name.endswith("_no_probes"):
                    continue  # the old code has no --no-vary-config (nor probes)
                env, cwd = sides[side]
                raw[side][name].append(_timed(cmd, env, cwd))
    torch_wall = statistics.median(w for w, _ in torch_runs)
    out: dict[str, Any] = {"reps": reps, "import_torch_process_s": torch_wall,
                           "import_torch_process_cpu_s": statistics.median(c for _, c in torch_runs)}
    for side, figures in raw.items():
        out[side] = {}
        for name, samples in figures.items():
            if not samples:
                continue
            wall = statistics.median(w for w, _ in samples)
            out[side][f"{name}_process_s"] = wall
            out[side][f"{name}_process_cpu_s"] = statistics.median(c for _, c in samples)
            out[side][f"{name}_over_torch"] = wall / torch_wall
    return out


def checking(before: Path) -> dict[str, Any]:
    out = {}
    for side, tree in (("before", before), ("after", ROOT)):
        env, cwd = _side(tree)
        done = subprocess.run([sys.executable, str(HERE / "bench_checking.py")], capture_output=True, text=True,
                              env=env, cwd=cwd, check=False)
        out[side] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-1000:]}
    return out


def commit(tree: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, type=Path, help="a checkout of the code before")
    parser.add_argument("--before-commit", help="its commit, when the checkout is no git tree")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-checking", action="store_true", help="skip bench_checking.py (minutes)")
    parser.add_argument("--no-probes-too", action="store_true",
                        help="also time this checkout's check with --no-vary-config (no config probe)")
    args = parser.parse_args()
    before = args.before.resolve()
    doc: dict[str, Any] = {"benchmark": "before/after", "before_commit": args.before_commit or commit(before),
                           "after_commit": commit(ROOT), "threads": os.environ.get("OMP_NUM_THREADS"),
                           "processes": processes(before, args.reps, args.no_probes_too)}
    if not args.no_checking:
        doc["checking"] = checking(before)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
