"""The exchange record (opconform/exchange.py): what checks read, and what it never shows."""

from __future__ import annotations

from typing import Any

import pytest

from opconform.exchange import Exchange, endpoint
from opconform.sse import SSEEvent
from tests.support.fakes import make_exchange


def _exchange(**fields: Any) -> Exchange:
    return make_exchange(
        **{"request_headers": {"authorization": "Bearer op_sk_secret_value"}, **fields}
    )


def test_the_repr_never_shows_the_request_headers() -> None:
    exchange = _exchange(status=200, headers={"content-type": "application/json; charset=utf-8"})
    assert repr(exchange) == "<Exchange POST /chat/completions -> 200 application/json>"
    assert "op_sk_secret_value" not in repr([exchange])
    broken = _exchange(error="connection reset while reading: boom")
    assert broken.describe() == "POST /chat/completions -> connection reset while reading: boom"


def test_headers_are_read_by_any_case() -> None:
    exchange = _exchange(headers={"retry-after": "3"})
    assert exchange.header("Retry-After") == "3" and exchange.header("x-missing") is None
    assert _exchange().content_type == ""


def test_a_body_that_is_not_json_says_so_briefly() -> None:
    with pytest.raises(ValueError, match=r"body is not JSON \(JSONDecodeError\): '<html>"):
        _exchange(body=b"<html>" + b"x" * 500).json()
    assert _exchange(body=b'{"a": 1}').json() == {"a": 1}


def test_json_events_stop_at_done_and_name_the_broken_one() -> None:
    events = [SSEEvent('{"n": 1}', 1, 0.0), SSEEvent("[DONE]", 1, 0.0), SSEEvent("x", 1, 0.0)]
    assert _exchange(events=events).json_events() == [{"n": 1}]
    broken = [SSEEvent('{"n": 1}', 1, 0.0), SSEEvent("{oops", 1, 0.0)]
    with pytest.raises(ValueError, match="event 1 is not JSON"):
        _exchange(events=broken).json_events()


@pytest.mark.parametrize(
    ("fields", "failed"),
    [
        ({"error": "timed out", "error_kind": "timeout"}, True),
        ({"error": "reset", "error_kind": "transport"}, True),
        ({"error": "cut by the run's --deadline", "error_kind": "deadline"}, False),
        ({"error": "reset", "error_kind": "transport", "aborted": True}, False),
        ({"status": 500}, False),
    ],
)
def test_only_the_targets_transport_failures_count_as_failed(
    fields: dict[str, object], failed: bool
) -> None:
    assert _exchange(**fields).failed is failed


def test_the_endpoint_leaves_out_the_query() -> None:
    assert endpoint("GET", "/models?limit=2") == "GET /models"
    assert _exchange(path="/chat/completions?x=1").endpoint == "POST /chat/completions"
