"""Bad requests get 400 (unknown models a 4xx) with the error body; no input gets a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opconform.client import ApiClient, Exchange
from opconform.conformance import expect
from opconform.conformance.catalogue import requirements
from opconform.conformance.plan import FRUGAL_GENERATED, GENERATED
from opconform.conformance.prefetch import BULK, Pending, job

requirement = pytest.mark.requirement

USER = [{"role": "user", "content": "Say hello."}]


def _body(model_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model_id, "messages": USER, "max_tokens": 8}
    for name, value in changes.items():
        if value is _DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


_DROP = object()

# (id, requirement, body builder or raw bytes)
BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("not-json", "OP-VAL-001", b"{not json"),
    ("empty-body", "OP-VAL-001", b""),
    ("json-array", "OP-VAL-001", b"[1, 2]"),
    ("json-null", "OP-VAL-001", b"null"),
    ("missing-model", "OP-VAL-002", lambda m: _body(m, model=_DROP)),
    ("missing-messages", "OP-VAL-002", lambda m: _body(m, messages=_DROP)),
    ("model-number", "OP-VAL-003", lambda m: _body(m, model=42)),
    ("messages-string", "OP-VAL-003", lambda m: _body(m, messages="hello")),
    ("max-tokens-string", "OP-VAL-003", lambda m: _body(m, max_tokens="256")),
    ("temperature-string", "OP-VAL-003", lambda m: _body(m, temperature="hot")),
    ("stream-string", "OP-VAL-003", lambda m: _body(m, stream="true")),
    ("temperature-negative", "OP-VAL-004", lambda m: _body(m, temperature=-0.1)),
    ("temperature-above-2", "OP-VAL-004", lambda m: _body(m, temperature=2.1)),
    ("messages-empty", "OP-VAL-005", lambda m: _body(m, messages=[])),
    ("message-without-role", "OP-VAL-005", lambda m: _body(m, messages=[{"content": "hi"}])),
    (
        "message-unknown-role",
        "OP-VAL-010",
        lambda m: _body(m, messages=[{"role": "wizard", "content": "hi"}]),
    ),
    ("message-without-content", "OP-VAL-005", lambda m: _body(m, messages=[{"role": "user"}])),
    ("max-tokens-zero", "OP-VAL-006", lambda m: _body(m, max_tokens=0)),
    ("max-tokens-negative", "OP-VAL-006", lambda m: _body(m, max_tokens=-5)),
]

REQUIREMENT_OF_CASE = {case: rid for case, rid, _body in BAD_REQUESTS}


@pytest.fixture(scope="module")
def non_json_statuses() -> set[int]:
    """The statuses other than 400 that OP-VAL-001's cases got (they run first): another case
    refused with one of them fails the way OP-VAL-001 does."""
    return set()


@pytest.mark.parametrize(
    ("case", "body"),
    [
        pytest.param(
            case,
            body,
            id=case,
            marks=pytest.mark.requirement(rid),
        )
        for case, rid, body in BAD_REQUESTS
    ],
)
def test_bad_request_gets_400(
    api: ApiClient,
    bulk_key: str,
    model: str,
    case: str,
    body: Any,
    non_json_statuses: set[int],
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body(model)).encode()
    exchange = api.request(
        "POST",
        "/chat/completions",
        key=bulk_key,
        content=content,
        headers={"content-type": "application/json"},
    )
    mine = REQUIREMENT_OF_CASE[case] == "OP-VAL-001"
    if mine and exchange.status is not None and exchange.status > 400:
        non_json_statuses.add(exchange.status)
    if case == "message-unknown-role":
        # Input the reference does not define: any clean 4xx JSON error will do.
        assert exchange.status is not None and 400 <= exchange.status < 500, (
            f"unknown role: expected a 4xx, got {expect.preview(exchange)}"
        )
    elif not mine and exchange.status in non_json_statuses:
        # Refused with the status a body that is not JSON at all gets (422, say, or the same
        # crash): that handling is reported once, under OP-VAL-001. Another status (a 500 where
        # a JSON array got 401), or served (200): the body was not validated, this case's own.
        raise expect.Deviation(
            f"POST /chat/completions ({case}): expected 400, got {expect.preview(exchange)}",
            "OP-VAL-001",
        )
    else:
        expect.status(exchange, 400)
    expect.error_body(exchange)


# The same invalid bodies with "stream": true: validation must not depend on streaming.
STREAMED_BAD_REQUESTS = [
    (case, body) for case, _rid, body in BAD_REQUESTS if not isinstance(body, bytes)
]


@requirement("OP-VAL-009")
@pytest.mark.parametrize(
    ("case", "body"), STREAMED_BAD_REQUESTS, ids=[case for case, _ in STREAMED_BAD_REQUESTS]
)
def test_bad_streamed_request_gets_4xx(
    api: ApiClient, bulk_key: str, model: str, case: str, body: Any
) -> None:
    payload = {**body(model), "stream": True}
    if case == "stream-string":
        payload["stream"] = "true"
    exchange = api.request(
        "POST",
        "/chat/completions",
        key=bulk_key,
        json_body=payload,
        stream=True,
    )
    if exchange.status == 200 and requirements()[REQUIREMENT_OF_CASE[case]].level == "SHOULD":
        # Refusing this body at all is only a SHOULD: a target that serves it without stream
        # (that SHOULD's WARN) is consistent when it streams it, and this MUST has nothing to
        # block; one that refuses it without stream only must refuse it here too.
        plain = api.request("POST", "/chat/completions", key=bulk_key, json_body=body(model))
        if plain.status == 200:
            return
    if exchange.status is None or not 400 <= exchange.status < 500:
        # The same answer without stream is the case's own requirement: blocked by it if that
        # is broken too; a FAIL here means streaming skips validation.
        raise expect.Deviation(
            f"invalid body ({case}) with stream true: expected the same 4xx JSON error as "
            f"without stream, got {expect.preview(exchange)}"
            + (f" ({len(exchange.events or [])} events)" if exchange.events else ""),
            REQUIREMENT_OF_CASE[case],
        )
    expect.error_body(exchange)


@requirement("OP-VAL-007")
def test_unknown_model_gets_4xx(api: ApiClient, bulk_key: str) -> None:
    exchange = api.chat(expect.chat_request("opconform-no-such-model"), key=bulk_key)
    assert exchange.status is not None and 400 <= exchange.status < 500, (
        f"unknown model: expected a 4xx (400 or 404), got {expect.preview(exchange)}"
    )
    expect.error_body(exchange)


# Requests the reference defines (messages with role and content, a number for temperature):
# each must be served.
EDGE_REQUESTS: list[tuple[str, Any]] = [
    (
        "assistant-turn",
        lambda m: _body(
            m,
            messages=[
                *USER,
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Again."},
            ],
        ),
    ),
    ("unicode", lambda m: _body(m, messages=[{"role": "user", "content": "Héllo 世界 🚀"}])),
    ("temperature-integer", lambda m: _body(m, temperature=1)),
]
# OpenAI wire-format requests the reference does not define: served, or refused with a clean
# 4xx JSON error; never a 5xx.
UNDEFINED_REQUESTS: list[tuple[str, Any]] = [
    (
        "content-parts",
        lambda m: _body(
            m, messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]
        ),
    ),
    (
        "developer-role",
        lambda m: _body(m, messages=[{"role": "developer", "content": "Be brief."}, *USER]),
    ),
    ("unknown-extra-field", lambda m: _body(m, top_p=0.5, user="opconform")),
    ("stream-options-null", lambda m: _body(m, stream_options=None)),
]


def _answer(api: ApiClient, bulk_key: str, model: str, body: Any) -> Exchange:
    return api.chat(body(model), key=bulk_key)


# Each case is its own request (a job per check), sent with the run's other jobs.
defined_answer = job(name="defined_answer")(_answer)
undefined_answer = job(name="undefined_answer")(_answer)


@requirement("OP-VAL-008")
@pytest.mark.parametrize(("case", "body"), EDGE_REQUESTS, ids=[c for c, _ in EDGE_REQUESTS])
def test_valid_edge_request_is_served(defined_answer: Pending, case: str, body: Any) -> None:
    exchange: Exchange = defined_answer.take()
    expect.status(exchange, 200)
    _answer_matches(exchange, case)


def _answer_matches(exchange: Exchange, case: str) -> None:
    """The answer's format is OP-CHAT-001's: broken everywhere, it blocks this check."""
    errors = expect.schema_errors(exchange.json(), "chat-completion-response")
    if errors:
        raise expect.Deviation(
            f"answer to {case} does not match chat-completion-response.schema.json: "
            + "; ".join(errors[:3]),
            "OP-CHAT-001",
        )


@requirement("OP-VAL-008")
@pytest.mark.parametrize(
    ("case", "body"), UNDEFINED_REQUESTS, ids=[c for c, _ in UNDEFINED_REQUESTS]
)
def test_undefined_request_is_served_or_refused_cleanly(
    undefined_answer: Pending, case: str, body: Any
) -> None:
    exchange: Exchange = undefined_answer.take()
    assert exchange.status is not None and exchange.status < 500, (
        f"{case}: a request outside the reference got {expect.preview(exchange)}"
    )
    if exchange.status == 200:
        _answer_matches(exchange, case)
    else:
        expect.status(exchange, range(400, 500))
        expect.error_body(exchange)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(-1, 3, allow_nan=False),
    st.text(max_size=12),
)
_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "robot"]),
            "content": st.one_of(
                st.text(max_size=20),
                _SCALARS,
                st.lists(
                    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}),
                    max_size=2,
                ),
            ),
        },
    ),
    max_size=3,
)


@st.composite
def _request_bodies(draw: st.DrawFn, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:  # mostly present
        body["model"] = draw(st.one_of(st.just(model), st.just(model), _SCALARS))
    body["messages"] = draw(st.one_of(_MESSAGES, _MESSAGES, _SCALARS))
    for name in ("max_tokens", "temperature", "stream"):
        if draw(st.booleans()):
            body[name] = draw(_SCALARS)
    if body.get("stream") is True:
        body["stream"] = False  # keep the property run to plain answers
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 16:
        body["max_tokens"] = 16
    return body


@job(sends={BULK: "generated"})
def generated_run(api: ApiClient, bulk_key: str, model: str, frugal: bool) -> None:
    """A bounded, reproducible property run: 30 generated bodies, valid and invalid (10 on a
    Free bulk key, whose minute holds 60 requests for the whole run), one after the other; its
    counter-example is raised in the check."""

    @settings(
        max_examples=FRUGAL_GENERATED if frugal else GENERATED,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,  # one shrunk counter-example, reported as the FAIL
    )
    @given(body=_request_bodies(model))
    def property_check(body: dict[str, Any]) -> None:
        exchange = api.chat(body, key=bulk_key)
        assert exchange.status is not None and exchange.status < 500, (
            f"{json.dumps(body)[:200]} -> {expect.preview(exchange)}"
        )
        if exchange.status == 200:
            _answer_matches(exchange, json.dumps(body)[:120])
        else:
            expect.error_body(exchange)

    property_check()


@requirement("OP-VAL-008")
def test_generated_requests_never_get_5xx(generated_run: Pending) -> None:
    generated_run.take()
