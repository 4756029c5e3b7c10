"""POST /v1/chat/completions without streaming."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import expect

pytestmark = pytest.mark.area("chat")
requirement = pytest.mark.requirement

COUNTING = "Count from 1 to 200, one number per line."


@requirement("OP-CHAT-006")
def test_completion_is_json(api: Any, bulk_key: str, model: str) -> None:
    exchange = api.chat(expect.chat_request(model), key=bulk_key)
    expect.status(exchange, 200)
    expect.json_body(exchange)


@requirement("OP-CHAT-001")
def test_completion_matches_schema(api: Any, bulk_key: str, model: str) -> None:
    exchange = api.chat(expect.chat_request(model), key=bulk_key)
    expect.status(exchange, 200)
    try:
        body = exchange.json()
    except ValueError as exc:
        raise AssertionError(str(exc)) from None
    expect.matches(body, "chat-completion-response", "the completion")


@requirement("OP-CHAT-002")
def test_completion_echoes_model(api: Any, bulk_key: str, models: list[str]) -> None:
    for model_id in models:
        exchange = api.chat(expect.chat_request(model_id), key=bulk_key)
        expect.status(exchange, 200)
        echoed = exchange.json().get("model")
        # A dated snapshot of the requested alias (gpt-4o -> gpt-4o-2024-08-06) is the same model.
        assert isinstance(echoed, str) and (
            echoed == model_id or echoed.startswith(model_id + "-")
        ), f"asked for model {model_id!r}, the completion says {echoed!r}"


@requirement("OP-CHAT-003")
def test_usage_adds_up(api: Any, bulk_key: str, model: str) -> None:
    exchange = api.chat(expect.chat_request(model), key=bulk_key)
    expect.status(exchange, 200)
    usage = exchange.json().get("usage") or {}
    prompt, completion, total = (
        usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    assert isinstance(prompt, int) and isinstance(completion, int) and isinstance(total, int), (
        f"usage is {usage}"
    )
    assert total == prompt + completion, (
        f"usage.total_tokens {total} != prompt_tokens {prompt} + completion_tokens {completion}"
    )


@requirement("OP-CHAT-004")
def test_max_tokens_is_honoured(api: Any, bulk_key: str, model: str) -> None:
    exchange = api.chat(expect.chat_request(model, COUNTING, max_tokens=5), key=bulk_key)
    expect.status(exchange, 200)
    completion_tokens = (exchange.json().get("usage") or {}).get("completion_tokens")
    assert isinstance(completion_tokens, int) and completion_tokens <= 5, (
        f"max_tokens 5, but usage.completion_tokens is {completion_tokens}"
    )


@requirement("OP-CHAT-005")
def test_cut_completion_says_length(api: Any, bulk_key: str, model: str) -> None:
    exchange = api.chat(expect.chat_request(model, COUNTING, max_tokens=5), key=bulk_key)
    expect.status(exchange, 200)
    body = exchange.json()
    completion_tokens = (body.get("usage") or {}).get("completion_tokens", 0)
    finish = body["choices"][0].get("finish_reason")
    if isinstance(completion_tokens, int) and completion_tokens < 5:
        pytest.skip(f"the model stopped after {completion_tokens} tokens, before max_tokens")
    assert finish == "length", (
        f"completion cut at max_tokens 5 ({completion_tokens} tokens) says finish_reason "
        f"{finish!r}, not 'length'"
    )


@requirement("OP-CHAT-007")
@pytest.mark.parametrize("temperature", [0, 0.7, 2])
def test_documented_request_is_accepted(
    api: Any, bulk_key: str, model: str, temperature: float
) -> None:
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
    exchange = api.chat(body, key=bulk_key)
    expect.status(exchange, 200)
