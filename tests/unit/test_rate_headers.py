"""The rate-limit headers as the run reads them (opconform/rate_headers.py), and what the pacer
(opconform/ratelimit.py) and the token budget make of them."""

from __future__ import annotations

import pytest

from opconform.client import Budget, BudgetExhausted
from opconform.rate_headers import (
    CONTRACT,
    IETF,
    OPENAI,
    duration_seconds,
    other_convention,
    read_rate_headers,
    reset_in_seconds,
    retry_after_seconds,
)
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


# ---------------------------------------------------------------------------- conventions
def test_three_conventions_read_alike() -> None:
    contract = read_rate_headers(
        {
            "x-ratelimit-limit": "60",
            "x-ratelimit-remaining": "59",
            "x-ratelimit-reset": "1700000030",
        },
        now=1700000000.0,
    )
    assert contract is not None and contract.convention == CONTRACT
    assert (contract.limit, contract.remaining, contract.reset_seconds) == (60, 59, 30)
    openai = read_rate_headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6m0s",
        }
    )
    assert openai is not None and openai.convention == OPENAI
    assert (openai.limit, openai.remaining, openai.reset_seconds) == (60, 0, 360)
    ietf = read_rate_headers(
        {"ratelimit-policy": '"permin";q=60;w=60', "ratelimit": '"permin";r=12;t=41'}
    )
    assert ietf is not None and ietf.convention == IETF
    assert (ietf.limit, ietf.remaining, ietf.reset_seconds) == (60, 12, 41)
    assert read_rate_headers({"content-type": "application/json"}) is None


def test_other_convention_is_named_with_its_mapping() -> None:
    found = other_convention(
        {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "7"}
    )
    assert found is not None and "OpenAI" in found and "X-RateLimit-Remaining 7" in found
    assert other_convention({"x-ratelimit-limit": "60"}) is None  # the contract's own
    assert other_convention({}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("1h2m3.5s", 3723.5), ("20", 20.0)],
)
def test_openai_reset_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


def test_openai_reset_duration_garbage() -> None:
    assert duration_seconds("soon") is None
    assert duration_seconds("5x") is None


def test_retry_after_as_the_sdks_read_it() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    date = "Wed, 21 Oct 2015 07:28:30 GMT"
    assert retry_after_seconds({"retry-after": date}, now=1445412480.0) == 30
    assert retry_after_seconds({}) is None
