"""What the quiet collection pass costs a narrowed run (`opconform run --requirement ...`): the
pass that turns a selection matching no check into one usage line before anything is written.
Runs the same narrowed run with and without the pass, alternating, against one embedded gateway
and prints the medians and their ratio.

    python benchmarks/selection_check.py [--runs 5] [--requirement OP-AUTH-001]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opconform.gateway.embedded import EmbeddedGateway

ROOT = Path(__file__).resolve().parent.parent
RUN = "import sys; from opconform.cli import main; sys.exit(main(sys.argv[1:]))"
WITHOUT = "import opconform.conformance.command as c; c.check_selection = lambda args: None; " + RUN


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requirement", default="OP-AUTH-001")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"with the pass": [], "without": []}
    with EmbeddedGateway() as gateway, tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, **gateway.env}
        for index in range(args.runs):
            for name, code in (("without", WITHOUT), ("with the pass", RUN)):
                report_dir = Path(folder) / f"{name.replace(' ', '-')}-{index}"
                argv = [
                    "run",
                    "-q",
                    "--requirement",
                    args.requirement,
                    "--report-dir",
                    str(report_dir),
                ]
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-c", code, *argv],
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                    check=False,
                )
                walls[name].append(time.perf_counter() - started)
                if done.returncode != 0:
                    print(done.stdout[-1000:].decode(), file=sys.stderr)
                    return 1
    for name, times in walls.items():
        shown = ", ".join(f"{t:.2f}" for t in times)
        print(f"{name:<14} median {statistics.median(times):.2f} s  ({shown})")
    ratio = statistics.median(walls["with the pass"]) / statistics.median(walls["without"])
    print(f"ratio with/without: {ratio:.2f}  (load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
