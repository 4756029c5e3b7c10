"""The load run's figures from raw samples (opconform/metrics.py): nearest-rank percentiles,
rates over one window, and SLOs parsed and judged."""

from __future__ import annotations

import pytest

from opconform.metrics import Sample, SloError, judge_slo, parse_slo, percentile, summarise


def test_percentiles_are_nearest_rank_on_raw_samples() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100 and percentile([], 50) is None


def test_slo_parsing_and_judging() -> None:
    slo = parse_slo("ttft_p95=800ms,error_rate=0.01,output_tokens_per_s=8")
    assert slo == {"ttft_p95": 0.8, "error_rate": 0.01, "output_tokens_per_s": 8}
    for bad in ("ttft=1s", "ttft_p95=fast", "latency_p95=1s"):
        with pytest.raises(SloError):
            parse_slo(bad)
    samples = [
        Sample(
            group="main",
            kind="stream",
            scheduled=None,
            sent=100.0 + i,
            ttft=0.1 * i,
            e2e=1.0,
            output_tokens=10,
        )
        for i in range(1, 11)
    ]
    summary = summarise(samples, slo={"ttft_p95": 0.5})
    assert summary["ttft"]["p95"] == pytest.approx(1.0)
    # one window for every rate: first send (101) to last send (110); 5 good requests ended in it
    assert summary["goodput_rps"] == pytest.approx(5 / 9)
    assert summary["offered_rps"] == pytest.approx(9 / 9)
    verdicts = {v["name"]: v["passed"] for v in judge_slo(summary, slo)}
    assert verdicts == {
        "slo ttft_p95": False,
        "slo error_rate": True,
        "slo output_tokens_per_s": True,
    }
