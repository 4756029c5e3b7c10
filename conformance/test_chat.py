"""POST /v1/chat/completions without streaming."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from opconform.client import ApiClient, Exchange
from opconform.conformance import expect
from opconform.conformance.prefetch import BULK, Pending, job
from opconform.contract import COUNTING_PROMPT
from opconform.target import Target

requirement = pytest.mark.requirement

COUNTING = COUNTING_PROMPT


def _completion(api: ApiClient, bulk_key: str, model: str) -> Exchange:
    return api.chat(expect.chat_request(model), key=bulk_key)


# One ordinary completion per check, sent together with the other jobs of the run: a target
# that breaks one property in one answer still fails only the check of that answer.
completion_for_json = job(name="completion_for_json")(_completion)
completion_for_schema = job(name="completion_for_schema")(_completion)
completion_for_usage = job(name="completion_for_usage")(_completion)


@requirement("OP-CHAT-006")
def test_completion_is_json(completion_for_json: Pending) -> None:
    exchange = completion_for_json.take()
    expect.status(exchange, 200)
    expect.json_body(exchange)


@requirement("OP-CHAT-001")
def test_completion_matches_schema(completion_for_schema: Pending) -> None:
    exchange = completion_for_schema.take()
    expect.status(exchange, 200)
    try:
        body = exchange.json()
    except ValueError as exc:
        raise AssertionError(str(exc)) from None
    expect.matches(body, "chat-completion-response", "the completion")


@job(slots=2, sends={BULK: "models"})
def completion_per_model(api: ApiClient, bulk_key: str, models: list[str]) -> list[Exchange]:
    calls = [functools.partial(_completion, api, bulk_key, m) for m in models]
    return api.gather(calls, key=bulk_key)


@requirement("OP-CHAT-002")
def test_completion_echoes_model(completion_per_model: Pending, models: list[str]) -> None:
    for model_id, exchange in zip(models, completion_per_model.take(), strict=True):
        expect.status(exchange, 200)
        echoed = exchange.json().get("model")
        # A dated snapshot of the requested alias (gpt-4o -> gpt-4o-2024-08-06) is the same model.
        assert isinstance(echoed, str) and (
            echoed == model_id or echoed.startswith(model_id + "-")
        ), f"asked for model {model_id!r}, the completion says {echoed!r}"


@requirement("OP-CHAT-003")
def test_usage_adds_up(completion_for_usage: Pending) -> None:
    exchange = completion_for_usage.take()
    expect.status(exchange, 200)
    usage = exchange.json().get("usage") or {}
    prompt, completion, total = (
        usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    if not (isinstance(prompt, int) and isinstance(completion, int) and isinstance(total, int)):
        raise expect.Deviation(f"usage is {usage}: not three integers", "OP-CHAT-001")
    assert total == prompt + completion, (
        f"usage.total_tokens {total} != prompt_tokens {prompt} + completion_tokens {completion}"
    )


@job(slots=5, sends={BULK: "samples"})
def cut_answers(api: ApiClient, bulk_key: str, model: str, target: Target) -> list[Exchange]:
    """--samples completions of a long answer asked with max_tokens 5 (two checks judge them)."""
    body = expect.chat_request(model, COUNTING, max_tokens=5)
    return api.gather([lambda: api.chat(body, key=bulk_key)] * target.samples, key=bulk_key)


@pytest.fixture
def cut_completions(cut_answers: Pending) -> Callable[[], list[Exchange]]:
    return cut_answers.take


@requirement("OP-CHAT-004")
def test_max_tokens_is_honoured(cut_completions: Callable[[], list[Exchange]]) -> None:
    over, unjudged = [], 0
    completions = cut_completions()
    for exchange in completions:
        expect.status(exchange, 200)
        body = expect.json_body(exchange, about="OP-CHAT-006")
        completion_tokens = (body.get("usage") or {}).get("completion_tokens")
        if isinstance(completion_tokens, int):
            if completion_tokens > 5:
                over.append(f"usage.completion_tokens is {completion_tokens}")
            continue
        # No usage to count by: a word is at least one token, so more than 5 words is proof.
        words = len(_content(body).split())
        if words > 5:
            over.append(f"the answer has {words} words (no usage), so at least {words} tokens")
        else:
            unjudged += 1
    assert not over, (
        f"max_tokens 5, but {over[0]} (in {len(over)} of {len(completions)} completions)"
    )
    if unjudged == len(completions):
        pytest.skip("no usage and short answers: nothing shows how many tokens were generated")


def _content(body: Any) -> str:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


@requirement("OP-CHAT-005")
def test_cut_completion_says_length(cut_completions: Callable[[], list[Exchange]]) -> None:
    judged, wrong = 0, []
    for exchange in cut_completions():
        expect.status(exchange, 200)
        body = exchange.json()
        completion_tokens = (body.get("usage") or {}).get("completion_tokens", 0)
        if not isinstance(completion_tokens, int) or completion_tokens != 5:
            continue  # stopped before the limit (or past it: OP-CHAT-004's): not cut here
        judged += 1
        finish = body["choices"][0].get("finish_reason")
        if finish != "length":
            wrong.append(finish)
    if not judged:
        pytest.skip("no answer was cut at max_tokens 5, so there is no finish_reason to judge")
    assert not wrong, (
        f"a completion cut at max_tokens 5 says finish_reason {wrong[0]!r}, not 'length' "
        f"(in {len(wrong)} of {judged} cut completions)"
    )


@job()
def documented_answer(api: ApiClient, bulk_key: str, model: str, temperature: float) -> Exchange:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "max_tokens": 16,
        "temperature": temperature,
        "stream": False,
    }
    return api.chat(body, key=bulk_key)


@requirement("OP-CHAT-007")
@pytest.mark.parametrize("temperature", [0, 0.7, 2])
def test_documented_request_is_accepted(documented_answer: Pending, temperature: float) -> None:
    expect.status(documented_answer.take(), 200)
