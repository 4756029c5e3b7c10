"""How much can one generator process offer? Requests/s of one Locust process (FastHttpUser)
against the reference gateway, side by side with wrk on the same target in the same run (the
ceiling for plain requests), and streamed events/s through the profiles' LLM user.

    python benchmarks/load_capacity.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from opconform.gateway.embedded import EmbeddedGateway

ROOT = Path(__file__).resolve().parent.parent


def locust(env: dict[str, str], args: list[str], settings: dict[str, str] | None = None) -> None:
    """Locust started by hand; `settings` are OP_* / OP_LOAD_* variables (loadtests/options.py)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "--headless",
            "--only-summary",
            "--loglevel",
            "ERROR",
            *args,
        ],
        env={**env, **(settings or {})},
        cwd=ROOT,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with (
        EmbeddedGateway(["--ttft-ms", "0", "--tpot-ms", "0"]) as gateway,
        tempfile.TemporaryDirectory() as folder,
    ):
        key = gateway.env["OP_ENTERPRISE_API_KEY"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OP_")}
        env["OP_API_KEY"] = key
        locust(
            env,
            [
                "-f",
                str(ROOT / "benchmarks/locustfiles/models_flood.py"),
                "-u",
                "32",
                "-r",
                "32",
                "--run-time",
                f"{args.seconds}s",
                "--host",
                gateway.base_url,
                "--json-file",
                f"{folder}/flood",
            ],
        )
        stats = json.loads(Path(f"{folder}/flood.json").read_text())
        entry = next(e for e in stats if e["method"] == "GET")
        locust_rps = entry["num_requests"] / args.seconds
        wrk_rps = None
        if shutil.which("wrk"):
            script = Path(folder) / "auth.lua"
            script.write_text(f"wrk.headers['Authorization'] = 'Bearer {key}'\n")
            done = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    "-c32",
                    f"-d{args.seconds}s",
                    "-s",
                    str(script),
                    f"{gateway.base_url}/models",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
            wrk_rps = float(match.group(1)) if match else None
        locust(
            env,
            [
                "-f",
                str(ROOT / "loadtests/profiles/steady.py"),
                "-u",
                "16",
                "-r",
                "16",
                "--run-time",
                f"{args.seconds}s",
                "--host",
                gateway.base_url,
            ],
            settings={
                "OP_PLAN": "enterprise",
                "OP_LOAD_MAX_TOKENS": "256",
                "OP_LOAD_REPORT_DIR": f"{folder}/stream",
                "OP_LOAD_PROFILE_OPTION": "rate=100000",
            },
        )
        document = json.loads(Path(f"{folder}/stream/load.json").read_text())
    metrics = document["metrics"]
    events = metrics["gaps"]["count"] + metrics["requests"]
    print("one Locust process (FastHttpUser), 32 users, reference gateway with zero latency")
    print(f"  GET /v1/models: {locust_rps:,.0f} req/s", end="")
    if wrk_rps:
        print(
            f"; wrk -t1 -c32 on the same target: {wrk_rps:,.0f} req/s; "
            f"ratio {locust_rps / wrk_rps:.2f}"
        )
    else:
        print(" (install wrk, e.g. apt-get install wrk, for the ceiling)")
    print(
        f"  streams (16 users, 256 tokens each, SSE parsed per event): "
        f"{events / metrics['window_s']:,.0f} content events/s, "
        f"{metrics['achieved_rps']:,.0f} streams/s; run valid: {document['valid']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
