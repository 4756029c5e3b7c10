"""The client's one send path (opconform/client.py) against an httpx.MockTransport: the headers
of every request, and how each exchange is accounted for once it ended (request counts, token
budget, breakers, evidence, a fresh connection pool, streams that do not end). Held streams
against a real socket: tests/integration/test_client.py; a 429 through this path:
tests/unit/test_refusals.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from opconform.client import USER_AGENT, ApiClient, Exchange, StreamsDoNotEnd
from opconform.transport import TransportSettings

KEYS = {"main": "op_sk_test_client_main", "alt": "op_sk_test_client_alt"}
CHAT = "POST /chat/completions"
USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
Handler = Callable[[httpx.Request], httpx.Response]


def _event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def _chunk(content: str, **extra: Any) -> bytes:
    delta = {"content": content}
    return _event({"id": "c1", "choices": [{"index": 0, "delta": delta}], **extra})


def _stream(body: bytes | httpx.SyncByteStream) -> httpx.Response:
    headers = {"content-type": "text/event-stream"}
    if isinstance(body, bytes):
        return httpx.Response(200, headers=headers, content=body)
    return httpx.Response(200, headers=headers, stream=body)


class _CutAfter(httpx.SyncByteStream):
    """A body that sends its first bytes, then the connection is reset."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")


class _Target:
    """The MockTransport's side: answers with `handler`, keeps every request it was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def _client(
    target: _Target, recorded: list[Exchange], transport: TransportSettings | None = None
) -> ApiClient:
    return ApiClient(
        "http://target/v1",
        KEYS,
        on_exchange=recorded.append,
        transport=transport,
        http_transport=httpx.MockTransport(target),
    )


def _body(max_tokens: int = 16) -> dict[str, Any]:
    return {
        "model": "m1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
    }


def test_the_runs_headers_come_first_and_never_replace_the_suites_own() -> None:
    target = _Target(lambda _request: httpx.Response(200, json={"data": []}))
    settings = TransportSettings.from_values(
        {"header": ["X-Tenant: blue", "Accept: text/plain"]}, env={}
    )
    client = _client(target, [], settings)
    try:
        client.request("GET", "/models")
        client.request("GET", "/models", key=None)
        client.request("GET", "/models", key=None, authorization="Basic abc")
        client.request("GET", "/models", key="alt", headers={"x-tenant": "red"})
    finally:
        client.close()
    main, anonymous, verbatim, alt = (request.headers for request in target.requests)
    assert main["authorization"] == f"Bearer {KEYS['main']}"
    assert main["x-tenant"] == "blue" and main["accept"] == "application/json"
    assert main["user-agent"] == USER_AGENT
    assert "authorization" not in anonymous
    assert verbatim["authorization"] == "Basic abc"
    assert alt["authorization"] == f"Bearer {KEYS['alt']}" and alt["x-tenant"] == "red"
    assert str(target.requests[0].url) == "http://target/v1/models"
    assert client.sent == {"main": 1, "anonymous": 2, "alt": 1}


def test_a_stream_read_at_once_is_counted_once_with_its_usage() -> None:
    body = _chunk("Hi") + _chunk(" there", usage=USAGE) + _event("[DONE]")
    target = _Target(lambda _request: _stream(body))
    recorded: list[Exchange] = []
    client = _client(target, recorded)
    try:
        exchange = client.chat(_body(), stream=True)
    finally:
        client.close()
    assert exchange.status == 200 and exchange.error is None and exchange.done_count == 1
    sent = json.loads(target.requests[0].content)
    assert sent["stream"] is True and target.requests[0].headers["accept"] == "text/event-stream"
    assert client.budget.spent == 42  # usage.total_tokens, not the events
    assert recorded == [exchange] and client.sent == {"main": 1}
    assert client.breaker.in_a_row == 0 and client.endpoints.failures[CHAT] == 0


def test_a_stream_cut_mid_way_is_a_transport_failure_of_its_endpoint() -> None:
    target = _Target(lambda _request: _stream(_CutAfter(_chunk("Hello"))))
    recorded: list[Exchange] = []
    client = _client(target, recorded)
    try:
        exchange = client.chat(_body(), stream=True)
        assert exchange.error_kind == "transport", exchange.error
        assert exchange.error is not None and "connection reset" in exchange.error
        assert client.breaker.in_a_row == 1 and client.endpoints.failures[CHAT] == 1
        # What arrived before the reset is spent: one event, counted without a usage chunk.
        assert client.budget.spent == len(exchange.events or []) == 1
        assert recorded == [exchange]
        target.handler = lambda _request: httpx.Response(200, json={"data": []})
        client.request("GET", "/models")  # another endpoint answered: no longer in a row
    finally:
        client.close()
    assert client.breaker.in_a_row == 0 and client.endpoints.failures[CHAT] == 1


def test_after_a_stream_past_its_cap_no_other_stream_is_sent() -> None:
    """A stream with far more events than its max_tokens allows, and no [DONE], is cut at its
    cap; one such stream is one finding, so the next stream is not sent at all."""
    endless = b"".join(_chunk(f"{n} ") for n in range(200))
    target = _Target(lambda _request: _stream(endless))
    recorded: list[Exchange] = []
    client = _client(target, recorded)
    try:
        first = client.chat(_body(max_tokens=1), stream=True)
        assert (first.error_kind, first.past_event_cap) == ("stream-cap", True), first.error
        with pytest.raises(StreamsDoNotEnd) as raised:
            client.chat(_body(), stream=True)
        assert raised.value.exchange is first
        client.chat(_body())  # a plain completion is still sent
    finally:
        client.close()
    assert len(target.requests) == 2 and len(recorded) == 2


def test_a_5xx_is_followed_by_a_fresh_connection_pool() -> None:
    """A server may close the connection it sent a 5xx on: the next request must not be sent
    on it."""
    target = _Target(lambda _request: httpx.Response(500, json={"error": {"message": "boom"}}))
    client = _client(target, [])
    try:
        first_pool = client._http
        client.request("GET", "/models")
        after_500 = client._http
        target.handler = lambda _request: httpx.Response(200, json={"data": []})
        client.request("GET", "/models")
        assert after_500 is not first_pool and client._http is after_500
    finally:
        client.close()


def _reset_first(times: int) -> Handler:
    """Resets the first `times` requests before any answer, then answers."""
    resets = [times]

    def handle(_request: httpx.Request) -> httpx.Response:
        if resets[0] > 0:
            resets[0] -= 1
            raise httpx.ReadError("[Errno 104] Connection reset by peer")
        return httpx.Response(200, json={"data": []})

    return handle


def test_a_reset_before_any_answer_is_sent_once_more_on_a_new_pool() -> None:
    """A pooled connection the server had closed (mockllm after a 500, uvicorn at its keep-alive
    timeout) is reset before anything is answered: no evidence about the target either way, so
    the request goes once more, and the exchange and the counts say so."""
    target = _Target(_reset_first(1))
    recorded: list[Exchange] = []
    client = _client(target, recorded)
    try:
        first_pool = client._http
        exchange = client.request("GET", "/models")
        assert client._http is not first_pool
    finally:
        client.close()
    assert exchange.status == 200 and exchange.error is None
    assert exchange.resent is not None and "ReadError" in exchange.resent
    assert len(target.requests) == 2 and client.sent == {"main": 2}
    assert recorded == [exchange] and client.breaker.in_a_row == 0


def test_a_target_that_resets_every_request_is_reset_once_more_and_no_more() -> None:
    target = _Target(_reset_first(10))
    client = _client(target, [])
    try:
        exchange = client.request("GET", "/models")
    finally:
        client.close()
    assert exchange.status is None and exchange.error is not None
    assert "connection reset" in exchange.error and exchange.error_kind == "transport"
    assert len(target.requests) == 2 and client.sent == {"main": 2}
