"""Time to a verdict against the reference gateway: wall time, requests per identity, and the
floor the plans impose on what the run paces (at most an identity's requests/min in any minute:
ceil(requests / requests-per-minute) - 1 whole minutes; the checks that drive a key past its limit
on purpose are not paced and not counted).

    python benchmarks/time_to_verdict.py            # all identities, default and 500 ms TTFT
    python benchmarks/time_to_verdict.py --free     # also one Free key alone (real windows)

Every run is a default `opconform run` (a subprocess, as a user runs it) against a gateway of its
own on loopback; each gateway starts with fresh windows. Goals (issue #18): a full verdict with a
Pro key for bulk checks in <= 20 s at 500 ms TTFT and 20 ms per token; with one Free key,
<= 150 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from opconform.conformance.plan import floor_seconds
from opconform.contract import PLANS
from opconform.gateway.embedded import EmbeddedGateway

ROOT = Path(__file__).resolve().parent.parent
REALISTIC = ["--ttft-ms", "500", "--tpot-ms", "20"]
FREE_ONLY = ("OP_BASE_URL", "OP_API_KEY", "OP_PLAN")


LIMIT_MEASURING = {f"OP-RL-{n:03d}" for n in range(7, 14)}


def _per_identity(counts: dict[str, int]) -> dict[str, int]:
    """Requests per key: an SDK's (sdk-node:pro) count against the key it used."""
    sent: dict[str, int] = {}
    for label, n in counts.items():
        identity = label.split(":")[-1]
        sent[identity] = sent.get(identity, 0) + n
    return sent


def _plan_of(label: str, plan: str) -> str:
    return "pro" if label.endswith("pro") else plan


def _run(name: str, gateway_args: list[str], free_only: bool) -> dict[str, Any]:
    with EmbeddedGateway(gateway_args) as gateway, tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in gateway.env.items() if not free_only or k in FREE_ONLY}
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "opconform", "run", "-q", "--report-dir", f"{folder}/run"],
            env={**_base_env(), **env},
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=900,
            check=False,
        )
        wall = time.monotonic() - began
        results = json.loads((Path(folder) / "run" / "results.json").read_text())
    sent = _per_identity(results["requests_sent"])
    # The floor counts what the run paces: not the checks that drive a key past its limit on
    # purpose (the requests/min drive, the concurrency cap, the SDKs' 429s).
    paced = dict(sent)
    for check in results["checks"]:
        if set(check["requirements"]) & LIMIT_MEASURING or "rate_limit" in check["name"]:
            for identity, n in _per_identity(check.get("sent", {})).items():
                paced[identity] = paced.get(identity, 0) - n
    floors = {}
    for identity, n in paced.items():
        rpm = PLANS[_plan_of(identity, results["target"]["plan"])].requests_per_min
        if identity != "anonymous":
            floors[identity] = floor_seconds(n, rpm)
    return {
        "name": name,
        "wall_s": wall,
        "exit": done.returncode,
        "verdict": results["verdict"],
        "sent": sent,
        "floor_s": max(floors.values(), default=0.0),
        "waited_s": results.get("pacing", {}).get("waited_s", 0.0),
        "planned": (results.get("plan") or {}).get("requests"),
    }


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OP_")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--free", action="store_true", help="also one Free key alone")
    args = parser.parse_args()
    scenarios = [
        ("all identities, default latency", [], False),
        ("all identities, 500 ms TTFT + 20 ms/token", REALISTIC, False),
    ]
    if args.free:
        scenarios += [
            ("one Free key, default latency", [], True),
            ("one Free key, 500 ms TTFT + 20 ms/token", REALISTIC, True),
        ]
    print("| run | wall | exit | verdict | requests per identity | planned | plan floor | waited |")
    print("|---|---|---|---|---|---|---|---|")
    for name, gateway_args, free_only in scenarios:
        row = _run(name, gateway_args, free_only)
        sent = ", ".join(f"{k} {v}" for k, v in sorted(row["sent"].items()))
        print(
            f"| {row['name']} | {row['wall_s']:.0f} s | {row['exit']} | {row['verdict']} | "
            f"{sent} | ~{row['planned']} | {row['floor_s']:.0f} s | {row['waited_s']:.0f} s |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
