"""Load-test metrics from raw samples (one per request), as LLM-benchmark users define them.

Pure Python, no Locust or gevent: the profiles record samples, this module summarises them, and
the report issue reads the same `load.json`.

Definitions (seconds unless said otherwise):
- scheduled: when the profile meant to send; sent: taken right before the request is written.
  send_lag = sent - scheduled is client-side delay (the generator falling behind).
- ttfb: first byte of the response body; ttft: first event with non-empty content (never the
  role-only first chunk); e2e: until [DONE] (or the end of a non-streamed body).
- itl (per request): (last content event - first content event) / (content events - 1);
  gaps: every inter-chunk gap between content events, pooled across requests.
- output_tokens: usage.completion_tokens (from stream_options.include_usage); when the target
  sends no usage, the number of content events, flagged approximate.
- rates over the measurement window (first send to last end): requests/s achieved, offered
  requests/s (what the profile scheduled), output tokens/s; goodput: requests/s that met every
  SLO threshold given.
- percentiles are nearest-rank over the raw samples (p50, p90, p95, p99, p99.9), never buckets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

PERCENTILES = (50, 90, 95, 99, 99.9)
LATENCY_METRICS = ("ttfb", "ttft", "e2e", "itl", "send_lag")


@dataclass
class Sample:
    group: str  # which identity/role sent it: main, alt, pro, flood, polite ...
    kind: str  # stream, chat, models
    scheduled: float | None
    sent: float  # wall clock
    status: int | None = None
    outcome: str = "ok"  # ok, expected_429, unexpected_status, broken_stream, missing_headers,
    #                     transport_error
    detail: str = ""
    ttfb: float | None = None
    ttft: float | None = None
    e2e: float | None = None
    itl: float | None = None
    gaps: list[float] = field(default_factory=list)
    content_events: int = 0
    output_tokens: int = 0
    total_tokens: int = 0  # prompt + completion, from usage (what tokens/day counts)
    tokens_approximate: bool = False
    retry_after: str | None = None
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None
    ratelimit_reset: int | None = None
    open_streams: int | None = None  # this process's open streams of the key when it was sent

    @property
    def send_lag(self) -> float | None:
        return None if self.scheduled is None else max(0.0, self.sent - self.scheduled)

    @property
    def end(self) -> float:
        return self.sent + (self.e2e or self.ttfb or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        return cls(**data)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(values: Iterable[float | None]) -> dict[str, float | None]:
    data = [v for v in values if v is not None]
    result: dict[str, float | None] = {f"p{p:g}": percentile(data, p) for p in PERCENTILES}
    result["mean"] = sum(data) / len(data) if data else None
    result["count"] = float(len(data))
    return result


def summarise(
    samples: list[Sample], offered_rps: float | None = None, slo: dict[str, float] | None = None
) -> dict[str, Any]:
    """Everything a report needs about one group of samples."""
    if not samples:
        return {"requests": 0}
    start = min(s.sent for s in samples)
    end = max(s.end for s in samples)
    window = max(end - start, 1e-9)
    outcomes: dict[str, int] = {}
    for sample in samples:
        outcomes[sample.outcome] = outcomes.get(sample.outcome, 0) + 1
    failures = sum(n for o, n in outcomes.items() if o not in ("ok", "expected_429"))
    tokens = sum(s.output_tokens for s in samples if s.outcome == "ok")
    summary: dict[str, Any] = {
        "requests": len(samples),
        "outcomes": outcomes,
        "error_rate": failures / len(samples),
        "rate_limited": sum(1 for s in samples if s.status == 429),
        "window_s": window,
        "achieved_rps": len(samples) / window,
        "offered_rps": offered_rps,
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / window,
        "tokens_approximate": any(s.tokens_approximate for s in samples),
        "gaps": distribution(g for s in samples for g in s.gaps),
    }
    for metric in LATENCY_METRICS:
        summary[metric] = distribution(getattr(s, metric) for s in samples if s.outcome == "ok")
    if slo:
        good = [s for s in samples if s.outcome == "ok" and meets(s, slo)]
        summary["goodput_rps"] = len(good) / window
    return summary


# ---------------------------------------------------------------------------- SLOs
_SLO = re.compile(r"^(?P<metric>[a-z_]+?)(?:_(?P<stat>p[\d.]+|mean))?$")
_VALUE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")
RATIO_SLOS = ("error_rate",)
FLOOR_SLOS = ("achieved_rps", "output_tokens_per_s", "goodput_rps")


class SloError(ValueError):
    pass


def parse_slo(text: str | None) -> dict[str, float]:
    """ "ttft_p95=800ms,error_rate=0.01" -> {"ttft_p95": 0.8, "error_rate": 0.01}."""
    slo: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name, value = name.strip(), value.strip()
        match = _VALUE.match(value)
        known = (
            name in RATIO_SLOS
            or name in FLOOR_SLOS
            or (
                (m := _SLO.match(name)) is not None
                and m.group("metric") in LATENCY_METRICS
                and m.group("stat")
            )
        )
        if not match or not known:
            raise SloError(
                f"--slo: cannot read {item!r}; use e.g. ttft_p95=800ms, itl_p50=40ms, "
                f"e2e_p99=5s, error_rate=0.01, output_tokens_per_s=100"
            )
        number = float(match.group(1))
        slo[name] = number / 1000 if match.group(2) == "ms" else number
    return slo


def meets(sample: Sample, slo: dict[str, float]) -> bool:
    """Whether one request met every per-request latency threshold (for goodput)."""
    for name, limit in slo.items():
        metric = name.split("_p")[0].removesuffix("_mean")
        if metric in LATENCY_METRICS:
            value = getattr(sample, metric)
            if value is not None and value > limit:
                return False
    return True


def judge_slo(summary: dict[str, Any], slo: dict[str, float]) -> list[dict[str, Any]]:
    verdicts = []
    for name, limit in slo.items():
        if name in RATIO_SLOS or name in FLOOR_SLOS:
            value = summary.get(name)
            passed = value is not None and (
                value <= limit if name in RATIO_SLOS else value >= limit
            )
        else:
            match = _SLO.match(name)
            assert match is not None
            stat = match.group("stat")
            value = summary.get(match.group("metric"), {}).get(stat)
            passed = value is not None and value <= limit
        verdicts.append({"name": f"slo {name}", "passed": passed, "limit": limit, "value": value})
    return verdicts
