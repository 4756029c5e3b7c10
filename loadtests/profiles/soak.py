"""soak: long steady load (steady's users, closed or open loop) with drift detection.

The run is cut into `buckets` equal time slices (profile option, default 5). Expectations, besides
steady's: the last slice's TTFT median is within 1.5x (+5 ms) of the first's, and its error rate
is no more than one point higher (inconclusive when a slice measured nothing).
"""

from __future__ import annotations

from typing import Any

from loadtests.llm import Profile, Sample, Settings, expectation, group, use_profile

# Locust runs the User classes it finds in this module: steady's, since a soak is steady load
# held longer and judged for drift.
from loadtests.profiles.steady import SteadyUser, offered
from loadtests.profiles.steady import expectations as steady_expectations
from opconform.metrics import summarise

__all__ = ["SteadyUser"]


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
                "error_rate": summary.get("error_rate", 0.0),
            }
        )
    return rows


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    rows = slices(group(samples, "main"), settings)
    results = steady_expectations(samples, settings)
    first, last = (rows[0], rows[-1]) if len(rows) >= 2 else ({}, {})
    measured = bool(first.get("ttft_p50") and last.get("ttft_p50"))
    results.append(
        expectation(
            "no latency drift",
            measured and last["ttft_p50"] <= 1.5 * first["ttft_p50"] + 0.005,
            f"TTFT p50 {first['ttft_p50'] * 1000:.1f} ms -> {last['ttft_p50'] * 1000:.1f} ms"
            if measured
            else "",
            needs="TTFT in the first and the last slice",
            evidence=measured,
        )
    )
    counted = bool(first.get("requests") and last.get("requests"))
    results.append(
        expectation(
            "no error drift",
            counted and last["error_rate"] <= first["error_rate"] + 0.01,
            f"error rate {first.get('error_rate', 0):.3f} -> {last.get('error_rate', 0):.3f}",
            needs="requests in the first and the last slice",
            evidence=counted,
        )
    )
    return results


use_profile(
    Profile(
        "soak",
        expectations=expectations,
        slo_groups=("main",),
        target_rps=offered,
        extra=lambda samples, settings: {"slices": slices(group(samples, "main"), settings)},
    )
)
