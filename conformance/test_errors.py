"""Error bodies and status codes."""

from __future__ import annotations

import secrets

import pytest

from opconform.client import ApiClient, Exchange
from opconform.conformance import expect
from opconform.conformance.prefetch import BULK, Pending, job
from opconform.target import Target

requirement = pytest.mark.requirement

# Which error.type words fit a status (the reference documents authentication_error for 401;
# the rest follow the usual OpenAI/Anthropic vocabulary).
TYPE_WORDS = {
    400: ("invalid", "request", "bad"),
    401: ("authentication",),
    403: ("permission", "forbidden"),
    404: ("not_found", "invalid_request", "not found"),
    405: ("invalid_request", "method"),
    429: ("rate_limit", "quota", "too_many", "limit"),
}


@job(others=("restricted",), sends={BULK: 2, "anonymous": 1, "restricted": 1})
def error_answers(api: ApiClient, bulk_key: str, target: Target) -> list[Exchange]:
    """One answer of every error status the suite can provoke with its identities."""
    unknown_key = f"Bearer op_sk_opconform_unknown_{secrets.token_hex(12)}"
    exchanges = [
        api.request("GET", "/models", key=None, authorization=unknown_key),
        api.request(
            "POST",
            "/chat/completions",
            key=bulk_key,
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        api.chat(expect.chat_request("opconform-no-such-model"), key=bulk_key),
    ]  # an unknown path and a wrong method are OP-ERR-004/005's own
    if api.has_key("restricted") and target.restricted_model:
        exchanges.append(
            api.chat(expect.chat_request(target.restricted_model, max_tokens=4), key="restricted")
        )
    return exchanges


@pytest.fixture
def error_exchanges(error_answers: Pending) -> list[Exchange]:
    """The error answers. A request the target did not refuse is left out here (its own
    requirement judges that); with no error answer at all there is nothing to judge."""
    exchanges: list[Exchange] = error_answers.take()
    errors = [e for e in exchanges if e.status is not None and e.status >= 400]
    if not errors:
        pytest.skip("the target refused none of the requests meant to provoke an error")
    return errors


@requirement("OP-ERR-001")
def test_errors_have_documented_body(error_exchanges: list[Exchange]) -> None:
    for exchange in error_exchanges:
        if exchange.status == 401:
            continue  # the 401 body is documented on its own: OP-AUTH-007 judges it
        try:
            expect.error_body(exchange)
        except expect.Deviation as exc:
            raise AssertionError(str(exc)) from None  # this is OP-ERR-001's own check


@requirement("OP-ERR-002")
def test_error_code_is_integer_status(error_exchanges: list[Exchange]) -> None:
    for exchange, error in expect.error_objects(error_exchanges):
        code = error.get("code")
        if isinstance(code, str):
            raise AssertionError(
                f"{exchange.method} {exchange.path} -> {exchange.status}: error.code is {code!r}, "
                "a string as OpenAI sends it: this breaks the documented format (the integer "
                "HTTP status) but none of the official SDKs"
            )
        assert code == exchange.status, (
            f"{exchange.method} {exchange.path} -> {exchange.status}: error.code is {code!r}, "
            "not the integer HTTP status the reference shows"
        )


@requirement("OP-ERR-003")
def test_error_type_fits_status(error_exchanges: list[Exchange]) -> None:
    judged = untyped = 0
    for exchange, error in expect.error_objects(error_exchanges):
        words = TYPE_WORDS.get(exchange.status or 0)
        # The 401 type is documented (OP-AUTH-007's); a missing type is OP-ERR-001's.
        if exchange.status == 401 or words is None:
            continue
        if not isinstance(error.get("type"), str):
            untyped += 1
            continue
        judged += 1
        error_type = error["type"].lower()
        assert any(word in error_type for word in words), (
            f"{exchange.method} {exchange.path} -> {exchange.status}: error.type {error_type!r} "
            f"does not fit the status (expected something like {words[0]!r})"
        )
    if untyped and not judged:
        raise expect.Deviation("no error answer carries an error.type to judge", "OP-ERR-001")


def _json_not_html(exchange: Exchange) -> None:
    """OP-ERR-004/005's own property: the error is answered as JSON, not an HTML page. What
    the JSON says (an error object, or FastAPI's {"detail": ...}) is OP-ERR-001's format,
    judged with every other error answer, so whatever order the checks run in it is one root
    cause there."""
    try:
        expect.json_body(exchange)
    except expect.Deviation as exc:
        raise AssertionError(str(exc)) from None
    expect.error_body(exchange)


@requirement("OP-ERR-004")
def test_unknown_path_gets_json_error(api: ApiClient, bulk_key: str) -> None:
    exchange = api.request("GET", "/opconform-no-such-path", key=bulk_key)
    expect.status(exchange, 404)
    _json_not_html(exchange)


@requirement("OP-ERR-005")
@pytest.mark.parametrize(("method", "path"), [("DELETE", "/chat/completions"), ("PUT", "/models")])
def test_wrong_method_gets_json_error(
    api: ApiClient, bulk_key: str, method: str, path: str
) -> None:
    exchange = api.request(method, path, key=bulk_key)
    expect.status(exchange, (404, 405))
    _json_not_html(exchange)
