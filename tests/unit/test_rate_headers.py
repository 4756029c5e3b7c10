"""The rate-limit headers as the run reads them (opconform/rate_headers.py), and what the pacer
(opconform/ratelimit.py) and the token budget make of them."""

from __future__ import annotations

import pytest

from opconform.client import Budget, BudgetExhausted
from opconform.rate_headers import reset_in_seconds
from opconform.ratelimit import Pacer
from tests.support.fakes import FakeClock


def test_reset_classification_budget_and_pacer() -> None:
    assert reset_in_seconds("1700000060", now=1700000000.0) == 60
    assert reset_in_seconds("42") == 42
    assert reset_in_seconds("soon") is None
    budget = Budget(100)
    budget.add(90)
    with pytest.raises(BudgetExhausted):
        budget.reserve(16)
    # A clock that sleeps by moving on: with the real clock and a sleep that returns at once,
    # the pacer would spin for the whole 3 s it means to wait.
    clock = FakeClock()
    slept = clock.slept
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.observe("main", 200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "3"})
    pacer.before("main")
    assert slept and 2.5 < slept[0] <= 3.3


def test_retry_after_is_read_as_the_sdks_read_it() -> None:
    from opconform.rate_headers import retry_after_seconds

    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_seconds({"retry-after": date}, now=1445412480.0) == pytest.approx(10.0)
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
