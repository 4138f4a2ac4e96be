"""Every benchmark in one JSON document, and issue 13's figures against their goals: the README's table
is read from it.

    python benchmarks/run_all.py                    # everything (the model at the default config: minutes)
    python benchmarks/run_all.py --small            # the model figures at AimeConfig.small()
    python benchmarks/run_all.py --only cli checking

`goals` lists each figure the issue names with its value, its goal and whether it is met; a figure a
section did not produce (skipped, or renamed there) is null and says so. Each section runs in a process
of its own, one after the other (the machine's cores are not shared between them).
"""

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECTIONS = ("cli", "checking", "model")


@dataclass(frozen=True)
class Goal:
    figure: str
    path: tuple[str, ...]  # where the value is in the document
    goal: float
    at_most: bool = True  # the value must be <= goal (else >=)


GOALS = (
    Goal("aimespec check, reference model, default config: whole process, s",
         ("cli", "check_reference_process_s"), 5.0),
    Goal("... over a bare `python -c 'import torch'` in the same run", ("cli", "check_reference_over_torch"), 3.0),
    Goal("aimespec check examples/user_model.py, default config: whole process, s",
         ("cli", "check_user_model_process_s"), 5.0),
    Goal("aimespec diagnose --explain TEXT: whole process, s", ("cli", "explain_process_s"), 0.5),
    Goal("checked / unchecked forward, small config (interleaved medians)",
         ("checking", "small", "ratio_of_medians", "full/off"), 1.05),
    Goal("checked / unchecked forward, default config (interleaved medians)",
         ("checking", "default", "ratio_of_medians", "full/off"), 1.01),
    Goal("RGB step (exact, balanced at the parameters) / summed-loss step",
         ("model", "train_step", "rgb/summed", "parameters"), 1.5),
    Goal("... its FLOPs over the summed step's (the exact method's floor at equal FLOP/s: one backward per task)",
         ("model", "train_step", "flops/summed", "parameters"), 1.5),
    Goal("RGB step (approximate, balanced at the outputs) / summed-loss step",
         ("model", "train_step", "rgb/summed", "outputs"), 1.5),
    Goal("train step peak RSS (balanced at the parameters), MiB",
         ("model", "train_step", "peak_rss_mib", "parameters"), 5.5 * 1024),
    Goal("train step FLOP/s / same run's 2048x2048 matmul FLOP/s",
         ("model", "train_step", "fraction_of_matmul", "parameters"), 0.35, at_most=False),
)

COMMANDS = {
    "cli": ["bench_cli.py", "--reps", "3"],
    "checking": ["bench_checking.py"],
    "model": ["bench_model.py", "--train-only"],  # the checked forward's cost: bench_checking.py
}


def run(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": f"{script} exited {done.returncode}: {done.stderr.strip()[-2000:]}"}
    return json.loads(done.stdout)


def lookup(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def goals(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for goal in GOALS:
        value = lookup(doc, goal.path)
        met = None
        if isinstance(value, (int, float)):
            met = value <= goal.goal if goal.at_most else value >= goal.goal
        row = {**asdict(goal), "path": "/".join(goal.path), "value": value, "met": met}
        if value is None:
            row["note"] = "not measured in this run (section skipped or failed, or the figure is named otherwise)"
        out.append(row)
    return out


def commit() -> str | None:
    done = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the model figures at AimeConfig.small()")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    doc: dict[str, Any] = {"commit": commit()}
    for name in args.only:
        extra = ["--small"] if name == "model" and args.small else []
        doc[name] = run(*COMMANDS[name], *extra)
    doc["goals"] = goals(doc)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
