"""OP-RL-010's decision on one measurement (conformance/concurrency.py): a served extra request
is a FAIL only when nothing the run did before can have put the server's count off."""

from __future__ import annotations

from typing import Any

import pytest

from opconform.conformance.concurrency import Measurement, judge

TROUBLED = "3 answer(s) on the main key in the last 60s were errors, the last 4s ago"
SERVED = '200 application/json: \'{"id":"chatcmpl-1"}\''
REFUSED = '429 application/json: \'{"error":{"message":"too many open requests"}}\''


def _measured(**changes: Any) -> Measurement:
    base: dict[str, Any] = {
        "cap": 5,
        "plan": "free",
        "still_open": True,
        "status": 200,
        "headers": {},
        "answer": SERVED,
        "troubled": None,
    }
    return Measurement(**{**base, **changes})


def test_served_on_a_clean_key_fails() -> None:
    decision, why = judge(_measured())
    assert decision == "fail"
    assert why.startswith("with 5 streams open (the free plan's cap) the next request got 200")


def test_served_after_errors_is_measured_again_not_failed() -> None:
    """LiteLLM, measured: a streamed request failing after its retries gives back three slots,
    so a 6th request is served with 5 streams open until the key has been quiet a minute."""
    decision, why = judge(_measured(troubled=TROUBLED))
    assert decision == "again"
    assert TROUBLED in why


def test_the_measurement_after_a_quiet_window_decides() -> None:
    assert judge(_measured(again=True))[0] == "fail"
    assert judge(_measured(again=True, status=429, answer=REFUSED))[0] == "pass"
    # Still troubled (errors arrived during the wait): no third measurement, no FAIL.
    assert judge(_measured(again=True, troubled=TROUBLED))[0] == "inconclusive"


@pytest.mark.parametrize("troubled", [None, TROUBLED])
def test_refused_by_the_cap_passes(troubled: str | None) -> None:
    decision, _ = judge(_measured(status=429, answer=REFUSED, troubled=troubled))
    assert decision == "pass"


@pytest.mark.parametrize(
    ("headers", "answer"),
    [
        (
            {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "9"},
            REFUSED,
        ),
        ({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0"}, REFUSED),
        ({}, '429 application/json: \'{"error":{"message":"daily token quota spent"}}\''),
    ],
)
def test_a_429_of_another_limit_is_no_evidence(headers: dict[str, str], answer: str) -> None:
    decision, why = judge(_measured(status=429, headers=headers, answer=answer))
    assert decision == "inconclusive"
    assert "no evidence about the cap" in why


def test_streams_that_ended_on_their_own_prove_nothing() -> None:
    for status in (200, 429):
        assert judge(_measured(still_open=False, status=status))[0] == "inconclusive"
