"""Assertions shared by the checks. Each failure message says what was expected, what came
back, and enough of the answer to act on it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from opconform.client import Exchange
from opconform.contract import RATE_HEADERS
from opconform.rate_headers import other_convention
from opconform.schemas.loader import validator
from opconform.text import elide


def _showing(error: AssertionError, exchange: Exchange) -> AssertionError:
    """The failure, with the exchange that shows it (the report's evidence and replay line)."""
    error.exchange = exchange  # type: ignore[attr-defined]
    return error


def failure(message: str, exchange: Exchange) -> AssertionError:
    """A failed expectation shown by `exchange` (when the check attached others too)."""
    return _showing(AssertionError(message), exchange)


class Deviation(AssertionError):
    """A failed expectation that is really about another requirement (the error body, the
    rate-limit headers, the stream's framing): when that requirement is broken elsewhere in the
    run, the check that met it is blocked by it instead of failing a second time."""

    def __init__(self, message: str, *requirements: str) -> None:
        super().__init__(message)
        self.prerequisites = requirements


def preview(exchange: Exchange, size: int = 200) -> str:
    if exchange.error:
        return exchange.error
    body = exchange.body[:size].decode("utf-8", errors="replace")
    return f"{exchange.status} {exchange.content_type or '(no content-type)'}: {body!r}"


def status(exchange: Exchange, expected: int | Iterable[int], about: str | None = None) -> None:
    """The status a check needs. `about`: the requirement whose deviation a wrong status is
    when the check only needs the situation (a 401 to look at, a 200 on the main key)."""
    allowed = {expected} if isinstance(expected, int) else set(expected)
    shown = " or ".join(str(s) for s in sorted(allowed))
    if exchange.status in allowed:
        return
    message = f"{exchange.method} {exchange.path}: expected {shown}, got {preview(exchange)}"
    raise _showing(Deviation(message, about) if about else AssertionError(message), exchange)


def schema_errors(instance: Any, schema: str) -> list[str]:
    errors = sorted(validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]


def matches(instance: Any, schema: str, what: str) -> None:
    errors = schema_errors(instance, schema)
    assert not errors, f"{what} does not match {schema}.schema.json: " + "; ".join(errors[:5])


def json_body(exchange: Exchange, about: str | None = None) -> Any:
    if exchange.content_type != "application/json":
        message = (
            f"{exchange.method} {exchange.path}: expected Content-Type application/json, got "
            f"{preview(exchange)}"
        )
        raise _showing(Deviation(message, about) if about else AssertionError(message), exchange)
    try:
        return exchange.json()
    except ValueError as exc:
        message = f"{exchange.method} {exchange.path}: {exc}"
        error = Deviation(message, about) if about else AssertionError(message)
        raise _showing(error, exchange) from None


def error_body(exchange: Exchange) -> dict[str, Any]:
    """The documented error body, as far as OP-ERR-001 requires it: JSON with error.message
    and error.type strings (the type of error.code is OP-ERR-002's business)."""
    body = json_body(exchange, about="OP-ERR-001")
    problems = [
        p
        for p in schema_errors(body, "error")
        if not p.startswith("error/code") and "'code' is a required property" not in p
    ]
    if problems:
        raise _showing(
            Deviation(
                f"{exchange.method} {exchange.path} -> {exchange.status}: error body "
                f"is not the documented format: {'; '.join(problems)}; body "
                f"{elide(json.dumps(body), 200)}",
                "OP-ERR-001",
            ),
            exchange,
        )
    return dict(body["error"])


def error_objects(exchanges: Iterable[Exchange]) -> list[tuple[Exchange, dict[str, Any]]]:
    """The answers that carry an error object, each with it: what OP-ERR-002/003 judge, even
    where other answers (or other fields) break OP-ERR-001. Blocked by OP-ERR-001 only when
    not one answer carries an object to judge."""
    found, problems = [], []
    for exchange in exchanges:
        try:
            body = exchange.json() if exchange.content_type == "application/json" else None
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            found.append((exchange, error))
        else:
            problems.append(preview(exchange, 120))
    if not found:
        raise Deviation(f"no error answer carries an error object: {problems[0]}", "OP-ERR-001")
    return found


def headers_requirement(exchange: Exchange) -> str:
    """Which requirement puts the rate-limit headers on this kind of answer."""
    if exchange.status == 401 and exchange.key_label is None:
        return "OP-RL-014"
    if exchange.status is not None and exchange.status >= 400:
        return "OP-RL-002"
    return "OP-RL-003" if exchange.events is not None else "OP-RL-001"


def rate_headers(exchange: Exchange) -> dict[str, int]:
    about = headers_requirement(exchange)
    missing = [h for h in RATE_HEADERS if exchange.header(h) is None]
    if missing:
        # Another convention is reported, never accepted: the contract names its headers.
        other = other_convention(exchange.headers)
        seen = other or f"present: {', '.join(sorted(exchange.headers)) or 'none'}"
        raise Deviation(
            f"{exchange.method} {exchange.path} -> {exchange.status}: missing "
            f"{', '.join(missing)} ({seen})",
            about,
        )
    values = {h: exchange.header(h) or "" for h in RATE_HEADERS}
    bad = {h: v for h, v in values.items() if not v.strip().isdigit()}
    if bad:
        raise Deviation(
            f"{exchange.method} {exchange.path}: rate-limit headers not integers: {bad}", about
        )
    return {h: int(v) for h, v in values.items()}


def chat_request(
    model: str, content: str = "Say hello in five words.", max_tokens: int = 16, **extra: Any
) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        **extra,
    }


def streamed_text(chunks: list[Any]) -> str:
    parts = []
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
    return "".join(parts)


def stream_chunks(exchange: Exchange) -> list[dict[str, Any]]:
    """The JSON chunks of a successful stream (asserting the basics every stream check needs)."""
    status(exchange, 200)
    assert exchange.events is not None
    if exchange.content_type != "text/event-stream":
        raise Deviation(
            f"stream answered as {exchange.content_type or '(no content-type)'}", "OP-STREAM-001"
        )
    try:
        payloads = exchange.json_events()
    except ValueError as exc:
        raise Deviation(f"stream: {exc}", "OP-STREAM-002") from None
    if not payloads:
        raise Deviation(f"stream has no data events: {preview(exchange)}", "OP-STREAM-002")
    return [p for p in payloads if isinstance(p, dict)]
