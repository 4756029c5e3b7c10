"""Plots of a load run as inline SVG (matplotlib, no network needed to view them)."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first

from opconform.metrics import PERCENTILES, Sample, percentile


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def latency_percentiles(samples: list[Sample]) -> str | None:
    ok = [s for s in samples if s.outcome == "ok"]
    series = {
        name: [getattr(s, name) for s in ok if getattr(s, name) is not None]
        for name in ("ttfb", "ttft", "itl", "e2e")
    }
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(8, 3.2))
    for name, values in series.items():
        axis.plot(
            [f"p{p:g}" for p in PERCENTILES],
            [1000 * (percentile(values, p) or 0) for p in PERCENTILES],
            marker="o",
            label=name,
        )
    axis.set_ylabel("ms")
    axis.set_yscale("log")
    axis.legend()
    axis.grid(alpha=0.3)
    return _svg(figure)


def throughput_over_time(samples: list[Sample]) -> str | None:
    if not samples:
        return None
    start = min(s.sent for s in samples)
    per_group: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    limited: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for sample in samples:
        second = int(sample.sent - start)
        per_group[sample.group][second] += 1
        if sample.status == 429:
            limited[sample.group][second] += 1
    figure, axis = plt.subplots(figsize=(8, 3.2))
    last = int(max(s.sent for s in samples) - start) + 1
    for group, counts in sorted(per_group.items()):
        axis.plot(range(last), [counts.get(i, 0) for i in range(last)], label=f"{group} req/s")
    for group, counts in sorted(limited.items()):
        axis.plot(
            range(last),
            [counts.get(i, 0) for i in range(last)],
            linestyle="--",
            label=f"{group} 429/s",
        )
    axis.set_xlabel("seconds into the run")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _svg(figure)


def histogram(samples: list[Sample], metric: str) -> str | None:
    values = [
        1000 * v
        for s in samples
        if s.outcome == "ok"
        for v in ([getattr(s, metric)] if metric != "gaps" else s.gaps)
        if v is not None
    ]
    if not values:
        return None
    figure, axis = plt.subplots(figsize=(8, 2.8))
    axis.hist(values, bins=40, color="#4c72b0")
    axis.set_xlabel(f"{metric} (ms)")
    axis.set_ylabel("requests" if metric != "gaps" else "gaps")
    return _svg(figure)


def onset(windows: dict[str, list[dict[str, Any]]], limit: int) -> str | None:
    rows = [
        (group, w)
        for group, ws in windows.items()
        for w in ws
        if w.get("fresh") and w.get("onset") is not None
    ]
    if not rows:
        return None
    figure, axis = plt.subplots(figsize=(8, 2.8))
    for group in sorted({g for g, _ in rows}):
        onsets = [w["onset"] for g, w in rows if g == group]
        axis.plot(range(1, len(onsets) + 1), onsets, marker="o", label=f"{group}: 429 onset")
    axis.axhline(limit, color="#82071e", linestyle="--", label=f"documented limit {limit}")
    axis.set_xlabel("requests/min window")
    axis.set_ylabel("requests before the first 429")
    axis.legend(fontsize=8)
    return _svg(figure)


def latency_over_time(samples: list[Sample]) -> str | None:
    """TTFT p50 and p95 per second of the run (drift and saturation show here first)."""
    ok = [s for s in samples if s.outcome == "ok" and s.ttft is not None]
    if not ok:
        return None
    start = min(s.sent for s in ok)
    buckets: dict[int, list[float]] = defaultdict(list)
    for sample in ok:
        buckets[int(sample.sent - start)].append(1000 * (sample.ttft or 0.0))
    seconds = sorted(buckets)
    figure, axis = plt.subplots(figsize=(8, 3.0))
    for p in (50, 95):
        values = [percentile(buckets[s], p) or 0.0 for s in seconds]
        axis.plot(seconds, values, marker=".", label=f"TTFT p{p}")
    axis.set_xlabel("seconds into the run")
    axis.set_ylabel("ms")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _svg(figure)


def capacity_curve(steps: list[dict[str, Any]]) -> str | None:
    """Achieved rate and TTFT p95 per step of a sweep (by offered rate) or a ramp (by users)."""
    if not steps:
        return None
    by_rate = "rate" in steps[0]
    xs = [float((step.get("rate") if by_rate else step.get("users")) or 0) for step in steps]
    figure, axis = plt.subplots(figsize=(8, 3.0))
    axis.plot(xs, [step.get("achieved_rps") or 0 for step in steps], marker="o", label="achieved/s")
    if by_rate:
        axis.plot(xs, xs, linestyle=":", color="#888888", label="offered/s")
    axis.set_xlabel("offered requests/s" if by_rate else "users")
    axis.set_ylabel("requests/s")
    latency = axis.twinx()
    latency.plot(
        xs,
        [1000 * (step.get("ttft_p95") or 0) for step in steps],
        marker="s",
        color="#c44e52",
        label="TTFT p95 (ms)",
    )
    latency.set_ylabel("TTFT p95 (ms)")
    broken = [x for x, step in zip(xs, steps, strict=True) if step.get("broken")]
    if broken:
        axis.axvline(broken[0], color="#82071e", linestyle="--", label="first broken step")
    axis.legend(fontsize=8, loc="upper left")
    latency.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    return _svg(figure)
