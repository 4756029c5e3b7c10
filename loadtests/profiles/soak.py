"""soak: long steady load (steady's users, closed or open loop) with drift detection.

The run is cut into `buckets` equal time slices (profile option, default 5). Expectations, besides
steady's: the last slice's TTFT median is within 1.5x (+25 ms) of the first's, and its error rate
is no more than one point higher. A median of a handful of requests is noise, not drift: each
is inconclusive unless the first and the last slice measured at least MIN_PER_SLICE requests.
"""

from __future__ import annotations

from typing import Any

from opconform.loadtests.llm import Profile, Sample, Settings, expectation, group, use_profile

# Locust runs the User classes it finds in this module: steady's, since a soak is steady load
# held longer and judged for drift.
from opconform.loadtests.profiles.steady import SteadyUser, offered
from opconform.loadtests.profiles.steady import expectations as steady_expectations
from opconform.metrics import summarise

__all__ = ["SteadyUser"]

MIN_PER_SLICE = 10  # requests measured in a slice before its median says anything
DRIFT_FACTOR, DRIFT_SLACK = 1.5, 0.025  # s: the slack absorbs a busy machine's milliseconds


def slices(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    if not samples:
        return []
    count = max(2, int(settings.option("buckets", 5)))
    start, end = samples[0].sent, samples[-1].sent
    width = max((end - start) / count, 1e-9)
    rows = []
    for index in range(count):
        members = [
            s
            for s in samples
            if start + index * width <= s.sent < start + (index + 1) * width
            or (index == count - 1 and s.sent == end)
        ]
        summary = summarise(members)
        rows.append(
            {
                "slice": index,
                "requests": len(members),
                "ttft_p50": (summary.get("ttft") or {}).get("p50"),
                "ttft_count": int((summary.get("ttft") or {}).get("count", 0)),
                "error_rate": summary.get("error_rate", 0.0),
            }
        )
    return rows


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    rows = slices(group(samples, "main"), settings)
    results = steady_expectations(samples, settings)
    first, last = (rows[0], rows[-1]) if len(rows) >= 2 else ({}, {})
    measured = bool(first.get("ttft_p50") and last.get("ttft_p50"))
    enough = measured and min(first["ttft_count"], last["ttft_count"]) >= MIN_PER_SLICE
    results.append(
        expectation(
            "no latency drift",
            enough and last["ttft_p50"] <= DRIFT_FACTOR * first["ttft_p50"] + DRIFT_SLACK,
            f"TTFT p50 {first['ttft_p50'] * 1000:.1f} ms ({first['ttft_count']} requests) -> "
            f"{last['ttft_p50'] * 1000:.1f} ms ({last['ttft_count']})"
            if measured
            else "",
            needs=f"at least {MIN_PER_SLICE} TTFTs in the first and in the last slice",
            evidence=enough,
        )
    )
    counted = min(first.get("requests", 0), last.get("requests", 0)) >= MIN_PER_SLICE
    results.append(
        expectation(
            "no error drift",
            counted and last["error_rate"] <= first["error_rate"] + 0.01,
            f"error rate {first.get('error_rate', 0):.3f} -> {last.get('error_rate', 0):.3f}",
            needs=f"at least {MIN_PER_SLICE} requests in the first and in the last slice",
            evidence=counted,
        )
    )
    return results


use_profile(
    Profile(
        "soak",
        duration="300s",
        needs_limits=("rpm",),
        rate_replaces_rpm=True,
        open_loop="rate",
        users="closed-loop",
        expectations=expectations,
        target_rps=offered,
        extra=lambda samples, settings: {"slices": slices(group(samples, "main"), settings)},
    )
)
