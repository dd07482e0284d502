"""How fast the CLI answers when it needs no framework: `--help`, `inspect --help`, `devices`, `presets`.

Each command runs as a fresh process (what a user waits for), several times; prints the median wall time.

    .venv/bin/python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["inspect", "--help"], ["convert", "--help"], ["devices"], ["presets"])


def measure(args: list[str], runs: int) -> tuple[float, int]:
    """Median wall seconds of ``python -m edgeexport ARGS`` over ``runs`` runs, and the last exit code."""
    times = []
    code = 0
    for _ in range(runs):
        started = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", "edgeexport", *args], capture_output=True).returncode
        times.append(time.perf_counter() - started)
    return statistics.median(times), code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    print(f"command: {Path(sys.executable).name} benchmarks/startup.py --runs {runs}")
    print(f"{'edgeexport command':32} {'median s':>9}  exit")
    for args in COMMANDS:
        seconds, code = measure(args, runs)
        print(f"{' '.join(args):32} {seconds:9.3f}  {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
