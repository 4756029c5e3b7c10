"""Wall time of `opconform run` (default settings) against each hostile server behaviour.

    python benchmarks/hostile_runs.py [--jobs 2] [behaviour ...]

Prints a Markdown table: behaviour, wall time, exit code, verdict. Runs `--jobs` at a time
(default 2, the cores of this project's VM); each is killed at a hard limit of 300 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.hostile import BEHAVIOURS, HostileRun, run_against


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("behaviours", nargs="*", default=list(BEHAVIOURS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--hard-limit", type=float, default=300.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:

        def one(name: str) -> HostileRun:
            return run_against(name, Path(folder) / name, args.hard_limit)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(one, args.behaviours))
        print("| server behaviour | wall time | exit | verdict | report |")
        print("|---|---|---|---|---|")
        for run in runs:
            results = run.results or {}
            exit_code = "killed" if run.exit_code is None else str(run.exit_code)
            report = "yes" if (run.report_dir / "report.html").is_file() else "no"
            print(
                f"| {run.behaviour} | {run.seconds:.1f} s | {exit_code} | "
                f"{results.get('verdict', '(none)')} | {report} |"
            )


if __name__ == "__main__":
    main()
