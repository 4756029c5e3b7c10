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
- rates over one measurement window (first send to last send): offered (sends, or scheduled
  sends, inside it), achieved (requests completed inside it), output tokens/s; goodput:
  requests/s that succeeded and met every SLO threshold given; 429s apart (rate_limited_*).
- percentiles are nearest-rank over the raw samples (p50, p90, p95, p99, p99.9), never buckets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from opconform.slo import (
    FLOOR_SLOS,
    RATIO_SLOS,
    SAMPLE_LATENCIES,
    SloError,
    parse_slo,
    split_latency,
)

__all__ = ["SloError", "parse_slo"]  # the grammar lives in opconform.slo; re-exported here

PERCENTILES = (50, 90, 95, 99, 99.9)


@dataclass
class Sample:
    group: str  # which identity/role sent it: main, alt, pro, flood, polite ...
    kind: str  # stream, chat, models
    scheduled: float | None
    sent: float  # wall clock
    status: int | None = None
    outcome: str = "ok"  # ok, expected_429, unexpected_status, broken_429, broken_stream,
    #                     broken_body, transport_error
    # Whether the answer (any status) carried X-RateLimit-Limit, -Remaining and -Reset; None when
    # nothing was answered. Judged on its own: a stream without them is still a stream.
    ratelimit_headers: bool | None = None
    detail: str = ""
    ttfb: float | None = None
    ttft: float | None = None
    e2e: float | None = None
    itl: float | None = None
    gaps: list[float] = field(default_factory=list)
    content_events: int = 0
    output_tokens: int = 0
    prompt_tokens: int | None = None  # from usage, when the target sends it
    total_tokens: int = 0  # prompt + completion, from usage (what tokens/day counts)
    tokens_approximate: bool = False
    max_tokens: int | None = None  # what the request asked for (the workload's output target)
    retry_after: str | None = None
    retry_wait: float = 0.0  # seconds waited before sending, as the last Retry-After said
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None
    ratelimit_reset: int | None = None
    open_streams: int | None = None  # this process's open streams of the key when it was sent
    disconnected: bool = False  # the client went away on purpose before the end
    phase: str = ""  # which step of the profile sent it (probe, round-3 ...)

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
        known = {f.name for f in fields(cls)}  # samples.jsonl of an older run still loads
        return cls(**{k: v for k, v in data.items() if k in known})


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
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


def measurement_window(samples: list[Sample]) -> tuple[float, float]:
    """The span that offered and achieved rates share: from the first request's (scheduled)
    send to the last one's. Both rates count events inside the same span, so a run that sent
    4 requests every 5 s reports 0.8/s twice, never 0.8 offered against 1.0 achieved."""
    starts = sorted(s.scheduled if s.scheduled is not None else s.sent for s in samples)
    if len(starts) > 1 and starts[-1] > starts[0]:
        return starts[0], starts[-1]
    first = samples[0]
    return first.sent, first.sent + max(first.e2e or first.ttfb or 0.0, 1e-9)


def summarise(
    samples: list[Sample], target_rps: float | None = None, slo: dict[str, float] | None = None
) -> dict[str, Any]:
    """Everything a report needs about one group of samples."""
    if not samples:
        return {"requests": 0}
    start, stop = measurement_window(samples)
    window = max(stop - start, 1e-9)
    single = len(samples) == 1

    def inside(moment: float) -> bool:
        return single or start <= moment < stop

    outcomes: dict[str, int] = {}
    for sample in samples:
        outcomes[sample.outcome] = outcomes.get(sample.outcome, 0) + 1
    failures = sum(n for o, n in outcomes.items() if o not in ("ok", "expected_429"))
    offered = [s for s in samples if inside(s.scheduled if s.scheduled is not None else s.sent)]
    completed = [s for s in samples if inside(s.end)]
    ok_inside = [s for s in completed if s.outcome == "ok"]
    ok = [s for s in samples if s.outcome == "ok"]
    limited = sum(1 for s in samples if s.status == 429)
    good = [s for s in ok_inside if meets(s, slo or {})]
    return {
        "requests": len(samples),
        "outcomes": outcomes,
        "error_rate": failures / len(samples),
        "rate_limited": limited,
        "rate_limited_share": limited / len(samples),
        "window_s": window,
        "target_rps": target_rps,
        "offered_rps": len(offered) / window,
        "achieved_rps": len(completed) / window,
        "output_tokens": sum(s.output_tokens for s in ok),
        "output_tokens_per_s": sum(s.output_tokens for s in ok_inside) / window,
        # a stream the client left on purpose has no usage: approximate, but by design
        "tokens_approximate": any(s.tokens_approximate and not s.disconnected for s in ok),
        # Requests/s that succeeded and met every --slo latency threshold: under a quota, what
        # the client got, reported apart from how often it was refused (rate_limited_*).
        "goodput_rps": len(good) / window,
        "retry_wait_s": sum(s.retry_wait for s in samples),
        "gaps": distribution(g for s in samples for g in s.gaps),
        **{metric: distribution(getattr(s, metric) for s in ok) for metric in SAMPLE_LATENCIES},
    }


# ---------------------------------------------------------------------------- SLOs
def meets(sample: Sample, slo: dict[str, float]) -> bool:
    """Whether one request met every per-request latency threshold (for goodput)."""
    for name, limit in slo.items():
        split = split_latency(name)
        if split and split[0] in SAMPLE_LATENCIES:
            value = getattr(sample, split[0])
            if value is not None and value > limit:
                return False
    return True


def judge_slo(summary: dict[str, Any], slo: dict[str, float]) -> list[dict[str, Any]]:
    """One expectation per threshold; a metric the run never measured is inconclusive."""
    verdicts = []
    for name, limit in slo.items():
        split = split_latency(name)
        if split:
            value = (summary.get(split[0]) or {}).get(split[1])
            passed = value is not None and value <= limit
        else:
            value = summary.get(name)
            passed = value is not None and (
                value <= limit if name in RATIO_SLOS else value >= limit
            )
        assert split or name in RATIO_SLOS or name in FLOOR_SLOS
        status = "inconclusive" if value is None else ("pass" if passed else "fail")
        if value is None:
            detail = f"no request measured {name}"
        else:
            seconds = bool(split)  # latencies are kept in seconds, thresholds shown in ms
            shown, bound = (value * 1000, limit * 1000) if seconds else (value, limit)
            unit = " ms" if seconds else ""
            relation = ">=" if name in FLOOR_SLOS else "<="
            detail = f"{shown:.4g}{unit}, threshold {relation} {bound:.4g}{unit}"
        verdicts.append(
            {
                "name": f"slo {name}",
                "status": status,
                "passed": status == "pass",
                "needs": f"requests that measured {name}",
                "detail": detail,
                "limit": limit,
                "value": value,
            }
        )
    return verdicts
