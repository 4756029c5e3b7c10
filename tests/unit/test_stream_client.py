"""The load tester's StreamClient (loadtests/stream_client.py) on a fake response: when each line
is stamped, what ends a stream ([DONE], the end of the body, a reset, the user going away), and
what Locust is told. The clock is fake too, so the stamps are exact and nothing is timed.

The fake body is geventhttpclient's as the client reads it: `readline(b"\\n")` from a buffer
that fills packet by packet, each packet arriving at its time. (Through Locust's real session
against a loopback server: tests/integration/test_stream_client.py.)"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from opconform.loadtests import stream_client
from opconform.loadtests.stream_client import StreamClient
from opconform.loadtests.workload import Request
from opconform.metrics import Sample
from tests.support.fakes import FakeClock

KEY = "op_sk_test_stream_client_unit"
# What the reader spends on a line it finds already buffered: were such a line stamped when it
# is read, its event would come this much later than its bytes.
READ_COST = 0.001
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
RATE_HEADERS = {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "59", "x-ratelimit-reset": "9"}


def _event(content: str | None = None, **extra: Any) -> bytes:
    delta = {"content": content} if content is not None else {"role": "assistant"}
    payload = {"id": "c1", "choices": [{"index": 0, "delta": delta}], **extra}
    return f"data: {json.dumps(payload)}\n\n".encode()


DONE = b"data: [DONE]\n\n"


class FakeBody:
    """The response body: packets (arrival time, bytes) read through a buffer; reaching for a
    packet moves the clock to its arrival, reading a line already buffered costs READ_COST.
    After the last packet, `fail` is raised, or the body ends (readline returns b"")."""

    def __init__(
        self, clock: FakeClock, packets: list[tuple[float, bytes]], fail: Exception | None = None
    ) -> None:
        self.clock = clock
        self.packets = list(packets)
        self.fail = fail
        self._body_buffer = bytearray()
        self._sock: object | None = None  # no socket: no kernel stamps, the clock's time

    def readline(self, separator: bytes) -> bytes:
        buffered = separator in self._body_buffer
        while separator not in self._body_buffer:
            if not self.packets:
                if self.fail is not None:
                    raise self.fail
                rest = bytes(self._body_buffer)
                self._body_buffer.clear()
                return rest
            self.clock.now, data = self.packets.pop(0)
            self._body_buffer += data
        end = self._body_buffer.index(separator) + len(separator)
        line = bytes(self._body_buffer[:end])
        del self._body_buffer[:end]
        if buffered:
            self.clock.now += READ_COST
        return line


class FakeResponse:
    """Locust's response as `catch_response=True` hands it over; records what Locust is told
    (None for a success, the message of a failure)."""

    def __init__(
        self, status: int, headers: dict[str, str], body: FakeBody | None, content: bytes = b""
    ) -> None:
        self.status_code = status
        self.headers = headers
        self._response = body
        self.content = content
        self.error = None
        self.told: list[str | None] = []

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def success(self) -> None:
        self.told.append(None)

    def failure(self, message: str) -> None:
        self.told.append(message)


class FakeSession:
    def __init__(self, response: FakeResponse) -> None:
        self.response = response
        self.sent: list[dict[str, Any]] = []

    def post(self, path: str, **kwargs: Any) -> FakeResponse:
        self.sent.append({"path": path, **kwargs})
        return self.response


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The stream client's perf_counter, from 0.0 when the request leaves. Its event loop never
    turns between two reads (one greenlet reading alone), and no gevent hub is made in this
    process: the stamps are the clock's."""
    fake = FakeClock()
    fake.now = 0.0
    monkeypatch.setattr(stream_client, "time", SimpleNamespace(perf_counter=fake, time=time.time))
    loop = SimpleNamespace(iteration=0, now=fake)
    monkeypatch.setattr(
        stream_client, "gevent", SimpleNamespace(get_hub=lambda: SimpleNamespace(loop=loop))
    )
    return fake


def _stream(response: FakeResponse, **options: Any) -> tuple[Sample, FakeSession, list[int]]:
    session = FakeSession(response)
    client = StreamClient(
        session,
        {"authorization": f"Bearer {KEY}"},
        "m1",
        redact=lambda text: text.replace(KEY, "[REDACTED]"),
    )
    sample = Sample(group="main", kind="stream", scheduled=None, sent=0.0)
    opened: list[int] = []
    client.stream(
        Request([{"role": "user", "content": "hi"}], 16, None),
        sample,
        on_open=lambda: opened.append(1),
        **options,
    )
    return sample, session, opened


def test_each_line_is_stamped_when_its_bytes_arrived(clock: FakeClock) -> None:
    """A line is stamped when the packet that completed it arrived; a line that came in the same
    packet as the one before it shares its stamp, however late the reader gets to it."""
    two = _event(" two")
    body = FakeBody(
        clock,
        [
            (0.5, _event()),  # the role chunk: the first byte, no content
            (1.0, _event("one")),
            (1.25, two[:20]),  # " two" cut in the middle of its data line ...
            # ... completed here, with " three", the usage chunk and [DONE] in the same packet
            (1.5, two[20:] + _event(" three") + _event(None, usage=USAGE) + DONE),
            (9.0, _event("after [DONE]")),
        ],
    )
    response = FakeResponse(200, RATE_HEADERS, body)
    sample, session, opened = _stream(response)
    assert (sample.status, sample.outcome, sample.detail) == (200, "ok", "")
    assert sample.ttfb == 0.5 and opened == [1]
    assert sample.ttft == 1.0
    assert sample.gaps == pytest.approx([0.5, 0.0])
    assert sample.itl == pytest.approx(0.25)
    assert sample.content_events == 3
    assert sample.e2e is not None and 1.5 <= sample.e2e < 1.5 + 10 * READ_COST
    # [DONE] ends the stream: the packet after it is never read.
    assert len(body.packets) == 1
    assert (sample.output_tokens, sample.total_tokens, sample.tokens_approximate) == (3, 8, False)
    assert sample.ratelimit_headers and sample.ratelimit_remaining == 59
    assert response.told == [None]
    sent = json.loads(session.sent[0]["data"])
    assert sent["stream"] and sent["stream_options"] == {"include_usage": True}


def test_a_body_that_ends_without_done_is_a_broken_stream(clock: FakeClock) -> None:
    body = FakeBody(clock, [(0.1, _event()), (0.2, _event("cut")), (0.3, _event(" short"))])
    response = FakeResponse(200, RATE_HEADERS, body)
    sample, _, _ = _stream(response)
    assert (sample.outcome, sample.detail) == ("broken_stream", "the stream ended without [DONE]")
    assert sample.content_events == 2 and sample.gaps == pytest.approx([0.1])
    # No usage chunk: the tokens are counted per content event, and said to be approximate.
    assert (sample.output_tokens, sample.tokens_approximate) == (2, True)
    assert response.told == ["broken_stream: the stream ended without [DONE]"]


def test_a_reset_mid_stream_is_a_broken_stream_with_its_cause(clock: FakeClock) -> None:
    body = FakeBody(clock, [(0.1, _event()), (0.2, _event("a"))], ConnectionResetError("reset"))
    response = FakeResponse(200, RATE_HEADERS, body)
    sample, _, _ = _stream(response)
    assert (sample.outcome, sample.detail) == ("broken_stream", "ConnectionResetError: reset")
    assert (
        sample.ttft == 0.2 and sample.e2e is not None and 0.2 <= sample.e2e < 0.2 + 10 * READ_COST
    )
    assert response.told == ["broken_stream: ConnectionResetError: reset"]


def test_an_error_event_breaks_the_stream_even_before_done(clock: FakeClock) -> None:
    error = b'data: {"error": {"message": "upstream"}}\n\n'
    body = FakeBody(clock, [(0.1, _event("a") + error + DONE)])
    sample, _, _ = _stream(FakeResponse(200, RATE_HEADERS, body))
    assert (sample.outcome, sample.detail) == (
        "broken_stream",
        "in-stream error: {'message': 'upstream'}",
    )


def test_a_user_who_goes_away_ends_the_stream_without_breaking_it(clock: FakeClock) -> None:
    """The client closes the connection at the first line on or after disconnect_after: that
    line's event is not judged, nothing more is read, and no [DONE] is missed."""
    packets = [(round(0.1 * n, 1), _event(f"{n} ")) for n in range(1, 51)]
    body = FakeBody(clock, packets)
    response = FakeResponse(200, RATE_HEADERS, body)
    sample, _, _ = _stream(response, disconnect_after=0.35)
    assert sample.disconnected and (sample.outcome, sample.detail) == ("ok", "")
    assert sample.content_events == 3 and len(body.packets) == 46
    assert body._sock is None  # the half-read connection is closed, never pooled
    assert response.told == [None]


@pytest.mark.parametrize(
    ("headers", "body", "expects_429", "outcome", "told"),
    [
        ({"retry-after": "3"}, b'{"error": {}}', True, "expected_429", None),
        ({"retry-after": "3"}, b'{"error": {}}', False, "unexpected_status", "unexpected_status: "),
        ({}, b"busy", True, "broken_429", "broken_429: 429 without Retry-After or error body"),
    ],
    ids=["expected", "unexpected", "broken"],
)
def test_a_refused_stream_is_judged_by_what_the_user_expects(
    clock: FakeClock,
    headers: dict[str, str],
    body: bytes,
    expects_429: bool,
    outcome: str,
    told: str | None,
) -> None:
    response = FakeResponse(429, {**RATE_HEADERS, **headers}, None, body)
    sample, _, opened = _stream(response, expects_429=expects_429)
    assert (sample.status, sample.outcome) == (429, outcome)
    assert sample.ttft is None and opened == []
    assert response.told == [told]


def test_locust_never_hears_a_key(clock: FakeClock) -> None:
    """A target that quotes the key back in an error: Locust writes failures to its console,
    CSV and HTML, so the detail is redacted before it is told."""
    response = FakeResponse(500, {}, None, f"bad key Bearer {KEY}".encode())
    sample, _, _ = _stream(response)
    assert sample.outcome == "unexpected_status"
    assert response.told == ["unexpected_status: bad key Bearer [REDACTED]"]
    assert KEY not in sample.detail
