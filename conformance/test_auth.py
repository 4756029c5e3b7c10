"""Authentication: Bearer op_sk_ keys on every endpoint; 401 and 403 with the documented body."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from opconform.client import ApiClient, Exchange
from opconform.conformance import expect
from opconform.contract import KEY_PREFIX
from opconform.target import Target

requirement = pytest.mark.requirement

# The documented endpoints. GET /v1/models/{id} is not documented: OP-MODELS-005 (a SHOULD)
# judges it alone. Checks on GET /models stand on that endpoint answering at all.
ENDPOINTS = [
    pytest.param("GET", "/models", id="models"),
    pytest.param("POST", "/chat/completions", id="chat/completions"),
]


def _send(api: ApiClient, method: str, path: str, model: str, **kwargs: Any) -> Exchange:
    body = expect.chat_request(model, max_tokens=4) if method == "POST" else None
    exchange = api.request(method, path.format(model=model), json_body=body, **kwargs)
    if path == "/models" and exchange.status == 404:
        # No list endpoint at all says nothing about auth: OP-MODELS-001 fails for it.
        raise expect.Deviation(
            f"GET /models answers 404 with or without a key: {expect.preview(exchange)}",
            "OP-MODELS-001",
        )
    return exchange


@requirement("OP-AUTH-001")
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_request_without_key_is_refused(api: ApiClient, model: str, method: str, path: str) -> None:
    exchange = _send(api, method, path, model, key=None)
    expect.status(exchange, 401)


@requirement("OP-AUTH-002")
@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:", "(none)"])
def test_key_with_other_scheme_is_refused(api: ApiClient, model: str, scheme: str) -> None:
    secret = api.secret("main")
    header = secret if scheme == "(none)" else f"{scheme} {secret}"
    exchange = _send(api, "POST", "/chat/completions", model, key=None, authorization=header)
    expect.status(exchange, 401)


@requirement("OP-AUTH-003")
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_key_without_prefix_is_refused(api: ApiClient, model: str, method: str, path: str) -> None:
    unprefixed = api.secret("main").removeprefix(KEY_PREFIX)
    exchange = _send(api, method, path, model, key=None, authorization=f"Bearer {unprefixed}")
    expect.status(exchange, 401)


@requirement("OP-AUTH-004")
@pytest.mark.parametrize("kind", ["unknown", "empty"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_invalid_key_is_refused(
    api: ApiClient, model: str, method: str, path: str, kind: str
) -> None:
    # An empty key is sent as a bare scheme: a trailing space is not a legal header value.
    header = (
        f"Bearer op_sk_opconform_unknown_{secrets.token_hex(12)}" if kind == "unknown" else "Bearer"
    )
    exchange = _send(api, method, path, model, key=None, authorization=header)
    expect.status(exchange, 401)


@requirement("OP-AUTH-005")
def test_key_without_permission_gets_403(api: ApiClient, restricted: str) -> None:
    exchange = api.chat(expect.chat_request(restricted, max_tokens=4), key="restricted")
    expect.status(exchange, 403)
    expect.error_body(exchange)


@requirement("OP-AUTH-006")
def test_configured_key_is_accepted(api: ApiClient, model: str) -> None:
    # The primary endpoint, not GET /models: a missing list endpoint says nothing about the key.
    exchange = api.chat(expect.chat_request(model, max_tokens=4), key="main")
    if exchange.status in (401, 403):
        raise AssertionError(f"the configured --api-key is refused: {expect.preview(exchange)}")
    assert exchange.status == 200, (
        f"a chat completion with the configured --api-key got {expect.preview(exchange)}"
    )


@requirement("OP-AUTH-007")
def test_401_has_documented_body(api: ApiClient, model: str) -> None:
    exchange = _send(
        api,
        "POST",
        "/chat/completions",
        model,
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
def test_run_was_not_mostly_refused(evidence: Any, target: Target) -> None:
    """A run whose own keys were mostly refused proves nothing: the key was wrong."""
    per_key: dict[str, list[int | None]] = {}
    for label, status in evidence.all_statuses:
        # The restricted key is refused on purpose (OP-AUTH-005); anonymous requests too.
        if label is not None and label != "restricted":
            per_key.setdefault(label, []).append(status)
    assert per_key, "no request with a configured key was sent"
    for label, statuses in per_key.items():
        refused = [s for s in statuses if s in (401, 403)]
        assert len(refused) <= len(statuses) / 2, (
            f"{len(refused)} of {len(statuses)} requests sent with the {label} key were refused "
            f"with 401/403: check that key (--api-key and the other identities)"
        )
