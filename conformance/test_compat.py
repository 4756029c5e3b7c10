"""Wire properties the official SDKs depend on (valid SSE can still break a client)."""

from __future__ import annotations

import pytest

from opconform.client import ApiClient, Exchange
from opconform.conformance import expect
from opconform.conformance.prefetch import Pending, job
from opconform.conformance.run import Check
from opconform.conformance.skips import disabled
from opconform.sse import SSEStats
from opconform.target import Target

requirement = pytest.mark.requirement

GO_EMPTY_MESSAGE_LIMIT = 300


@job(streams=True)
def compat_stream(api: ApiClient, bulk_key: str, model: str) -> Exchange:
    """One stream, read by the four checks of its wire properties."""
    return api.chat(
        expect.chat_request(
            model,
            "Write a haiku about APIs.",
            max_tokens=24,
            stream_options={"include_usage": True},
        ),
        key=bulk_key,
        stream=True,
    )


@pytest.fixture
def stream(compat_stream: Pending) -> Exchange:
    exchange: Exchange = compat_stream.take()
    expect.status(exchange, 200)
    assert exchange.sse is not None
    return exchange


def _sse(stream: Exchange) -> SSEStats:
    """What the decoder saw on the wire (the fixture made sure there is)."""
    assert stream.sse is not None
    return stream.sse


@requirement("OP-COMPAT-001")
def test_no_event_field(stream: Exchange) -> None:
    events = {e.event for e in stream.events or [] if e.event is not None}
    assert "event" not in _sse(stream).fields_seen, (
        f"events carry an event: field ({', '.join(sorted(events)) or 'empty'}): the Python SDK "
        "hands such events to its own handler instead of yielding chunks, and Node openai fails "
        "on an event: block without data"
    )


@requirement("OP-COMPAT-002")
def test_no_id_or_retry_field(stream: Exchange) -> None:
    present = sorted(_sse(stream).fields_seen & {"id", "retry"})
    assert not present, (
        f"events carry {', '.join(f + ':' for f in present)} fields: once a server sends id:, the "
        "Python SDK dispatches empty events on later blank lines and fails to parse them"
    )


@requirement("OP-COMPAT-003")
def test_each_payload_on_one_data_line(stream: Exchange) -> None:
    split = [i for i, e in enumerate(stream.events or []) if e.data_lines > 1]
    assert not split, (
        f"{len(split)} events spread their JSON over several data: lines (first: event "
        f"{split[0]}): valid SSE, but go-openai treats each data: line as its own message"
    )


@requirement("OP-COMPAT-004")
def test_keepalives_stay_below_go_limit(stream: Exchange, check: Check) -> None:
    run = _sse(stream).max_non_data_run
    assert run < GO_EMPTY_MESSAGE_LIMIT, (
        f"{run} non-data lines between two data events: go-openai gives up after "
        f"{GO_EMPTY_MESSAGE_LIMIT}"
    )
    if run > GO_EMPTY_MESSAGE_LIMIT // 3:
        check.warn(
            f"{run} non-data lines between two data events, close to go-openai's "
            f"limit of {GO_EMPTY_MESSAGE_LIMIT}"
        )


@job(streams=True)
def midstream_error_stream(api: ApiClient, bulk_key: str, target: Target) -> Exchange:
    model_id = target.midstream_error_model
    if not model_id:
        disabled("needs --midstream-error-model")
    return api.chat(expect.chat_request(model_id, max_tokens=24), key=bulk_key, stream=True)


@requirement("OP-COMPAT-005")
def test_in_stream_error_starts_with_error_key(midstream_error_stream: Pending) -> None:
    exchange: Exchange = midstream_error_stream.take()
    errors = [e for e in exchange.events or [] if '"error"' in e.data]
    if not errors:
        pytest.skip("the mid-stream failure model sent no error event (see OP-ERR-008)")
    payload = errors[0].data
    if errors[0].data_lines > 1 and payload.lstrip("{ \n").startswith('"error"'):
        # Split over several data: lines, go-openai never sees this payload whole: that is
        # OP-COMPAT-003's deviation; the error key itself comes first.
        raise expect.Deviation(
            f"the in-stream error spreads over {errors[0].data_lines} data: lines", "OP-COMPAT-003"
        )
    assert payload.startswith('{"error":'), (
        f"in-stream error payload starts {payload[:40]!r}: go-openai recognises an error only "
        'when the payload starts with {"error":'
    )
