"""Do the load profiles measure what the target really does? The reference gateway streams at a
known time to first token and time per token and logs when it sends each event
(`opconform serve --timing-log FILE`); the steady profile measures the same streams at 1, 50
and 500 at once. Printed: the pooled inter-chunk gaps and the per-request ITL, the load tester's
p50 and p99 against the server's own (goal: p50 within 0.1 ms, p99 within 5%).

    python benchmarks/load_accuracy.py [--ttft-ms 200] [--tpot-ms 20,20,100] [--seconds 10]
                                       [--streams 1,50,500] [--processes 1] [--tokens 32]
                                       [--spawn-rate 100] [--keep DIR]

--tpot-ms and --processes take one value for every row or one per --streams row. One generator
process by default, at 500 streams too (~40% of a core there): on a 2-core machine two Locust
processes and the gateway are three busy processes for two cores, and whichever waits for a core
shows up as lateness (measured side by side: pooled-gap p99 +28..+47% with two, +4.5..+17% with
one). The 500-stream row runs at 100 ms per token by default: the gateway is one process, and at
20 ms per token 500 streams are more events than it can send on time (the comparison is the
client against the server's own log, so a slower pace measures the same thing). A row whose
generator process or gateway is saturated prints "invalid" and why instead of numbers: a
saturated generator measures itself, a saturated gateway sends in bursts. CPU is measured per
process with psutil while the row runs (after a warm-up), beside Locust's own check. Users start
--spawn-rate a second (500 connections opened at once are a burst no steady state has). The
server's streams are those it finished by the end of the client's last finished stream: the ones
it finished after that, the client had stopped reading. Print the load average with the numbers:
on a shared machine, other processes' CPU shows up as the client's (and the gateway's) lateness.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from opconform.gateway.embedded import EmbeddedGateway
from opconform.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent
GOAL_P50 = 0.0001  # s: the load tester's p50 within 0.1 ms of the server's
GOAL_P99 = 0.05  # share: the load tester's p99 within 5% of the server's
GENERATOR_LIMIT = 0.8  # of a core: above this a generator process delays its own clocks
GATEWAY_LIMIT = 0.9  # of a core: above this the gateway sends late and in bursts
WARM_UP = 2.0  # s: imports and spawning users are not the run's CPU


@dataclass
class CpuWatch:
    """CPU share of a process tree's processes while a row runs: one sample every `interval`
    seconds; each process's share from its first sample after the warm-up to its last."""

    roots: list[int]
    interval: float = 0.5
    samples: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.wait(self.interval):
            if time.monotonic() - began < WARM_UP:
                continue
            for root in self.roots:
                try:
                    top = psutil.Process(root)
                    processes = [top, *top.children(recursive=True)]
                except psutil.Error:
                    continue
                for process in processes:
                    try:
                        times = process.cpu_times()
                        self.names.setdefault(process.pid, " ".join(process.cmdline()[:4]))
                    except psutil.Error:
                        continue
                    cpu = times.user + times.system
                    self.samples.setdefault(process.pid, []).append((time.monotonic(), cpu))

    def share(self, pid: int) -> float | None:
        points = self.samples.get(pid, [])
        if len(points) < 3:
            return None
        (t0, c0), (t1, c1) = points[0], points[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None


def gateway_pid() -> int | None:
    """The embedded gateway: our child process running `opconform serve`."""
    for child in psutil.Process().children(recursive=True):
        try:
            if "serve" in child.cmdline():
                return child.pid
        except psutil.Error:
            continue
    return None


def measure(
    gateway: EmbeddedGateway,
    users: int,
    processes: int,
    seconds: float,
    spawn_rate: float,
    tokens: int,
    folder: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[float], float | None]:
    """One row: the steady profile at `users` streams, started `spawn_rate` a second, then
    `seconds` at full strength. Returns load.json (plus the Locust master's CPU share when it
    has workers), the samples, the CPU share of each generator process and the gateway's."""
    rate = min(float(users), spawn_rate)
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
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtests/profiles/steady.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        f"{rate:g}",
        "--run-time",
        f"{seconds + users / rate:.0f}s",
        "--host",
        gateway.base_url,
        "--only-summary",
        "--loglevel",
        "ERROR",
    ]
    if processes > 1:
        command += ["--processes", str(processes)]
    served = gateway_pid()
    locust = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watch = CpuWatch([locust.pid] + ([served] if served else []))
    watch.start()
    try:
        locust.wait()
    finally:
        watch.stop()
    document = json.loads((report / "load.json").read_text())
    samples = [json.loads(line) for line in (report / "samples.jsonl").read_text().splitlines()]
    workers = [pid for pid in watch.samples if pid not in (locust.pid, served)]
    # One process: it is the generator. Several: the master only gathers, the workers send.
    generators = workers if processes > 1 else [locust.pid]
    shares = [s for s in (watch.share(pid) for pid in generators) if s is not None]
    if processes > 1:
        document["benchmark_master_cpu"] = watch.share(locust.pid)
    return document, samples, shares, watch.share(served) if served else None


def server_truth(log: Path, until: float | None = None) -> tuple[list[float], list[float]]:
    """Pooled gaps between consecutive content events of each stream, and per-stream ITL, as
    the gateway sent them. Streams cut short by the end of the run are left out, and so are
    those the gateway finished after `until` (the client's last finished stream: the client had
    stopped reading). Only content events count (not the role-only first chunk), as for the
    client: no gap holds the TTFT."""
    streams: dict[str, list[tuple[int, float, bool, bool]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        event = json.loads(line)
        streams[event["id"]].append((event["seq"], event["t"], event["content"], event["done"]))
    gaps: list[float] = []
    itls: list[float] = []
    for events in streams.values():
        events.sort()
        ends = [t for _, t, _, done in events if done]
        if not ends or (until is not None and ends[0] > until):
            continue
        content = [t for _, t, is_content, _ in events if is_content]
        gaps += [b - a for a, b in itertools.pairwise(content)]
        if len(content) > 1:
            itls.append((content[-1] - content[0]) / (len(content) - 1))
    return gaps, itls


def client_end(samples: list[dict[str, Any]]) -> float | None:
    """When the client's last finished stream ended (wall clock, as the gateway's log)."""
    ends = [s["sent"] + s["e2e"] for s in samples if s["outcome"] == "ok" and s["e2e"]]
    return max(ends) if ends else None


def client_view(samples: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """The same from the load tester's samples: finished streams only."""
    done = [s for s in samples if s["outcome"] == "ok" and s["kind"] == "stream"]
    return [g for s in done for g in s["gaps"]], [s["itl"] for s in done if s["itl"] is not None]


def saturation(
    document: dict[str, Any],
    generators: list[float],
    gateway: float | None,
    ttft_p50_ms: float | None,
    ttft_ms: float,
) -> list[str]:
    """Why a row measured a saturated generator or gateway rather than the load tester's
    accuracy (empty: the row is valid)."""
    reasons = list(document.get("invalid_reasons") or ())
    if not document.get("valid", True) and not reasons:
        reasons.append("the load tester called its run invalid")
    busiest = max(generators, default=0.0)
    if busiest > GENERATOR_LIMIT:
        reasons.append(
            f"a generator process used {busiest:.0%} of a core (limit {GENERATOR_LIMIT:.0%})"
        )
    if gateway is not None and gateway > GATEWAY_LIMIT:
        reasons.append(f"the gateway used {gateway:.0%} of a core (limit {GATEWAY_LIMIT:.0%})")
    if ttft_p50_ms is not None and ttft_p50_ms > ttft_ms * 1.25 + 20:
        reasons.append(
            f"first token p50 {ttft_p50_ms:.0f} ms for a {ttft_ms:g} ms TTFT: the gateway "
            "answers late"
        )
    return reasons


def compare(client: list[float], server: list[float]) -> str:
    c50, s50 = percentile(client, 50) or 0.0, percentile(server, 50) or 0.0
    c99, s99 = percentile(client, 99) or 0.0, percentile(server, 99) or 0.0
    p99 = (c99 - s99) / s99 if s99 else 0.0
    met = abs(c50 - s50) <= GOAL_P50 and abs(p99) <= GOAL_P99
    return (
        f"p50 {c50 * 1000:7.3f} vs {s50 * 1000:7.3f} ms ({(c50 - s50) * 1000:+.3f} ms)  "
        f"p99 {c99 * 1000:7.3f} vs {s99 * 1000:7.3f} ms ({p99:+.1%})  "
        + ("goal met" if met else "goal missed")
    )


def per_row(text: str, rows: int, name: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) == 1:
        return values * rows
    if len(values) != rows:
        raise SystemExit(f"{name}: one value, or one per --streams row ({rows})")
    return values


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttft-ms", type=float, default=200)
    parser.add_argument("--tpot-ms", default="20,20,100", help="one value, or one per row")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", default="1,50,500")
    parser.add_argument(
        "--processes", default="1", help="Locust generator processes: one, or one per row"
    )
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per stream")
    parser.add_argument(
        "--keep", type=Path, help="keep the timing logs and Locust reports in this folder"
    )
    parser.add_argument(
        "--spawn-rate",
        type=float,
        default=100,
        help="users started a second (500 connections opened at once are a burst no steady "
        "state has); the run lasts --seconds longer than starting them takes",
    )
    args = parser.parse_args()
    rows = [int(n) for n in args.streams.split(",")]
    tpots = per_row(args.tpot_ms, len(rows), "--tpot-ms")
    processes = [int(p) for p in per_row(args.processes, len(rows), "--processes")]
    print(
        f"truth: the gateway's own send times (TTFT {args.ttft_ms:g} ms, loopback); load tester: "
        f"FastHttpUser reading line by line; goal: p50 within {GOAL_P50 * 1000:g} ms, p99 within "
        f"{GOAL_P99:.0%}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = str(args.keep or scratch)
        Path(folder).mkdir(parents=True, exist_ok=True)
        for users, tpot, count in zip(rows, tpots, processes, strict=True):
            log = Path(folder) / f"timing-{users}.jsonl"
            before = loadavg()
            with EmbeddedGateway(
                [
                    "--ttft-ms",
                    str(args.ttft_ms),
                    "--tpot-ms",
                    str(tpot),
                    "--timing-log",
                    str(log),
                ]
            ) as gateway:
                document, samples, generators, served = measure(
                    gateway, users, count, args.seconds, args.spawn_rate, args.tokens, Path(folder)
                )
            server_gaps, server_itl = server_truth(log, client_end(samples))
            client_gaps, client_itl = client_view(samples)
            ttft = document["metrics"]["ttft"]["p50"]
            ttft_ms = ttft * 1000 if ttft is not None else None
            cpu = ", ".join(f"{share:.0%}" for share in generators) or "?"
            if document.get("benchmark_master_cpu") is not None:
                cpu += f"; master {document['benchmark_master_cpu']:.0%}"
            print(
                f"{users:>4} streams at {tpot:g} ms per token, {count} generator "
                f"process{'es' if count > 1 else ''} (CPU {cpu}; gateway "
                f"{f'{served:.0%}' if served is not None else '?'}); load average {before}: "
                f"{document['metrics']['requests']} requests, {len(client_gaps)} gaps (server "
                f"{len(server_gaps)}), TTFT p50 "
                + (f"{ttft_ms:.1f} ms" if ttft_ms is not None else "-")
            )
            reasons = saturation(document, generators, served, ttft_ms, args.ttft_ms)
            if reasons:
                print(f"       invalid: {'; '.join(reasons)}")
                continue
            print(f"       gaps  {compare(client_gaps, server_gaps)}")
            print(f"       ITL   {compare(client_itl, server_itl)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
