"""The load tester's StreamClient (loadtests/stream_client.py) on its own: one request through
Locust's FastHttpSession against a scripted loopback server, and the Sample it fills in.

Locust patches the interpreter it is imported in (gevent), so the client runs in a child
process; the server runs here, on threads. Nothing is timed: only the order of the stamps.
(Its exact stamps and end-of-stream decisions on a fake response:
tests/unit/test_stream_client.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, clean_env
from tests.support.fakes import scripted_server
from tests.support.hostile import read_request

KEY = "op_sk_test_stream_client_secret"
RATE_HEADERS = "X-RateLimit-Limit: 60\r\nX-RateLimit-Remaining: 59\r\nX-RateLimit-Reset: 60\r\n"


def _chunk(content: str | None = None, **extra: Any) -> bytes:
    delta = {"content": content} if content is not None else {"role": "assistant"}
    payload = {"id": "c1", "choices": [{"index": 0, "delta": delta}], **extra}
    return f"data: {json.dumps(payload)}\n\n".encode()


def _answer(
    status: str, body: bytes, content_type: str = "application/json", extra: str = ""
) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    ).encode() + body


STREAM_HEAD = (
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
    + RATE_HEADERS
    + "\r\n"
).encode()
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
ERROR = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'


def _serve(conn: socket.socket) -> None:
    request = read_request(conn)
    if request is None:
        return
    body = json.loads(request[1])
    case = body["messages"][0]["content"]
    if case == "stream":
        conn.sendall(STREAM_HEAD + _chunk())
        for word in ("one", " two", " three"):
            time.sleep(0.02)
            conn.sendall(_chunk(word))
        conn.sendall(_chunk("", usage=USAGE) + b"data: [DONE]\n\n")
    elif case == "no-done":
        conn.sendall(STREAM_HEAD + _chunk() + _chunk("cut short"))
    elif case == "in-stream-error":
        conn.sendall(STREAM_HEAD + _chunk("a") + b'data: {"error": {"message": "upstream"}}\n\n')
    elif case == "endless":
        conn.sendall(STREAM_HEAD + _chunk())
        for index in range(500):  # until the client goes away (bounded all the same)
            conn.sendall(_chunk(f"{index} "))
            time.sleep(0.01)
    elif case == "refused":
        conn.sendall(
            _answer("429 Too Many Requests", ERROR, extra="Retry-After: 3\r\n" + RATE_HEADERS)
        )
    elif case == "broken-429":
        conn.sendall(_answer("429 Too Many Requests", b"busy", "text/plain"))
    elif case == "echo-key":  # a server that quotes the key back in its error
        conn.sendall(_answer("500 Internal Server Error", f"bad key Bearer {KEY}".encode()))
    elif case == "chat":
        answer = {"choices": [{"message": {"content": "hi"}}], "usage": USAGE}
        conn.sendall(_answer("200 OK", json.dumps(answer).encode(), extra=RATE_HEADERS))


# The child: one StreamClient on Locust's FastHttpSession, each case as the test names it.
_CHILD = """
import json, sys
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from opconform.loadtests.stream_client import StreamClient
from opconform.loadtests.workload import Request
from opconform.metrics import Sample

base_url, key, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
environment = Environment()
reported = []
def on_request(name, exception, **_):
    reported.append({"name": name, "failure": str(exception) if exception else None})
environment.events.request.add_listener(on_request)
session = FastHttpSession(
    base_url, environment.events.request, user=None, network_timeout=5.0, connection_timeout=5.0
)
client = StreamClient(
    session, {"authorization": "Bearer " + key, "content-type": "application/json"}, "m1",
    redact=lambda text: text.replace(key, "[REDACTED]"),
)
samples = {}
for name, options in cases.items():
    kind = "chat" if options.get("chat") else "stream"
    sample = Sample(group="main", kind=kind, scheduled=None, sent=0.0)
    request = Request([{"role": "user", "content": options["case"]}], 16, None)
    opened = []
    if kind == "chat":
        client.chat(request, sample, name=name, expects_429=options.get("expects_429", False))
    else:
        client.stream(
            request, sample, name=name, expects_429=options.get("expects_429", False),
            disconnect_after=options.get("disconnect_after"), on_open=lambda: opened.append(1),
        )
    samples[name] = {**sample.to_dict(), "opened": len(opened)}
print(json.dumps({"samples": samples, "reported": reported}))
"""

CASES: dict[str, dict[str, Any]] = {
    "stream": {"case": "stream"},
    "no-done": {"case": "no-done"},
    "in-stream-error": {"case": "in-stream-error"},
    "disconnect": {"case": "endless", "disconnect_after": 0.1},
    "refused": {"case": "refused"},
    "refused-expected": {"case": "refused", "expects_429": True},
    "broken-429": {"case": "broken-429", "expects_429": True},
    "echo-key": {"case": "echo-key"},
    "chat": {"case": "chat", "chat": True},
}


@pytest.fixture(scope="module")
def run() -> Iterator[dict[str, Any]]:
    with scripted_server(_serve) as base_url:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, base_url, KEY, json.dumps(CASES)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=clean_env(),
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    yield json.loads(done.stdout.strip().splitlines()[-1])


def test_a_whole_stream_is_stamped_in_order_with_its_usage(run: dict[str, Any]) -> None:
    sample = run["samples"]["stream"]
    assert (sample["status"], sample["outcome"], sample["opened"]) == (200, "ok", 1)
    assert sample["content_events"] == 3 and len(sample["gaps"]) == 2  # the empty chunk: none
    assert 0 < sample["ttfb"] <= sample["ttft"] <= sample["e2e"]
    assert sample["itl"] is not None and all(gap >= 0 for gap in sample["gaps"])
    assert (sample["output_tokens"], sample["prompt_tokens"], sample["total_tokens"]) == (3, 5, 8)
    assert not sample["tokens_approximate"]
    assert sample["ratelimit_headers"] and sample["ratelimit_remaining"] == 59


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("no-done", "the stream ended without [DONE]"),
        ("in-stream-error", "in-stream error: {'message': 'upstream'}"),
    ],
)
def test_a_broken_stream_says_how(run: dict[str, Any], name: str, detail: str) -> None:
    sample = run["samples"][name]
    assert (sample["outcome"], sample["detail"]) == ("broken_stream", detail)
    assert sample["tokens_approximate"]  # no usage chunk: counted per content event


def test_a_client_that_goes_away_is_no_broken_stream(run: dict[str, Any]) -> None:
    sample = run["samples"]["disconnect"]
    assert sample["disconnected"] and sample["outcome"] == "ok"
    assert sample["e2e"] >= 0.1 and sample["content_events"] < 500


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("refused", "unexpected_status"),  # a correct 429 where none was expected
        ("refused-expected", "expected_429"),
        ("broken-429", "broken_429"),  # no Retry-After, no error body: wrong even if expected
    ],
)
def test_a_429_is_judged_by_what_the_user_expects(
    run: dict[str, Any], name: str, outcome: str
) -> None:
    sample = run["samples"][name]
    assert (sample["status"], sample["outcome"]) == (429, outcome)
    if name != "broken-429":
        assert sample["retry_after"] == "3" and sample["ratelimit_limit"] == 60


def test_a_plain_completion_reads_its_usage(run: dict[str, Any]) -> None:
    sample = run["samples"]["chat"]
    assert (sample["kind"], sample["status"], sample["outcome"]) == ("chat", 200, "ok")
    assert sample["total_tokens"] == 8 and sample["e2e"] == sample["ttfb"] > 0


def test_locust_hears_every_outcome_and_never_a_key(run: dict[str, Any]) -> None:
    reported = {item["name"]: item["failure"] for item in run["reported"]}
    assert set(reported) == set(CASES)
    failed = {name for name, failure in reported.items() if failure}
    assert failed == {"no-done", "in-stream-error", "refused", "broken-429", "echo-key"}
    assert "[REDACTED]" in reported["echo-key"]
    assert KEY not in json.dumps(run)
