"""The run's shared state inside one Locust process, and what moves it: raw samples (a worker
ships its own to the master with each stats report), the request and token ceilings, the
transport-failure breaker, the generator's CPU share and the live status line."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import psutil
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from opconform.loadtests.settings import Settings
from opconform.metrics import Sample, percentile
from opconform.redact import Redactor


@dataclass
class Run:
    profile: Any = None  # loadtests.profile.Profile (typed loosely: it imports this module)
    settings: Settings | None = None
    # What a target echoes (a key in an error body) never reaches a sample, Locust's own
    # failure reports or the console: details are redacted as they are recorded.
    redactor: Redactor = field(default_factory=Redactor)
    environment: Environment | None = None
    samples: list[Sample] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)  # a worker's, for the master
    is_worker: bool = False
    requests: int = 0
    tokens: int = 0
    open_streams: dict[str, int] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)  # per key, from Retry-After
    cpu_start: tuple[float, float] = (0.0, 0.0)
    worker_cpu: dict[str, float] = field(default_factory=dict)
    stopping: bool = False
    started: float = 0.0
    transport_failures: int = 0  # in a row
    breaker: str = ""  # why the breaker stopped the run
    usage_error: str = ""  # the run could not start as asked (e.g. a limit nobody stated)
    notes: dict[str, Any] = field(default_factory=dict)  # what a profile did (load.json extra)
    stopped: gevent.event.Event = field(default_factory=gevent.event.Event)


RUN = Run()


def record(sample: Sample) -> None:
    """Keep one finished request, and trip the breaker after too many transport failures in a
    row (a target that is down or hostile gets a verdict, not a run that hammers it)."""
    if sample.detail:  # a target may echo a key into an error body
        sample.detail = RUN.redactor.text(sample.detail)
    if sample.outcome == "transport_error":
        RUN.transport_failures += 1
        settings = RUN.settings
        if settings and settings.breaker and RUN.transport_failures >= settings.breaker:
            if not RUN.breaker:
                RUN.breaker = f"{RUN.transport_failures} transport failures in a row"
                print(f"opconform: {RUN.breaker}; stopping", flush=True)
            stop_run()
    else:
        RUN.transport_failures = 0
    if RUN.is_worker:
        RUN.pending.append(sample.to_dict())
    else:
        RUN.samples.append(sample)


def stop_run() -> None:
    if RUN.stopping:
        return
    RUN.stopping = True
    RUN.stopped.set()
    runner = RUN.environment.runner if RUN.environment else None
    if runner is not None:
        gevent.spawn(runner.quit)


def sleep(seconds: float) -> bool:
    """Sleep, but wake when the run stops (a user waiting for its next slot must not hold the
    run open for Locust's stop timeout). True when the run is stopping."""
    if seconds > 0:
        RUN.stopped.wait(timeout=seconds)
    return RUN.stopping


@events.test_stopping.add_listener
def _on_test_stopping(**_: Any) -> None:
    # The run time is up: no new requests; those in flight finish within the stop timeout.
    RUN.stopping = True
    RUN.stopped.set()


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


CPU_MIN_WALL = 3.0  # a CPU share over a shorter run says nothing about saturation


def cpu_fraction() -> float:
    cpu, wall = RUN.cpu_start
    elapsed = time.monotonic() - wall
    return (_cpu_seconds() - cpu) / elapsed if elapsed >= CPU_MIN_WALL else 0.0


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    RUN.settings = Settings.from_environment(environment)
    RUN.redactor = RUN.settings.redactor()
    RUN.environment = environment
    RUN.is_worker = isinstance(environment.runner, WorkerRunner)
    RUN.cpu_start = (_cpu_seconds(), time.monotonic())
    RUN.started = time.time()
    if not RUN.is_worker and RUN.settings.progress_seconds > 0:
        gevent.spawn(_progress, RUN.settings.progress_seconds)


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["opconform_samples"], RUN.pending = RUN.pending, []
    data["opconform_cpu"] = cpu_fraction()


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    RUN.samples.extend(Sample.from_dict(d) for d in data.get("opconform_samples", []))
    if "opconform_cpu" in data:
        RUN.worker_cpu[client_id] = data["opconform_cpu"]


def status_line() -> str:
    """One line of where the run stands: elapsed/total, requests, 429s, errors, TTFT so far."""
    samples = RUN.samples
    elapsed = time.time() - RUN.started
    total = RUN.settings.run_time if RUN.settings else None
    ttfts = [s.ttft for s in samples if s.ttft is not None and s.outcome == "ok"]
    limited = sum(1 for s in samples if s.status == 429)
    errors = sum(1 for s in samples if s.outcome not in ("ok", "expected_429"))
    p50, p95 = percentile(ttfts, 50), percentile(ttfts, 95)
    ttft = f"TTFT p50 {p50 * 1000:.1f} ms p95 {p95 * 1000:.1f} ms" if p50 and p95 else "TTFT -"
    return (
        f"[{elapsed:5.0f}s/{total:.0f}s]" if total else f"[{elapsed:5.0f}s]"
    ) + f" requests {len(samples)}  429s {limited}  errors {errors}  {ttft}"


def _progress(interval: float) -> None:
    # Plain lines, TTY or not: a CI log keeps every one, a terminal shows the latest last.
    while not RUN.stopping:
        gevent.sleep(interval)
        print(f"opconform: {status_line()}", file=sys.stdout, flush=True)
