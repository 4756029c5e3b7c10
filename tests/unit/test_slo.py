"""The run's latency SLOs (opconform/slo.py): a duration needs its unit."""

from __future__ import annotations

import pytest

from opconform.exitcodes import UsageError


def test_a_duration_needs_its_unit_but_a_ratio_does_not() -> None:
    from opconform.slo import parse_slo

    assert parse_slo("ttft_p95=800ms,e2e_p99=0.8s,error_rate=0.01") == {
        "ttft_p95": 0.8,
        "e2e_p99": 0.8,
        "error_rate": 0.01,
    }
    with pytest.raises(UsageError, match="has no unit"):
        parse_slo("itl_p50=40")
