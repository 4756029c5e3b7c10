"""--max-tokens-total (opconform/budget.py): what a request may spend and what it spent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opconform.budget import Budget, BudgetExhausted, max_tokens_of, tokens_spent
from opconform.exchange import Exchange
from opconform.sse import SSEEvent
from tests.support.fakes import make_exchange


def _answer(status: int = 200, body: Any = None, events: list[str] | None = None) -> Exchange:
    return make_exchange(
        status=status,
        headers={"content-type": "text/event-stream" if events else "application/json"},
        body=b"" if body is None else json.dumps(body).encode(),
        events=None if events is None else [SSEEvent(data, 1, 0.0) for data in events],
    )


def _chunk(**extra: Any) -> str:
    return json.dumps({"choices": [{"delta": {"content": "x"}}], **extra})


def test_a_completion_spends_its_usage_total() -> None:
    assert tokens_spent(_answer(body={"usage": {"total_tokens": 42}})) == 42


def test_a_stream_spends_its_usage_chunk_or_else_one_per_event() -> None:
    usage = {"usage": {"total_tokens": 7}}
    assert tokens_spent(_answer(events=[_chunk(), _chunk(**usage), "[DONE]"])) == 7
    assert tokens_spent(_answer(events=[_chunk(), "not json", _chunk(**usage)])) == 7
    assert tokens_spent(_answer(events=[_chunk(), _chunk(), _chunk(), "[DONE]"])) == 4


@pytest.mark.parametrize(
    "exchange",
    [
        _answer(429, {"error": {"message": "slow down"}}),
        _answer(body={"usage": {"total_tokens": "many"}}),
        _answer(body=["not", "an", "object"]),
    ],
)
def test_refusals_and_answers_without_a_total_spend_nothing(exchange: Exchange) -> None:
    assert tokens_spent(exchange) == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"max_tokens": 256}, 256),
        ({"max_tokens": 0}, 16),
        ({"max_tokens": True}, 16),
        ({"max_tokens": "64"}, 16),
        ({"max_tokens": 10**8}, 16),
        ([1, 2], 16),
        (None, 16),
    ],
)
def test_what_a_request_may_spend(body: Any, expected: int) -> None:
    assert max_tokens_of(body) == expected


def test_the_budget_refuses_what_would_exceed_it_and_accounts_answers() -> None:
    budget = Budget(100)
    budget.account(_answer(body={"usage": {"total_tokens": 90}}))
    budget.reserve(10)  # exactly the rest fits
    with pytest.raises(BudgetExhausted, match="90 of --max-tokens-total 100"):
        budget.reserve(11)
    assert budget.spent == 90
