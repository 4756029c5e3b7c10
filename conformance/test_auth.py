"""Authentication: Bearer op_sk_ keys on every endpoint; 401 and 403 with the documented body."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from conformance import expect
from opconform.config import Target

pytestmark = pytest.mark.area("auth")
requirement = pytest.mark.requirement

ENDPOINTS = [("GET", "/models"), ("GET", "/models/{model}"), ("POST", "/chat/completions")]


def _send(api: Any, method: str, path: str, model: str, **kwargs: Any) -> Any:
    body = expect.chat_request(model, max_tokens=4) if method == "POST" else None
    return api.request(method, path.format(model=model), json_body=body, **kwargs)


@requirement("OP-AUTH-001")
@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=lambda v: str(v).strip("/"))
def test_request_without_key_is_refused(api: Any, model: str, method: str, path: str) -> None:
    exchange = _send(api, method, path, model, key=None)
    expect.status(exchange, 401)


@requirement("OP-AUTH-002")
@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:", "(none)"])
def test_key_with_other_scheme_is_refused(api: Any, scheme: str) -> None:
    secret = api.secret("main")
    header = secret if scheme == "(none)" else f"{scheme} {secret}"
    exchange = api.request("GET", "/models", key=None, authorization=header)
    expect.status(exchange, 401)


@requirement("OP-AUTH-003")
@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=lambda v: str(v).strip("/"))
def test_key_without_prefix_is_refused(api: Any, model: str, method: str, path: str) -> None:
    unprefixed = api.secret("main").removeprefix("op_sk_")
    exchange = _send(api, method, path, model, key=None, authorization=f"Bearer {unprefixed}")
    expect.status(exchange, 401)


@requirement("OP-AUTH-004")
@pytest.mark.parametrize("kind", ["unknown", "empty"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=lambda v: str(v).strip("/"))
def test_invalid_key_is_refused(api: Any, model: str, method: str, path: str, kind: str) -> None:
    # An empty key is sent as a bare scheme: a trailing space is not a legal header value.
    header = (
        f"Bearer op_sk_opconform_unknown_{secrets.token_hex(12)}" if kind == "unknown" else "Bearer"
    )
    exchange = _send(api, method, path, model, key=None, authorization=header)
    expect.status(exchange, 401)


@requirement("OP-AUTH-005")
def test_key_without_permission_gets_403(api: Any, restricted: str) -> None:
    exchange = api.chat(expect.chat_request(restricted, max_tokens=4), key="restricted")
    expect.status(exchange, 403)
    expect.error_body(exchange)


@requirement("OP-AUTH-006")
def test_configured_key_is_accepted(api: Any) -> None:
    exchange = api.request("GET", "/models", key="main")
    assert exchange.status == 200, (
        f"the configured --api-key is not accepted: {expect.preview(exchange)}"
    )


@requirement("OP-AUTH-007")
def test_401_has_documented_body(api: Any) -> None:
    exchange = api.request(
        "GET",
        "/models",
        key=None,
        authorization=f"Bearer op_sk_opconform_unknown_{secrets.token_hex(12)}",
    )
    expect.status(exchange, 401)
    error = expect.error_body(exchange)
    assert error["type"] == "authentication_error", (
        f"401 error.type is {error['type']!r}; the reference documents 'authentication_error'"
    )


@requirement("OP-AUTH-006")
@pytest.mark.order_last
def test_run_was_not_mostly_refused(request: pytest.FixtureRequest, target: Target) -> None:
    """A run whose own keys were mostly refused proves nothing: the key was wrong."""
    from conformance.plugin import _RUN

    statuses = request.config.stash[_RUN].recorder.all_statuses
    mine = [status for label, status in statuses if label is not None]
    refused = [s for s in mine if s in (401, 403)]
    assert mine, "no request with a configured key was sent"
    assert len(refused) <= len(mine) / 2, (
        f"{len(refused)} of {len(mine)} requests sent with the configured keys were refused "
        "with 401/403: check --api-key and the other keys"
    )
