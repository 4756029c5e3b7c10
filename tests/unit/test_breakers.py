"""When the client stops sending (opconform/breakers.py): transport failures only, in a row
across endpoints or in time spent, per endpoint, and the run's deadline."""

from __future__ import annotations

import time
from typing import Any

import pytest

from opconform.breakers import EndpointBreaker, RunStopped, TargetBreaker, TargetUnreachable
from opconform.exchange import Exchange
from opconform.limits import Limits
from tests.support.fakes import make_exchange


def _exchange(
    path: str = "/chat/completions",
    *,
    error_kind: str | None = None,
    elapsed: float = 1.0,
    aborted: bool = False,
) -> Exchange:
    return make_exchange(
        path,
        status=None if error_kind else 200,
        error_kind=error_kind,
        error=f"{error_kind} happened" if error_kind else None,
        elapsed=elapsed,
        aborted=aborted,
    )


def test_failures_in_a_row_open_the_target_breaker() -> None:
    breaker = TargetBreaker(Limits(target_failures_in_a_row=3))
    for _ in range(2):
        breaker.record(_exchange(error_kind="transport"))
    breaker.check()  # two are not yet a broken target
    breaker.record(_exchange(error_kind="timeout"))
    with pytest.raises(RunStopped, match="3 times in a row"):
        breaker.check()


def test_an_answer_between_failures_resets_the_count_not_the_time() -> None:
    breaker = TargetBreaker(Limits(target_failures_in_a_row=3, target_failed_seconds=25.0))
    for _ in range(4):
        breaker.record(_exchange(error_kind="transport", elapsed=6.0))
        breaker.record(_exchange())
    assert breaker.in_a_row == 0 and breaker.reason is None
    breaker.record(_exchange(error_kind="transport", elapsed=6.0))
    with pytest.raises(RunStopped, match="30s spent in failed exchanges"):
        breaker.check()


@pytest.mark.parametrize(
    "ours", [{"error_kind": "deadline"}, {"error_kind": "transport", "aborted": True}]
)
def test_our_own_cuts_are_no_failure_of_the_target(ours: dict[str, Any]) -> None:
    breaker = TargetBreaker(Limits(target_failures_in_a_row=1))
    exchange = _exchange(**ours)
    assert not exchange.failed
    breaker.record(exchange)
    breaker.check()
    assert breaker.failed_seconds == 0


def test_the_runs_deadline_stops_sending() -> None:
    breaker = TargetBreaker(Limits(), deadline=time.monotonic() - 1)
    remaining = breaker.remaining()
    assert remaining is not None and remaining < 0
    with pytest.raises(RunStopped, match="--deadline passed"):
        breaker.check()
    assert TargetBreaker(Limits()).remaining() is None


def test_an_endpoint_that_keeps_failing_is_not_called_again_the_others_are() -> None:
    breaker = EndpointBreaker(Limits(max_consecutive_failures=2))
    chat, models = "POST /chat/completions", "POST /models"
    for _ in range(2):
        breaker.record(_exchange(error_kind="timeout"))
    with pytest.raises(TargetUnreachable, match="2 transport failures in a row"):
        breaker.check(chat)
    breaker.check(models)
    breaker.record(_exchange("/chat/completions?x=1"))  # the query is the same endpoint
    breaker.check(chat)
    assert breaker.failures[chat] == 0
