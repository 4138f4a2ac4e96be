"""Every benchmark in one JSON document: the README's table is read from it.

    python benchmarks/run_all.py [--small]   # --small: the model figures at AimeConfig.small()
"""

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    small = ["--small"] if "--small" in sys.argv[1:] else []
    doc = {"model": run("bench_model.py", *small), "cli": run("bench_cli.py")}
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
