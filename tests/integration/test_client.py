"""The client's one send path (opconform/client.py): a stream a check holds open is accounted
for like any other request, by the breakers, the token budget, the request counts and the
evidence, and a stream the check abandons on purpose is no failure of the target. Against a
scripted loopback server (a TCP reset, a stream held open); the send path on an
httpx.MockTransport: tests/unit/test_client.py."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opconform.client import ApiClient, Exchange, Limits, StreamsDoNotEnd, TargetUnreachable
from opconform.timeouts import Timeouts
from tests.support.fakes import scripted_server
from tests.support.hostile import read_request

CHAT = "POST /chat/completions"


def _chunk(content: str, **extra: Any) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m1",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        **extra,
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def _read_model(conn: socket.socket) -> str | None:
    """Read one request; the model it asks for names what the server does."""
    request = read_request(conn)
    if request is None:
        return None
    body = request[1]
    return str(json.loads(body)["model"]) if body else ""


def _serve(conn: socket.socket) -> None:
    model = _read_model(conn)
    if model == "usage":  # a whole stream with a usage chunk
        conn.sendall(STREAM_HEAD + _chunk("Hi"))
        time.sleep(0.1)
        usage = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
        conn.sendall(_chunk(" there", usage=usage) + b"data: [DONE]\n\n")
    elif model == "endless":  # events until the client goes away
        conn.sendall(STREAM_HEAD)
        for index in range(3000):
            conn.sendall(_chunk(f"{index} "))
            time.sleep(0.01)
    elif model == "cut":  # one event, then a TCP reset
        conn.sendall(STREAM_HEAD + _chunk("Hello") + b'data: {"id": ')
        time.sleep(0.1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    elif model == "refuse":
        body = b'{"error": {"message": "too many streams", "type": "rate_limit_error"}}'
        conn.sendall(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with scripted_server(_serve) as url:
        yield url


@pytest.fixture
def recorded() -> list[Exchange]:
    return []


@pytest.fixture
def client(base_url: str, recorded: list[Exchange]) -> Iterator[ApiClient]:
    limits = Limits(timeouts=Timeouts(connect=2.0, read=5.0, request=10.0))
    api = ApiClient(base_url, {"main": "op_sk_test"}, limits, on_exchange=recorded.append)
    try:
        yield api
    finally:
        api.close()


def _body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def test_a_held_stream_cut_by_the_target_is_a_transport_failure(
    client: ApiClient, recorded: list[Exchange]
) -> None:
    held = client.hold_stream(_body("cut"))
    assert held.exchange.status == 200 and not client.breaker.in_a_row
    exchange = held.collect()
    assert exchange.error_kind == "transport", exchange.error
    assert client.breaker.in_a_row == 1 and client.breaker.failed_seconds > 0
    assert client.endpoints.failures[CHAT] == 1
    assert recorded == [exchange] and client.sent == {"main": 1}


def test_held_streams_cut_again_and_again_stop_the_endpoint(client: ApiClient) -> None:
    for _ in range(client.limits.max_consecutive_failures):
        client.hold_stream(_body("cut")).collect()
    with pytest.raises(TargetUnreachable):
        client.hold_stream(_body("cut"))
    with pytest.raises(TargetUnreachable):  # the same endpoint, whichever way it is called
        client.chat(_body("usage"))


def test_the_tokens_of_a_held_stream_count(client: ApiClient, recorded: list[Exchange]) -> None:
    held = client.hold_stream(_body("usage"))
    assert client.budget.spent == 0  # nothing is known before the stream has ended
    exchange = held.collect()
    assert exchange.done_count == 1 and exchange.error is None
    assert client.budget.spent == 42  # usage.total_tokens
    assert recorded == [exchange]
    client.chat(_body("usage"), stream=True)  # a stream read at once counts the same way
    assert client.budget.spent == 84 and client.sent == {"main": 2}


def test_an_abandoned_held_stream_is_no_failure(
    client: ApiClient, recorded: list[Exchange]
) -> None:
    client.hold_stream(_body("cut")).collect()
    assert client.breaker.in_a_row == 1
    spent = client.budget.spent  # the one event of the cut stream
    held = client.hold_stream(_body("endless"))
    held.wait_next_event()
    exchange = held.abort()
    assert exchange.aborted and exchange.status == 200
    assert held.drain().error is None  # the disconnect is ours: not read as a broken stream
    # The target served it: the failures in a row are over, nothing is added to their time.
    assert client.breaker.in_a_row == 0 and client.breaker.reason is None
    assert client.endpoints.failures[CHAT] == 0
    # What arrived before the disconnect is spent (counted per event without usage).
    assert client.budget.spent - spent == len(exchange.events or []) >= 2
    assert recorded[-1] is exchange and len(recorded) == 2
    held.abort()  # a second close records nothing more
    assert len(recorded) == 2


def test_a_refused_held_stream_is_read_and_recorded_once(
    client: ApiClient, recorded: list[Exchange]
) -> None:
    held = client.hold_stream(_body("refuse"))
    assert held.exchange.status == 429 and not held.open  # read to its end: evidence
    assert recorded == []  # recorded when the check lets it go
    exchange = held.abort()
    assert not exchange.aborted and exchange.json()["error"]["type"] == "rate_limit_error"
    assert recorded == [exchange] and client.sent == {"main": 1}
    assert client.breaker.in_a_row == 0 and client.budget.spent == 0


def test_after_a_stream_that_never_ends_no_other_stream_is_read(
    client: ApiClient, recorded: list[Exchange]
) -> None:
    """One never-ending stream is one finding: the next stream would only wait out its cap."""
    first = client.chat(_body("endless"), stream=True)
    assert (first.error_kind, first.past_event_cap) == ("stream-cap", True), first.error
    with pytest.raises(StreamsDoNotEnd) as raised:
        client.chat(_body("usage"), stream=True)
    assert raised.value.exchange is first and recorded == [first]
    held = client.hold_stream(_body("usage"))  # holding one open still works: no end awaited
    assert held.collect().done_count == 1
