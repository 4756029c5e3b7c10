"""The judgement of a 429 the run did not ask for (opconform/refusals.py), on its own with a
pacer on a fake clock, and through the client's send path against an httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from opconform.client import ApiClient, Exchange, LimitSpent, UnexpectedRateLimit
from opconform.ratelimit import Pacer
from opconform.refusals import is_unexplained, judge_429, wait_out
from tests.support.fakes import FakeClock, make_exchange

RATE_LIMITED = {"error": {"message": "Rate limit exceeded", "type": "rate_limit_error"}}
QUOTA = {"error": {"message": "Daily token quota exceeded", "type": "rate_limit_error"}}


def _pacer(clock: FakeClock, **limits: tuple[str, int | None]) -> Pacer:
    return Pacer(limits or {"main": ("free", 60)}, clock=clock, sleep=clock.sleep)


def _refusal(
    body: dict[str, Any] = RATE_LIMITED, headers: dict[str, str] | None = None
) -> Exchange:
    return make_exchange(
        status=429, headers={"retry-after": "1", **(headers or {})}, body=json.dumps(body).encode()
    )


def test_a_429_in_the_first_window_is_explained_by_the_plan() -> None:
    clock = FakeClock()
    exchange = _refusal()
    judge_429(_pacer(clock), "main", exchange)
    assert exchange.limit_note is not None and "the plan explains it" in exchange.limit_note
    assert "another client or an earlier run" in exchange.limit_note
    assert not is_unexplained(exchange)


def test_a_429_below_the_plan_in_a_window_the_run_saw_is_evidence() -> None:
    clock = FakeClock()
    pacer = _pacer(clock)
    clock.now += 61  # a whole window seen from its start
    pacer.sent("main", 10)
    exchange = _refusal()
    judge_429(pacer, "main", exchange)
    assert exchange.below_plan and is_unexplained(exchange)
    assert exchange.limit_note == (
        "429 after 9 requests on the main key in a window the run saw from its start; "
        "the main key (Free: 60 requests/min) allows 60"
    )


def test_a_429_after_the_plans_requests_is_explained() -> None:
    clock = FakeClock()
    pacer = _pacer(clock)
    clock.now += 61
    pacer.sent("main", 60)
    exchange = _refusal()
    judge_429(pacer, "main", exchange)
    assert not is_unexplained(exchange)
    note = "the plan explains it: the run sent 60 requests in the last minute"
    assert exchange.limit_note == note


def test_a_stated_limit_below_the_plan_is_its_own_finding() -> None:
    clock = FakeClock()
    pacer = _pacer(clock)
    headers = {"x-ratelimit-limit": "30", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "9"}
    pacer.observe("main", 429, headers)
    exchange = _refusal(headers=headers)
    judge_429(pacer, "main", exchange)
    assert exchange.stated_below_plan and not exchange.below_plan
    assert exchange.limit_note is not None and "X-RateLimit-Limit is 30" in exchange.limit_note


def test_the_keys_together_filling_one_window_is_a_shared_limit() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, main=("free", 60), alt=("free", 60))
    clock.now += 61
    pacer.sent("main", 20)
    pacer.sent("alt", 45)
    exchange = _refusal()
    judge_429(pacer, "main", exchange)
    assert exchange.shared_limit and not exchange.below_plan and is_unexplained(exchange)


@pytest.mark.parametrize(
    ("body", "headers", "note"),
    [
        (QUOTA, {}, "a tokens/day (quota) refusal"),
        (RATE_LIMITED, {"x-ratelimit-remaining": "12"}, "not the requests/min limit"),
    ],
)
def test_a_429_of_another_limit_is_not_requests_per_minute(
    body: dict[str, Any], headers: dict[str, str], note: str
) -> None:
    clock = FakeClock()
    pacer = _pacer(clock)
    clock.now += 61  # even where a requests/min 429 would be evidence
    exchange = _refusal(body, headers)
    judge_429(pacer, "main", exchange)
    assert exchange.limit_note is not None and exchange.limit_note.startswith(note)
    assert not is_unexplained(exchange)


def test_waiting_out_a_quota_refusal_is_beyond_the_run() -> None:
    clock = FakeClock()
    with pytest.raises(LimitSpent, match="limit other than requests/min"):
        wait_out(_pacer(clock), "main", _refusal(QUOTA, {"retry-after": "3600"}))
    assert clock.slept == []


def test_waiting_out_an_explained_429_waits_for_the_reset_it_names() -> None:
    clock = FakeClock()
    wait_out(_pacer(clock), "main", _refusal(headers={"retry-after": "7"}))
    assert clock.slept and 7 <= sum(clock.slept) <= 7.5


# ------------------------------------------------------------ through the client's send path
Handler = Callable[[httpx.Request], httpx.Response]


def _client(clock: FakeClock, handler: Handler, sent: list[httpx.Request]) -> ApiClient:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    return ApiClient(
        "http://target/v1",
        {"main": "op_sk_test_main"},
        pacer=_pacer(clock),
        http_transport=httpx.MockTransport(answer),
    )


def _answers(*responses: httpx.Response) -> Handler:
    queue = list(responses)
    return lambda _request: queue.pop(0)


def _ok() -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": []})


def test_an_explained_429_is_waited_out_and_sent_once_more() -> None:
    clock, sent = FakeClock(), list[httpx.Request]()
    refusal = httpx.Response(429, json=RATE_LIMITED, headers={"retry-after": "5"})
    api = _client(clock, _answers(refusal, _ok()), sent)
    try:
        exchange = api.request("GET", "/models")
    finally:
        api.close()
    assert exchange.status == 200 and len(sent) == 2 and api.sent == {"main": 2}
    assert 5 <= sum(clock.slept) <= 5.5
    assert sent[0].headers["authorization"] == "Bearer op_sk_test_main"


def test_an_unexplained_429_is_raised_without_a_second_request() -> None:
    clock, sent = FakeClock(), list[httpx.Request]()
    refusal = httpx.Response(429, json=RATE_LIMITED, headers={"retry-after": "5"})
    api = _client(clock, _answers(refusal, _ok()), sent)
    clock.now += 61  # the run has seen a whole window: 1 request of 60 cannot fill it
    try:
        with pytest.raises(UnexpectedRateLimit) as raised:
            api.request("GET", "/models")
    finally:
        api.close()
    assert len(sent) == 1 and raised.value.exchange.below_plan
    assert "op_sk_test_main" not in str(raised.value)


def test_a_429_the_check_asked_for_is_returned_as_it_is() -> None:
    clock, sent = FakeClock(), list[httpx.Request]()
    refusal = httpx.Response(429, json=RATE_LIMITED, headers={"retry-after": "5"})
    api = _client(clock, _answers(refusal), sent)
    try:
        exchange = api.request("GET", "/models", allow_429=True)
    finally:
        api.close()
    assert exchange.status == 429 and len(sent) == 1 and clock.slept == []
    assert exchange.limit_note is not None  # judged all the same, for the evidence


def test_a_quota_429_is_a_spent_limit_not_a_failure() -> None:
    clock, sent = FakeClock(), list[httpx.Request]()
    refusal = httpx.Response(429, json=QUOTA, headers={"retry-after": "3600"})
    api = _client(clock, _answers(refusal), sent)
    try:
        with pytest.raises(LimitSpent):
            api.request("GET", "/models")
    finally:
        api.close()
    assert len(sent) == 1


def test_a_429_again_after_the_reset_it_named_is_a_window_that_did_not_reset() -> None:
    clock, sent = FakeClock(), list[httpx.Request]()
    refusal = httpx.Response(429, json=RATE_LIMITED, headers={"retry-after": "5"})
    api = _client(clock, _answers(refusal, refusal), sent)
    try:
        with pytest.raises(UnexpectedRateLimit) as raised:
            api.request("GET", "/models")
    finally:
        api.close()
    assert len(sent) == 2 and 5 <= sum(clock.slept) <= 5.5  # the first was waited out
    again = raised.value.exchange
    assert again.window_not_reset and is_unexplained(again) and not again.below_plan
    assert again.limit_note is not None and "its window did not reset" in again.limit_note
