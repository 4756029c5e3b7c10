"""The cases of tests/integration/test_load_profiles.py that start no process or server.

Load profiles: metrics from raw samples, arrivals and workloads, each profile against the
reference gateway (clean, short-and-fast, and with the faults that break its limits) and against
an independent minimal server, distributed runs, hostile targets and bad input.

Conformant behaviour must give pass or inconclusive, never fail; a fault that breaks a profile's
limit must give fail."""

from __future__ import annotations

import itertools
import random
import statistics
from pathlib import Path

import pytest

from opconform.exitcodes import UsageError
from opconform.loadtests.arrivals import schedule
from opconform.loadtests.workload import Distribution, Workload, read_dataset
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


def test_poisson_arrivals_are_poisson() -> None:
    """Inter-arrival times of a Poisson process are exponential: coefficient of variation 1,
    and the count over a long run is the rate times the time."""
    times = list(itertools.islice(schedule("poisson", 40.0, 0.0, random.Random(7)), 20_000))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.03)
    assert len(times) / times[-1] == pytest.approx(40.0, rel=0.03)
    steady = list(itertools.islice(schedule("constant", 4.0, 10.0, random.Random(), 0.5), 3))
    assert steady == pytest.approx([10.125, 10.375, 10.625])  # phase spreads users apart


def test_open_loop_arrivals_pause_for_retry_after_without_a_burst() -> None:
    """Arrivals due while Retry-After holds wait, then the process resumes with its spacing:
    they do not all leave together when the wait ends."""
    from opconform.loadtests.arrivals import paused

    moments = schedule("constant", 10.0, 0.0, random.Random())  # 0.0, 0.1, 0.2 ...
    blocked = {"until": 0.0}

    def until() -> float:
        return blocked["until"]

    arrivals = paused(moments, until)
    first = [next(arrivals) for _ in range(3)]
    blocked["until"] = 1.0  # a 429 at 0.2 s said: come back at 1.0 s
    after = [next(arrivals) for _ in range(4)]
    assert [m for m, _ in first] == pytest.approx([0.0, 0.1, 0.2])
    assert [m for m, _ in after] == pytest.approx([1.0, 1.1, 1.2, 1.3])
    assert [w for _, w in after] == pytest.approx([0.7, 0.0, 0.0, 0.0])


def test_retry_after_is_read_as_the_sdks_read_it() -> None:
    from opconform.rate_headers import retry_after_seconds

    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_seconds({"retry-after": date}, now=1445412480.0) == pytest.approx(10.0)
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_workloads_draw_their_targets(tmp_path: Path) -> None:
    rng = random.Random(3)
    assert Distribution.parse("256").draw(rng) == 256
    uniform = [Distribution.parse("uniform:10:20").draw(rng) for _ in range(500)]
    assert min(uniform) == 10 and max(uniform) == 20
    normal = [Distribution.parse("normal:300:30").draw(rng) for _ in range(2000)]
    assert statistics.mean(normal) == pytest.approx(300, rel=0.03)
    for bad in ("many", "uniform:5", "uniform:9:3", "gamma:1:2", "-4"):
        with pytest.raises(UsageError):
            Distribution.parse(bad)
    request = Workload(Distribution.parse("200"), Distribution.parse("64"), seed=1).next()
    words = request.messages[0]["content"].split()
    assert request.max_tokens == 64 and 180 <= len(words) <= 220
    assert "Count from 1 to 64" in request.messages[0]["content"]
    dataset = tmp_path / "prompts.jsonl"
    dataset.write_text(
        '{"prompt": "hi", "max_tokens": 7}\n{"messages": [{"role": "user", "content": "yo"}]}\n'
    )
    workload = Workload(Distribution.parse("1"), Distribution.parse("9"), read_dataset(dataset))
    drawn = [workload.next() for _ in range(4)]
    assert sorted(r.max_tokens for r in drawn) == [7, 7, 9, 9]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"text": 1}\n')
    with pytest.raises(UsageError, match=r"bad\.jsonl:2"):
        read_dataset(tmp_path / "bad.jsonl")
