"""False alarms: the whole default suite, run again and again against a conformant reference
gateway under parallel load, must never fail.

    python benchmarks/false_alarms.py [--runs 50] [--parallel 2] \
        [--gateway-args "--ttft-ms 500 --tpot-ms 20"]

Each run starts its own embedded gateway (realistic latency by default, so the checks that need
the server to react, a freed slot or a reset window, meet a server that is not instant), and
`--parallel` runs go at once, so every run also meets a machine busy with the others. Prints
one line per run and a summary: runs, conformant, not conformant (each a false alarm, with the
requirements that failed), could not judge. Exit 1 if any run was a false alarm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import clean_env  # noqa: E402


def one_run(index: int, folder: Path, gateway_args: str) -> dict[str, object]:
    report_dir = folder / f"run-{index:03d}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "opconform", "run", "-q", "--report-dir", str(report_dir)]
        + (["--gateway-args", gateway_args] if gateway_args else []),
        env=clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - started
    failing: list[str] = []
    verdict = "no results"
    results = report_dir / "results.json"
    if results.is_file():
        document = json.loads(results.read_text(encoding="utf-8"))
        verdict = document["verdict"]
        failing = [r["id"] for r in document["requirements"] if r["status"] in ("FAIL", "ERROR")]
    return {"index": index, "exit": done.returncode, "verdict": verdict, "failing": failing,
            "seconds": seconds}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--gateway-args", default="--ttft-ms 500 --tpot-ms 20")
    args = parser.parse_args()
    runs = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        ThreadPoolExecutor(max_workers=args.parallel) as pool,
    ):
        futures = [pool.submit(one_run, i, Path(tmp), args.gateway_args) for i in range(args.runs)]
        for future in futures:
            run = future.result()
            runs.append(run)
            print(
                f"run {run['index']:3d}: exit {run['exit']} {run['verdict']:<15} "
                f"{run['seconds']:6.1f}s {' '.join(run['failing'])}",  # type: ignore[arg-type]
                flush=True,
            )
    alarms = [r for r in runs if r["exit"] == 1]
    unjudged = [r for r in runs if r["exit"] not in (0, 1)]
    print(
        f"\n{len(runs)} runs (gateway {args.gateway_args or 'defaults'}, {args.parallel} at once): "
        f"{len(runs) - len(alarms) - len(unjudged)} conformant, {len(alarms)} false alarms, "
        f"{len(unjudged)} could not judge"
    )
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
