"""Do the load profiles measure what the target really does? The reference gateway is given a
known time to first token and time per token; the steady profile measures them at 1 and at 50
concurrent streams, and the medians are printed against the truth (goal: within 5% and a few ms).

    python benchmarks/load_accuracy.py [--ttft-ms 200] [--tpot-ms 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.embedded import EmbeddedGateway

ROOT = Path(__file__).resolve().parent.parent


def measure(gateway: EmbeddedGateway, users: int, seconds: float, folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OP_")}
    env["OP_API_KEY"] = gateway.env["OP_ENTERPRISE_API_KEY"]
    report = folder / f"users-{users}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtests/profiles/steady.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "--run-time",
            f"{seconds:g}s",
            "--host",
            gateway.base_url,
            "--only-summary",
            "--loglevel",
            "ERROR",
            "--op-plan",
            "enterprise",
            "--op-max-tokens",
            "32",
            "--op-report-dir",
            str(report),
            # far more than a user can send: each user runs closed-loop, one stream after another
            "--op-profile-option",
            f"rate={users * 10}",
        ],
        env=env,
        cwd=ROOT,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads((report / "load.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttft-ms", type=float, default=200)
    parser.add_argument("--tpot-ms", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(
        f"truth: TTFT {args.ttft_ms:g} ms, time per token {args.tpot_ms:g} ms "
        "(reference gateway, loopback, FastHttpUser reading line by line)"
    )
    print(
        f"{'streams':>7} {'requests':>8} {'TTFT p50':>10} {'error':>7} {'ITL p50':>9} "
        f"{'error':>7} {'gap p50':>9} {'valid':>6}"
    )
    worst = 0.0
    with (
        EmbeddedGateway(
            ["--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms)]
        ) as gateway,
        tempfile.TemporaryDirectory() as folder,
    ):
        for users in (1, 50):
            document = measure(gateway, users, args.seconds, Path(folder))
            metrics = document["metrics"]
            ttft = metrics["ttft"]["p50"] * 1000
            itl = metrics["itl"]["p50"] * 1000
            gap = metrics["gaps"]["p50"] * 1000
            ttft_error = (ttft - args.ttft_ms) / args.ttft_ms
            itl_error = (itl - args.tpot_ms) / args.tpot_ms
            worst = max(worst, abs(ttft_error), abs(itl_error))
            print(
                f"{users:>7} {metrics['requests']:>8} {ttft:>8.1f}ms {ttft_error:>+6.1%} "
                f"{itl:>7.2f}ms {itl_error:>+6.1%} {gap:>7.2f}ms {document['valid']!s:>6}"
            )
    print(f"largest relative error {worst:.1%} (goal: within 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
