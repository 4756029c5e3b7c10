"""How long the default conformance suite takes against the embedded gateway (goal: well under
a minute on a 2-core machine). Runs `opconform run` a few times and prints the median wall time
next to the time the embedded gateway takes to start, measured in the same run.

    python benchmarks/suite_duration.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opconform.gateway.embedded import EmbeddedGateway

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    walls, starts = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        with EmbeddedGateway():
            starts.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "opconform", "run", "-q", "--report-dir", f"{folder}/r"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            walls.append(time.perf_counter() - started)
            if done.returncode != 0:
                print(done.stdout[-2000:])
                return 1
    print(
        f"default suite, embedded gateway, {args.runs} runs: median "
        f"{statistics.median(walls):.1f}s wall (min {min(walls):.1f}s, max {max(walls):.1f}s); "
        f"gateway start {statistics.median(starts):.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
