"""502/503 and mid-stream failures, opt-in: the target must expose test models for them."""

from __future__ import annotations

import json

import pytest

from opconform.client import ApiClient, Exchange
from opconform.conformance import expect
from opconform.conformance.prefetch import Pending, job
from opconform.conformance.sdk import python_client, raised
from opconform.conformance.skips import disabled
from opconform.target import Target

requirement = pytest.mark.requirement


@job()
def upstream_failure(api: ApiClient, bulk_key: str, target: Target) -> Exchange:
    model_id = target.upstream_error_model
    if not model_id:
        disabled("needs --upstream-error-model")
    return api.chat(expect.chat_request(model_id), key=bulk_key)


@requirement("OP-ERR-006")
def test_upstream_failure_is_502(upstream_failure: Pending) -> None:
    exchange: Exchange = upstream_failure.take()
    expect.status(exchange, 502)
    expect.error_body(exchange)
    expect.rate_headers(exchange)


@job()
def unavailable_model(api: ApiClient, bulk_key: str, target: Target) -> Exchange:
    model_id = target.unavailable_model
    if not model_id:
        disabled("needs --unavailable-model")
    return api.chat(expect.chat_request(model_id), key=bulk_key)


@requirement("OP-ERR-007")
def test_unavailable_model_is_503(unavailable_model: Pending) -> None:
    exchange: Exchange = unavailable_model.take()
    expect.status(exchange, 503)
    expect.error_body(exchange)
    expect.rate_headers(exchange)


@job(streams=True)
def midstream_failure(api: ApiClient, bulk_key: str, target: Target) -> Exchange:
    model_id = target.midstream_error_model
    if not model_id:
        disabled("needs --midstream-error-model")
    body = expect.chat_request(model_id, max_tokens=24)
    return api.chat(body, key=bulk_key, stream=True)


@requirement("OP-ERR-008")
def test_midstream_failure_ends_with_error_event(
    api: ApiClient, bulk_key: str, target: Target, midstream_failure: Pending
) -> None:
    exchange: Exchange = midstream_failure.take()
    expect.status(exchange, 200)
    errors = []
    for event in exchange.events or []:
        if event.is_done:
            continue
        try:
            payload = json.loads(event.data)
        except ValueError:
            continue
        if isinstance(payload, dict) and payload.get("error"):
            errors.append(payload)
    assert errors, (
        "the upstream failure mid-stream was not reported: no data "
        '{"error": ...} event, so the SDKs take the truncated answer as complete '
        f"({len(exchange.events or [])} events, [DONE] x{exchange.done_count})"
    )
    assert exchange.done_count == 0, "an error event followed by [DONE] reads as success"
    # The SDK's view: the Python SDK must raise on it.
    client = python_client(api, target, bulk_key)
    body = json.loads(exchange.request_body)
    body.pop("stream", None)

    def consume() -> None:
        for _ in client.chat.completions.create(stream=True, **body):
            pass

    outcome = raised(consume)
    assert outcome not in ("no error",), "the Python SDK took the failed stream as a success"
