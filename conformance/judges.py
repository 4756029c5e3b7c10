"""What one exchange says about one per-answer rule of the contract: pure functions of an
Exchange that return the problem (a str), None (the rule holds) or False (it does not apply).

The whole-run invariants (conformance/invariants.py) run them over every exchange of the run;
here they are only judgements, with no idea of which check sent the exchange or who owns it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from opconform.client import Exchange
from opconform.contract import RATE_HEADERS, WINDOW_SECONDS
from opconform.schemas.loader import validator


def _request_json(exchange: Exchange) -> dict[str, Any]:
    try:
        body = json.loads(exchange.request_body or b"null")
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _is_chat(exchange: Exchange) -> bool:
    return exchange.method == "POST" and exchange.path.split("?")[0] == "/chat/completions"


def _stream_requested(exchange: Exchange) -> bool:
    return _is_chat(exchange) and _request_json(exchange).get("stream") is True


def _complete_stream(exchange: Exchange) -> bool:
    """A 200 event stream we read to its end (not one a check disconnected from, and not one
    our own deadline cut: neither is evidence about how the server ends a stream)."""
    return (
        exchange.status == 200
        and exchange.events is not None
        and exchange.content_type == "text/event-stream"
        and not exchange.aborted
        and (exchange.error is None or exchange.error_kind == "stream-cap")
        and not _has_error_event(exchange)
    )


def _has_error_event(exchange: Exchange) -> bool:
    """A stream that reports a failure in-band ends the way OP-ERR-008 says, not like a
    completion: its framing is that requirement's business."""
    return any(event.data.startswith('{"error"') for event in exchange.events or [])


def _chunks(exchange: Exchange) -> list[dict[str, Any]] | None:
    try:
        payloads = exchange.json_events()
    except ValueError:
        return None
    return [p for p in payloads if isinstance(p, dict)]


def _max_tokens(exchange: Exchange) -> int | None:
    value = _request_json(exchange).get("max_tokens")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


def _documented(exchange: Exchange) -> bool:
    """A request the reference documents (GET /models, GET /models/{id}, POST
    /chat/completions)."""
    path = exchange.path.split("?")[0]
    if exchange.method == "GET":
        return path == "/models" or path.startswith("/models/")
    return exchange.method == "POST" and path == "/chat/completions"


def error_body(exchange: Exchange) -> str | bool | None:
    if exchange.status is None or exchange.status < 400 or exchange.status == 401:
        return False  # 401 bodies are OP-AUTH-007's
    if exchange.aborted or exchange.error:
        return False  # we stopped reading: the body we have is not the server's whole answer
    if exchange.status >= 500 and exchange.status not in (502, 503):
        return False  # a crash is OP-VAL-008's problem, whatever its body looks like
    if exchange.content_type != "application/json":
        if not _documented(exchange):
            return False  # an HTML page for an unknown path or method: OP-ERR-004/005's own
        return f"{exchange.status} served as {exchange.content_type or '(no content-type)'}"
    try:
        body = exchange.json()
    except ValueError as exc:
        return str(exc)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"{exchange.status} body has no error object: {exchange.body[:120]!r}"
    for name in ("message", "type"):
        if not isinstance(error.get(name), str) or not error.get(name):
            return f"{exchange.status} error.{name} is {error.get(name)!r}"
    return None


def headers(kind: str) -> Callable[[Exchange], str | bool | None]:
    def judge(exchange: Exchange) -> str | bool | None:
        if exchange.status is None:
            return False
        authenticated = exchange.key_label is not None
        if kind == "anonymous":
            applies = not authenticated and exchange.status == 401
        elif not authenticated:
            applies = False
        elif kind == "stream":
            applies = exchange.status == 200 and exchange.events is not None
        elif kind == "success":
            applies = 200 <= exchange.status < 300 and exchange.events is None
        else:
            # A crash is OP-VAL-008's, whatever its headers (as for its body, OP-ERR-001).
            crashed = exchange.status >= 500 and exchange.status not in (502, 503)
            applies = exchange.status >= 400 and not crashed
        if not applies:
            return False
        missing = [h for h in RATE_HEADERS if exchange.header(h) is None]
        if missing:
            return f"{exchange.status} without {', '.join(missing)}"
        bad = [h for h in RATE_HEADERS if not (exchange.header(h) or "").strip().isdigit()]
        return f"{', '.join(bad)} not a non-negative integer" if bad else None

    return judge


def _completion_json(exchange: Exchange) -> dict[str, Any] | None:
    if not _is_chat(exchange) or exchange.status != 200 or exchange.events is not None:
        return None
    if exchange.content_type != "application/json":
        return None
    try:
        body = exchange.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def completion_schema(exchange: Exchange) -> str | bool | None:
    if not _is_chat(exchange) or exchange.status != 200 or exchange.events is not None:
        return False
    body = _completion_json(exchange)
    if body is None:
        return f"200 completion is not a JSON object ({exchange.content_type or 'no type'})"
    error = next(iter(validator("chat-completion-response").iter_errors(body)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def usage_adds_up(exchange: Exchange) -> str | bool | None:
    """Non-streamed usage, and the usage chunk of a stream (include_usage): the arithmetic is
    this requirement's wherever usage is reported; the chunk's shape is OP-STREAM-009's."""
    if exchange.events is not None:
        usage = None
        if _is_chat(exchange) and _complete_stream(exchange):
            usage = next(
                (c["usage"] for c in _chunks(exchange) or [] if isinstance(c.get("usage"), dict)),
                None,
            )
    else:
        body = _completion_json(exchange)
        usage = body.get("usage") if body else None
    if not isinstance(usage, dict):
        return False
    prompt, completion, total = (
        usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    if not all(isinstance(v, int) for v in (prompt, completion, total)):
        return f"usage {usage}"
    assert isinstance(prompt, int) and isinstance(completion, int)
    return None if total == prompt + completion else f"usage {usage} does not add up"


def within_max_tokens(exchange: Exchange) -> str | bool | None:
    limit = _max_tokens(exchange)
    if limit is None or exchange.status != 200:
        return False
    usage: Any = None
    if exchange.events is not None:
        if not _complete_stream(exchange):
            return False
        for chunk in _chunks(exchange) or []:
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
    else:
        body = _completion_json(exchange)
        usage = body.get("usage") if body else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int):
        return False  # no usage to judge by: a chunk is not a token
    return f"completion_tokens {tokens} for max_tokens {limit}" if tokens > limit else None


def stream_rule(judge: Callable[[Exchange, list[dict[str, Any]]], str | bool | None]) -> Any:
    def rule(exchange: Exchange) -> str | bool | None:
        if not _complete_stream(exchange):
            return False
        chunks = _chunks(exchange)
        if chunks is None or not chunks:
            return False  # OP-STREAM-002 judges streams that are not JSON events
        return judge(exchange, chunks)

    return rule


def content_type(exchange: Exchange) -> str | bool | None:
    if not _stream_requested(exchange) or exchange.status != 200:
        return False
    if exchange.content_type == "text/event-stream":
        return None
    return f"stream answered with Content-Type {exchange.header('content-type')!r}"


def json_events(exchange: Exchange) -> str | bool | None:
    if not _complete_stream(exchange):
        return False
    try:
        payloads = exchange.json_events()
    except ValueError as exc:
        return str(exc)
    if not payloads:
        return "no data events"
    if exchange.incomplete_tail:
        return f"ended inside an event: {exchange.incomplete_tail[:60]!r}"
    bad = [i for i, p in enumerate(payloads) if not isinstance(p, dict)]
    return f"event {bad[0]} is not a JSON object" if bad else None


def chunk_schema(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | None:
    check = validator("chat-completion-chunk")
    for index, chunk in enumerate(chunks):
        error = next(iter(check.iter_errors(chunk)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"chunk {index}: {where}: {error.message}"
    return None


def one_identity(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | None:
    for name in ("id", "created", "model"):
        values = {json.dumps(c.get(name)) for c in chunks}
        if len(values) > 1:
            return f"{len(values)} different {name} values in one stream"
    return None


def role_first(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | None:
    choices = chunks[0].get("choices") or [{}]
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    role = delta.get("role") if isinstance(delta, dict) else None
    return None if role == "assistant" else f"first chunk's delta role is {role!r}"


def one_finish(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | bool | None:
    if exchange.error_kind == "stream-cap":
        return False  # we cut it before its end: its finish_reason may still have been coming
    reasons = [
        choice.get("finish_reason")
        for chunk in chunks
        if not isinstance(chunk.get("usage"), dict)  # the usage chunk's choices: OP-STREAM-009
        for choice in chunk.get("choices") or []
        if isinstance(choice, dict) and choice.get("finish_reason") is not None
    ]
    return None if len(reasons) == 1 else f"{len(reasons)} chunks carry a finish_reason"


def done_last(exchange: Exchange) -> str | bool | None:
    if not _complete_stream(exchange):
        return False
    if exchange.error_kind == "stream-cap":
        return f"no [DONE]: {exchange.error}"
    if exchange.done_count != 1:
        return f"[DONE] came {exchange.done_count} times"
    if exchange.events_after_done:
        return f"{exchange.events_after_done} events after [DONE]"
    return None


def past_max_tokens(exchange: Exchange) -> frozenset[str]:
    """A stream we cut for more events than its max_tokens allows went on past max_tokens:
    a target that ignores max_tokens ends such streams only later, so no [DONE] by then is
    OP-CHAT-004's deviation when that one is broken."""
    return frozenset({"OP-CHAT-004"}) if exchange.past_event_cap else frozenset()


def closes(exchange: Exchange) -> str | bool | None:
    if not _complete_stream(exchange) or exchange.done_count == 0:
        return False
    if exchange.closed_after_done is False:
        return "the connection stayed open after [DONE]"
    return None


def retry_after(exchange: Exchange) -> str | bool | None:
    """Every 429, whatever limit it reports and whatever its body looks like: a client waits by
    this header alone (the "no earlier than Reset" part needs the window, OP-RL-008's check)."""
    if exchange.status != 429:
        return False
    value = exchange.header("retry-after")
    if value is None:
        return "429 without Retry-After"
    if not value.strip().isdigit():
        return f"Retry-After {value!r} is not an integer number of seconds"
    if not 1 <= int(value) <= WINDOW_SECONDS:
        return f"Retry-After {value} is outside 1..{WINDOW_SECONDS:g}"
    return None


def no_5xx(exchange: Exchange) -> str | bool | None:
    if exchange.status is None or exchange.status < 500:
        return exchange.status is None and False
    if exchange.status in (502, 503):
        return False  # documented upstream conditions, judged by OP-ERR-006/007
    return f"{exchange.status} answer"


def model_list(exchange: Exchange) -> str | bool | None:
    if exchange.method != "GET" or exchange.path != "/models" or exchange.status != 200:
        return False
    try:
        body = exchange.json()
    except ValueError as exc:
        return str(exc)
    error = next(iter(validator("model-list").iter_errors(body)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"
