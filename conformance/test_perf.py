"""Latency, measured with pytest-benchmark; judged only against --latency-slo thresholds."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from opconform.client import ApiClient
from opconform.conformance import expect
from opconform.conformance.plan import ROUNDS, room
from opconform.conformance.skips import disabled
from opconform.sse import SSEEvent
from opconform.target import Target

requirement = pytest.mark.requirement


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _judge(benchmark: Any, target: Target, name: str) -> None:
    samples = list(benchmark.stats.stats.data) if benchmark.stats else []
    if not samples:
        return
    benchmark.extra_info[f"{name}_p95_s"] = _p95(samples)
    if not any(slo.partition("_")[0] == name for slo in target.latency_slo):
        # Measured (benchmark.json has it), but nothing to judge against: not a PASS.
        disabled(
            f"measured only: {name} p95 {_p95(samples) * 1000:.1f} ms over {len(samples)} "
            f"rounds; give --latency-slo {name}_p95=DURATION to judge it"
        )
    for slo_name, limit in target.latency_slo.items():
        metric, _, stat = slo_name.partition("_")
        if metric != name:
            continue
        value = _p95(samples) if stat == "p95" else sorted(samples)[len(samples) // 2]
        assert value <= limit, (
            f"{slo_name} is {value * 1000:.0f} ms, over the threshold of "
            f"{limit * 1000:.0f} ms ({len(samples)} rounds)"
        )


def _measure(
    benchmark: Any,
    action: Callable[[], Any],
    target: Target,
    name: str,
    frugal: bool,
    api: ApiClient,
    key: str,
) -> None:
    if frugal and not any(slo.partition("_")[0] == name for slo in target.latency_slo):
        # Nothing would judge the measurement, and a Free key's minute is the run's budget.
        disabled(
            f"not measured: no --latency-slo {name}_p95=DURATION to judge it, and the bulk "
            "key is a Free key (give --pro-api-key to measure anyway)"
        )
    # One slot spare, as ApiClient.gather. The rounds at once feed pytest-benchmark's stats
    # through a private method; a version without it measures the rounds one by one.
    at_once = hasattr(benchmark, "_make_stats") and room(api, key) > ROUNDS
    if not at_once or benchmark.disabled:
        benchmark.pedantic(action, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        return
    _measure_rounds_at_once(benchmark, action, api, key)


def _measure_rounds_at_once(
    benchmark: Any, action: Callable[[], Any], api: ApiClient, key: str
) -> None:
    """The rounds at once, on a key whose plan serves that many at a time: each sample is
    still one request's latency as one client sees it (a target with its plan's capacity serves
    them side by side). The warm-up round is as wide as the measured one, so every measured
    request finds a connection already open (no TCP or TLS handshake in a sample)."""

    def timed() -> float:
        began = time.perf_counter()
        action()
        return time.perf_counter() - began

    api.pacer.before(key, needed=ROUNDS)
    api.gather([timed] * ROUNDS, key=key)  # the warm-up round
    api.pacer.before(key, needed=ROUNDS)
    durations = api.gather([timed] * ROUNDS, key=key)
    # pytest-benchmark has no public way to add samples taken elsewhere: its pedantic mode does
    # the same two steps (a stats record, then one update per round).
    benchmark._mode = "benchmark.pedantic(...)"
    stats = benchmark._make_stats(1)
    for duration in durations:
        stats.update(duration)
    benchmark.extra_info["rounds_at_once"] = ROUNDS


def _payloads(events: list[SSEEvent]) -> list[Any]:
    payloads = []
    for event in events:
        try:
            payload = json.loads(event.data)
        except ValueError:
            continue
        if isinstance(payload, dict):
            payloads.append(payload)
    return payloads


@requirement("OP-PERF-001")
def test_time_to_first_byte_of_models(
    benchmark: Any, api: ApiClient, bulk_key: str, target: Target, frugal: bool
) -> None:
    def action() -> None:
        listed = api.request("GET", "/models", key=bulk_key)
        if listed.status != 200:
            raise expect.Deviation(f"GET /models: {expect.preview(listed)}", "OP-MODELS-001")

    _measure(benchmark, action, target, "ttfb", frugal, api, bulk_key)
    _judge(benchmark, target, "ttfb")


@requirement("OP-PERF-001")
@pytest.mark.needs("OP-CHAT-007")  # it times completions
def test_small_completion_latency(
    benchmark: Any, api: ApiClient, bulk_key: str, model: str, target: Target, frugal: bool
) -> None:
    def action() -> None:
        expect.status(api.chat(expect.chat_request(model, max_tokens=8), key=bulk_key), 200)

    _measure(benchmark, action, target, "completion", frugal, api, bulk_key)
    _judge(benchmark, target, "completion")


@requirement("OP-PERF-001")
@pytest.mark.needs("OP-STREAM-001")  # it times streams
def test_time_to_first_token(
    benchmark: Any, api: ApiClient, bulk_key: str, model: str, target: Target, frugal: bool
) -> None:
    """Clocked to the first event with content, not the role-only first chunk."""
    body = expect.chat_request(model, max_tokens=8)

    def action() -> None:
        held = api.hold_stream(body, key=bulk_key)
        try:
            while held.open and held.exchange.status == 200:
                if expect.streamed_text(_payloads(held.exchange.events or [])):
                    return
                held.wait_next_event()
            raise AssertionError(f"no content arrived: {expect.preview(held.exchange)}")
        finally:
            held.abort()

    _measure(benchmark, action, target, "ttft", frugal, api, bulk_key)
    _judge(benchmark, target, "ttft")
