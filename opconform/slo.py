"""The one grammar of latency and rate thresholds (SLOs), shared by `opconform run --latency-slo`
and `opconform load --slo`.

    ttft_p95=800ms   a latency metric, a statistic (pNN or mean), a duration with its unit
                     (ms, s, m): a bare number is refused, since "800" meant as milliseconds
                     would be read as seconds and make a gate that cannot fail
    error_rate=0.01  a ratio between 0 and 1: at most this share of requests failed
    goodput_rps=5    a floor: at least this many per second (achieved_rps, output_tokens_per_s,
                     goodput_rps)

Both commands used to carry their own parser, and the two disagreed on what they accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from opconform.contract import parse_duration
from opconform.exitcodes import UsageError

# Latencies one load sample carries (seconds, see opconform.metrics).
SAMPLE_LATENCIES = ("ttfb", "ttft", "e2e", "itl", "send_lag")
# Every latency a threshold may name: a sample's, the pooled inter-chunk gaps, and "completion",
# the conformance suite's whole non-streamed completion (OP-PERF-001).
LATENCY_METRICS = (*SAMPLE_LATENCIES, "gaps", "completion")
RATIO_SLOS = ("error_rate",)
FLOOR_SLOS = ("achieved_rps", "output_tokens_per_s", "goodput_rps")
_STAT = re.compile(r"^(p\d+(?:\.\d+)?|mean)$")
_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
EXAMPLES = "e.g. ttft_p95=800ms, itl_p50=40ms, e2e_p99=5s, error_rate=0.01, goodput_rps=2"


class SloError(UsageError):
    """A threshold that does not follow the grammar."""


def split_latency(name: str) -> tuple[str, str] | None:
    """ "send_lag_p95" -> ("send_lag", "p95"); None when `name` is no latency threshold."""
    for metric in LATENCY_METRICS:
        stat = name.removeprefix(metric + "_")
        if stat != name and _STAT.match(stat):
            return metric, stat
    return None


def parse_slo(spec: str | Iterable[str] | None, *, what: str = "--slo") -> dict[str, float]:
    """ "ttft_p95=800ms,error_rate=0.01" (or the items as a list) -> {"ttft_p95": 0.8,
    "error_rate": 0.01}; latencies in seconds. SloError names `what` and the bad item."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    slo: dict[str, float] = {}
    for item in items:
        if not item.strip():
            continue
        name, _, value = (part.strip() for part in item.partition("="))
        if not value:
            raise SloError(f"{what}: expected NAME=VALUE ({EXAMPLES}), not {item.strip()!r}")
        if split_latency(name):
            try:
                slo[name] = parse_duration(value, what=f"{what} {name}", default_unit=None)
            except UsageError as exc:
                raise SloError(str(exc)) from None
        elif name in RATIO_SLOS or name in FLOOR_SLOS:
            if not _NUMBER.match(value):
                raise SloError(f"{what} {name}: expected a plain number, not {value!r}")
            slo[name] = float(value)
            if name in RATIO_SLOS and slo[name] > 1:
                raise SloError(f"{what} {name}: a share between 0 and 1, not {value!r}")
        else:
            raise SloError(f"{what}: unknown threshold {name!r} ({EXAMPLES})")
    return slo
