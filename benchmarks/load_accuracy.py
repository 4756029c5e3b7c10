"""Do the load profiles measure what the target really does? The reference gateway streams at a
known time to first token and time per token and logs when it sends each event
(`opconform serve --timing-log FILE`); the steady profile measures the same streams at 1, 50
and 500 at once. Printed: the pooled inter-chunk gaps and the per-request ITL, the load tester's
p50 and p99 against the server's own (goal: p50 within 0.1 ms, p99 within 5%).

    python benchmarks/load_accuracy.py [--ttft-ms 200] [--tpot-ms 20] [--seconds 10]
                                       [--streams 1,50,500] [--tokens 32]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from gateway.embedded import EmbeddedGateway
from opconform.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent


def measure(
    gateway: EmbeddedGateway, users: int, seconds: float, tokens: int, folder: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = folder / f"users-{users}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OP_")}
    # Locust started by hand: its settings are OP_* / OP_LOAD_* variables (loadtests/options.py)
    env.update(
        OP_API_KEY=gateway.env["OP_ENTERPRISE_API_KEY"],
        OP_PLAN="enterprise",
        OP_LOAD_OUTPUT_TOKENS=str(tokens),
        OP_LOAD_PROGRESS_SECONDS="0",
        OP_LOAD_REPORT_DIR=str(report),
        # far more than a user can send: each user runs closed-loop, one stream after another
        OP_LOAD_PROFILE_OPTION=f"rate={users * 10}",
    )
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
        ],
        env=env,
        cwd=ROOT,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    document = json.loads((report / "load.json").read_text())
    samples = [json.loads(line) for line in (report / "samples.jsonl").read_text().splitlines()]
    return document, samples


def server_truth(log: Path) -> tuple[list[float], list[float]]:
    """Pooled gaps between consecutive content events of each stream, and per-stream ITL, as
    the gateway sent them. Streams cut short by the end of the run are left out."""
    streams: dict[str, list[tuple[int, float, bool, bool]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        event = json.loads(line)
        streams[event["id"]].append((event["seq"], event["t"], event["content"], event["done"]))
    gaps: list[float] = []
    itls: list[float] = []
    for events in streams.values():
        events.sort()
        if not any(done for *_, done in events):
            continue
        content = [t for _, t, is_content, _ in events if is_content]
        gaps += [b - a for a, b in itertools.pairwise(content)]
        if len(content) > 1:
            itls.append((content[-1] - content[0]) / (len(content) - 1))
    return gaps, itls


def client_view(samples: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    done = [s for s in samples if s["outcome"] == "ok" and s["kind"] == "stream"]
    return [g for s in done for g in s["gaps"]], [s["itl"] for s in done if s["itl"] is not None]


def compare(client: list[float], server: list[float]) -> str:
    c50, s50 = percentile(client, 50) or 0.0, percentile(server, 50) or 0.0
    c99, s99 = percentile(client, 99) or 0.0, percentile(server, 99) or 0.0
    p99 = (c99 - s99) / s99 if s99 else 0.0
    return (
        f"p50 {c50 * 1000:7.3f} vs {s50 * 1000:7.3f} ms ({(c50 - s50) * 1000:+.3f} ms)  "
        f"p99 {c99 * 1000:7.3f} vs {s99 * 1000:7.3f} ms ({p99:+.1%})"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttft-ms", type=float, default=200)
    parser.add_argument("--tpot-ms", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", default="1,50,500")
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per stream")
    args = parser.parse_args()
    print(
        f"truth: the gateway's own send times (TTFT {args.ttft_ms:g} ms, {args.tpot_ms:g} ms per "
        "token, loopback); load tester: FastHttpUser reading line by line"
    )
    with tempfile.TemporaryDirectory() as folder:
        for users in (int(n) for n in args.streams.split(",")):
            log = Path(folder) / f"timing-{users}.jsonl"
            with EmbeddedGateway(
                [
                    "--ttft-ms",
                    str(args.ttft_ms),
                    "--tpot-ms",
                    str(args.tpot_ms),
                    "--timing-log",
                    str(log),
                ]
            ) as gateway:
                document, samples = measure(gateway, users, args.seconds, args.tokens, Path(folder))
            server_gaps, server_itl = server_truth(log)
            client_gaps, client_itl = client_view(samples)
            ttft = document["metrics"]["ttft"]["p50"]
            print(
                f"{users:>4} streams: {document['metrics']['requests']} requests, "
                f"{len(client_gaps)} gaps (server {len(server_gaps)}), TTFT p50 "
                f"{(ttft or 0) * 1000:.1f} ms, run valid: {document['valid']}"
                + (f" ({'; '.join(document['invalid_reasons'])})" if not document["valid"] else "")
            )
            print(f"       gaps  {compare(client_gaps, server_gaps)}")
            print(f"       ITL   {compare(client_itl, server_itl)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
