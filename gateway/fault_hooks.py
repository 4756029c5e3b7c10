"""The faults that change an answer, kept off the contract's path.

`Gateway` (app.py) builds every answer the way the contract says. When faults are switched on it
hands that answer to `FaultHooks`, which bends it the way each fault says: the model list,
rate-limit headers, error bodies, completions, and streams (a middleware over the finished SSE
events). With no fault switched on the gateway never calls in here, so the hot path pays nothing
for faults it does not have.

Faults that change a decision rather than an answer (who is authenticated, what is admitted, what
is valid, which model is resolved) stay where that decision is made, by constant name.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.catalogue import CREATED, Latency, MockModel
from gateway.faults import Faults
from gateway.limits import Verdict
from opconform.contract import WINDOW_SECONDS

JSON = "application/json"
DONE_EVENT = b"data: [DONE]\n\n"
UNUSABLE_MODEL_ID = "gpt-3.5-turbo-legacy"
# chaos-endless-stream: 10 ms a piece for at most 10 minutes.
_ENDLESS_PIECES = 60_000
_ENDLESS_TPOT_MS = 10.0
_NEVER_ENDS_TPOT_MS = 50.0
# Every fault is switched on and off per process, so "every fifth" counts per process too.
_EVERY = 5


def _without_rate_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.startswith("x-ratelimit-")}


class TruncatedResponse(Response):
    """Chaos: promises a body, sends a little of it, and drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
        raise ConnectionAbortedError("chaos-reset: connection dropped on purpose")


class FaultHooks:
    """The switched-on faults of one gateway process, applied to the answers it built."""

    def __init__(self, faults: frozenset[str]) -> None:
        self.on = faults.__contains__
        self._streams = 0
        self._completions = 0

    # ------------------------------------------------------------------ models
    def model_list(self, body: dict[str, Any]) -> dict[str, Any]:
        on, data = self.on, body["data"]
        if on(Faults.MODELS_TOO_FEW):
            data = _spread(data, 20)
        if on(Faults.MODELS_SINGLE_PROVIDER):
            data = [{**m, "owned_by": "openai"} for m in data]
        if on(Faults.MODELS_DUPLICATE_ID):
            data.insert(1, dict(data[0]))
        if on(Faults.MODELS_LISTED_UNUSABLE):
            data.insert(
                2,
                {
                    "id": UNUSABLE_MODEL_ID,
                    "object": "model",
                    "created": CREATED,
                    "owned_by": "openai",
                },
            )
        return {"object": "models" if on(Faults.MODELS_WRONG_OBJECT) else "list", "data": data}

    async def slow_model_list(self) -> None:
        if self.on(Faults.SLOW_MODEL_LIST):
            await asyncio.sleep(0.6)

    # ------------------------------------------------------------------ headers and errors
    def shown_verdict(self, verdict: Verdict) -> Verdict:
        """What the X-RateLimit-* headers say, as opposed to what the limiter decided."""
        on = self.on
        return replace(
            verdict,
            limit=100 if on(Faults.RATELIMIT_LIMIT_WRONG) else verdict.limit,
            remaining=verdict.limit if on(Faults.RATELIMIT_REMAINING_STATIC) else verdict.remaining,
            reset=verdict.reset * 1000
            if on(Faults.RATELIMIT_RESET_MILLISECONDS)
            else verdict.reset,
        )

    def rate_convention(self, headers: dict[str, str], verdict: Verdict) -> dict[str, str]:
        """The X-RateLimit-* headers as the chosen convention says them (or not at all)."""
        on = self.on
        if on(Faults.RATELIMIT_HEADERS_OFF):
            return {}
        seconds = max(0, verdict.reset - int(time.time()))
        if on(Faults.RATELIMIT_HEADERS_OPENAI):
            return {
                "x-ratelimit-limit-requests": str(verdict.limit),
                "x-ratelimit-remaining-requests": str(verdict.remaining),
                "x-ratelimit-reset-requests": f"{seconds}s",
            }
        if on(Faults.RATELIMIT_HEADERS_IETF):
            return {
                "ratelimit-policy": f'"permin";q={verdict.limit};w={int(WINDOW_SECONDS)}',
                "ratelimit": f'"permin";r={verdict.remaining};t={seconds}',
            }
        return headers

    def success_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {} if self.on(Faults.RATELIMIT_HEADERS_MISSING_ON_SUCCESS) else headers

    def retry_after(self, retry_after: int) -> str | None:
        """The Retry-After of a 429 (None: leave it out)."""
        if self.on(Faults.NO_RETRY_AFTER_429):
            return None
        return "1" if self.on(Faults.RETRY_AFTER_TOO_EARLY_429) else str(retry_after)

    def unauthorized_message(self, message: str, authorization: str) -> str:
        if self.on(Faults.ERROR_ECHOES_KEY):
            return f"{message} (got {authorization!r})"
        return message

    def error_response(
        self, status: int, body: dict[str, Any], headers: dict[str, str]
    ) -> Response:
        """The error answer the contract built (`body` is the inside of {"error": ...})."""
        on = self.on
        # 401s are OP-RL-014's (ratelimit-headers-missing-on-401) and OP-AUTH-007's
        # (auth-error-type-wrong): the error-wide faults leave them alone.
        if on(Faults.RATELIMIT_HEADERS_MISSING_ON_ERRORS) and status != 401:
            headers = _without_rate_headers(headers)
        if status == 401:
            if on(Faults.RATELIMIT_HEADERS_MISSING_ON_401):
                headers = _without_rate_headers(headers)
            if on(Faults.AUTH_401_HTML):
                return HTMLResponse(
                    "<html><body><h1>401 Unauthorized</h1></body></html>", 401, headers=headers
                )
            if on(Faults.AUTH_ERROR_TYPE_WRONG):
                body["type"] = "invalid_request_error"
        if on(Faults.ERROR_TYPE_GENERIC) and status != 401:
            body["type"] = "error"
        if on(Faults.ERROR_CODE_STRING):
            body["code"] = "invalid_api_key" if status == 401 else "error"
        if on(Faults.ERROR_BODY_MISSING_TYPE):
            del body["type"]
        return Response(orjson.dumps({"error": body}), status, headers=headers, media_type=JSON)

    def html_page(self, status: int, headers: dict[str, str]) -> Response | None:
        """Unknown paths and wrong methods answered as a web server's HTML page."""
        if status == 405 and self.on(Faults.METHOD_NOT_ALLOWED_HTML):
            return HTMLResponse("<h1>405 Method Not Allowed</h1>", 405, headers=headers)
        if status != 405 and self.on(Faults.NOT_FOUND_HTML):
            return HTMLResponse("<h1>404 Not Found</h1>", 404, headers=headers)
        return None

    def middleware(self) -> list[Middleware]:
        """The faults aimed at one Go SDK bend whole answers on their way out."""
        go_faults = (
            Faults.GO_OPENAI_SPLIT_DATA_LINES,
            Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT,
            Faults.OPENAI_GO_EVENTS_NOT_SEPARATED,
            Faults.OPENAI_GO_ERROR_AS_STRING,
        )
        if any(self.on(name) for name in go_faults):
            return [Middleware(GoClientFaults, on=self.on)]
        return []

    # ------------------------------------------------------------------ requests
    def refuses_client(self, user_agent: str) -> bool:
        return (
            self.on(Faults.REJECT_PYTHON_SDK_USER_AGENT) and user_agent.startswith("OpenAI/Python")
        ) or (self.on(Faults.REJECT_NODE_SDK_USER_AGENT) and user_agent.startswith("OpenAI/JS"))

    def before_validation(self, payload: dict[str, Any]) -> None:
        """What a lenient (or fragile) gateway does to a body before checking it."""
        if self.on(Faults.VALIDATION_MISSING_MODEL_DEFAULTED):
            payload.setdefault("model", "gpt-4o-mini")
        if self.on(Faults.VALIDATION_TYPES_COERCED):
            _coerce_types(payload)
        if self.on(Faults.CONTENT_PARTS_500):
            for message in payload.get("messages") or []:
                if isinstance(message, dict) and isinstance(message.get("content"), list):
                    raise TypeError("content-parts-500: the handler expected a string")

    def ignores_error(self, path: Any, keyword: Any) -> bool:
        """Is this schema violation one the switched-on faults let through?"""
        field = path[0] if path else None
        if field == "temperature" and keyword in ("minimum", "maximum"):
            return self.on(Faults.VALIDATION_TEMPERATURE_UNCHECKED)
        if field == "max_tokens" and keyword == "minimum":
            return self.on(Faults.VALIDATION_MAX_TOKENS_UNCHECKED)
        if field == "messages" and len(path) == 3 and path[2] == "role" and keyword == "enum":
            # An unknown role is OP-VAL-010's alone: validation-messages-unchecked breaks
            # OP-VAL-005 and nothing else.
            return self.on(Faults.VALIDATION_UNKNOWN_ROLE_ACCEPTED)
        if field == "messages" and not (len(path) == 1 and keyword == "type"):
            return self.on(Faults.VALIDATION_MESSAGES_UNCHECKED)
        return False

    def accepted_invalid_stream(
        self, payload: dict[str, Any], errors: list[Any]
    ) -> dict[str, Any] | None:
        """stream-invalid-body-accepted: an invalid body with stream true, patched up so it can
        be streamed (broken fields dropped, a default model and question), or None."""
        if payload.get("stream") is not True or not self.on(Faults.STREAM_INVALID_BODY_ACCEPTED):
            return None
        broken = {error.absolute_path[0] for error in errors if error.absolute_path}
        body = {k: v for k, v in payload.items() if k not in broken}
        body.setdefault("model", "gpt-4o-mini")
        body.setdefault("messages", [{"role": "user", "content": "Hello"}])
        return body

    def refuses_valid(self, payload: dict[str, Any]) -> bool:
        temperature = payload.get("temperature", 0)
        if self.on(Faults.MULTI_TURN_REJECTED) and any(
            isinstance(m, dict) and m.get("role") == "assistant"
            for m in payload.get("messages") or []
        ):
            return True
        return self.on(Faults.CHAT_TEMPERATURE_2_REJECTED) and temperature > 1

    def error_for_client(self, error: Any, user_agent: str) -> Any:
        """sdk-errors-as-400: what the official SDKs (known by user agent) are told on a 401,
        403 or 429."""
        sdk = user_agent.startswith(("OpenAI/Python", "OpenAI/JS"))
        if sdk and error.status in (401, 403, 429) and self.on(Faults.SDK_ERRORS_AS_400):
            return type(error)(400, error.message, error.headers)
        return error

    def model(self, model: MockModel) -> MockModel:
        """The model as this request meets it (slow-first-token: 600 ms more to the first token)."""
        if self.on(Faults.SLOW_FIRST_TOKEN):
            latency = model.latency
            return replace(model, latency=replace(latency, ttft_ms=latency.ttft_ms + 600))
        return model

    async def chaos(self, headers: dict[str, str]) -> Response | None:
        """A broken transport instead of an answer, or None."""
        if self.on(Faults.CHAOS_HANG):
            await asyncio.sleep(600)
        if self.on(Faults.CHAOS_GARBAGE):
            return Response(os.urandom(4096), 200, headers=headers, media_type=JSON)
        if self.on(Faults.CHAOS_RESET):
            return TruncatedResponse()
        return None

    # ------------------------------------------------------------------ completions
    def _over_max_tokens(self, max_tokens: int | None) -> int | None:
        """Count one completion, streamed or not; the completion_tokens that this one reports
        above max_tokens (usage-over-max-tokens-sometimes), or None."""
        self._completions += 1
        if (
            max_tokens is not None
            and self._completions % _EVERY == 0
            and self.on(Faults.USAGE_OVER_MAX_TOKENS_SOMETIMES)
        ):
            return max_tokens + 1
        return None

    def _reported_usage(self, usage: dict[str, Any], over_max: int | None) -> None:
        if over_max is not None:
            usage["completion_tokens"] = over_max
            usage["total_tokens"] = usage["prompt_tokens"] + over_max
        if self.on(Faults.CHAT_USAGE_MISMATCH):
            usage["total_tokens"] += 1

    def _echoed(self, model: MockModel) -> str:
        return f"{model.owned_by}/{model.id}" if self.on(Faults.CHAT_MODEL_NOT_ECHOED) else model.id

    def _finish_reason(self, reason: str) -> str:
        if reason == "length" and self.on(Faults.CHAT_FINISH_REASON_STOP_WHEN_CUT):
            return "stop"
        return reason

    def completion_response(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        model: MockModel,
        max_tokens: int | None,
    ) -> Response:
        on = self.on
        if on(Faults.CHAT_WRONG_OBJECT):
            body["object"] = "text_completion"
        body["model"] = self._echoed(model)
        choice = body["choices"][0]
        choice["finish_reason"] = self._finish_reason(choice["finish_reason"])
        self._reported_usage(body["usage"], self._over_max_tokens(max_tokens))
        media_type = "text/plain" if on(Faults.CHAT_CONTENT_TYPE_TEXT) else JSON
        return Response(
            orjson.dumps(body), 200, headers=self.success_headers(headers), media_type=media_type
        )

    # ------------------------------------------------------------------ streams
    def stream_pieces(
        self, pieces: Sequence[str], latency: Latency
    ) -> tuple[Sequence[str], Latency]:
        """chaos-endless-stream: the answer repeated, 10 ms a piece, for up to 10 minutes;
        stream-never-ends: the same at 50 ms a piece (a pace no event cap catches quickly)."""
        if self.on(Faults.CHAOS_ENDLESS_STREAM):
            tpot = _ENDLESS_TPOT_MS
        elif self.on(Faults.STREAM_NEVER_ENDS):
            tpot = _NEVER_ENDS_TPOT_MS
        else:
            return pieces, latency
        count = int(_ENDLESS_PIECES * _ENDLESS_TPOT_MS / tpot)  # 10 minutes at either pace
        endless = tuple(itertools.islice(itertools.cycle(pieces or (" x",)), count))
        return endless, Latency(latency.ttft_ms, tpot)

    def stream_head(self, headers: dict[str, str], media_type: str) -> tuple[dict[str, str], str]:
        if self.on(Faults.RATELIMIT_HEADERS_MISSING_ON_STREAM):
            headers = {}
        if self.on(Faults.STREAM_CONTENT_TYPE_JSON):
            media_type = JSON
        return headers, media_type

    def leaks_slot(self) -> bool:
        return self.on(Faults.CONCURRENCY_SLOT_LEAK_ON_DISCONNECT)

    async def stream(
        self,
        events: AsyncIterator[bytes],
        *,
        model: MockModel,
        prompt_tokens: int,
        max_tokens: int | None,
        include_usage: bool,
        state: dict[str, bool],
    ) -> AsyncIterator[bytes]:
        """The contract's stream (`data: <chunk>` events, then `data: [DONE]`), bent by every
        switched-on stream fault. Events are read back from the wire form: only faulty gateways
        pay for the parsing."""
        on = self.on
        self._streams += 1
        no_role = on(Faults.STREAM_NO_ROLE) or (
            self._streams % _EVERY == 0 and on(Faults.STREAM_ROLE_MISSING_SOMETIMES)
        )
        over_max = self._over_max_tokens(max_tokens)
        number = 0  # JSON events framed so far (the id: of sse-id-field)
        contents = 0
        last: dict[str, Any] = {}  # the latest chunk as the contract built it
        final: dict[str, Any] = {}  # the final choice as sent

        def frame(payload: dict[str, Any]) -> bytes:
            nonlocal number
            number += 1
            head = ""
            if on(Faults.SSE_EVENT_FIELD):
                head += "event: message\n"
            if on(Faults.SSE_ID_FIELD):
                head += f"id: {number}\n"
            if on(Faults.SSE_MULTILINE_DATA):
                lines = json.dumps(payload, indent=1).splitlines()
                return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode()
            return head.encode() + b"data: " + orjson.dumps(payload) + b"\n\n"

        def sent_chunk(payload: dict[str, Any]) -> bytes:
            if on(Faults.STREAM_CHUNK_WRONG_OBJECT):
                payload["object"] = "chat.completion"
            if on(Faults.STREAM_ID_CHANGES):
                payload["id"] = f"chatcmpl-{secrets.token_hex(12)}"
            payload["model"] = self._echoed(model)
            return frame(payload)

        def bend(payload: dict[str, Any]) -> Iterator[bytes]:
            nonlocal contents, final
            if "error" in payload:
                if on(Faults.SSE_ERROR_KEY_NOT_FIRST):
                    payload = {"type": "error", "error": payload["error"]}
                yield frame(payload)
                return
            choices = payload["choices"]
            if "usage" in payload:
                if on(Faults.STREAM_USAGE_CHUNK_MISSING):
                    return
                if on(Faults.STREAM_USAGE_WITH_CHOICES):
                    payload["choices"] = [final]
                self._reported_usage(payload["usage"], over_max)
                yield sent_chunk(payload)
                return
            choice = choices[0]
            if choice["finish_reason"] is not None:
                choice["finish_reason"] = self._finish_reason(choice["finish_reason"])
                final = choice
                yield sent_chunk(payload)
                if on(Faults.STREAM_FINISH_REASON_TWICE):
                    yield sent_chunk(dict(payload))
                return
            if "role" in choice["delta"]:
                if no_role:
                    del choice["delta"]["role"]
                yield sent_chunk(payload)
                if on(Faults.SSE_KEEPALIVE_FLOOD):
                    yield b": ping\n\n" * 200
                return
            contents += 1
            yield sent_chunk(payload)
            if contents == 1 and on(Faults.STREAM_BAD_JSON_EVENT):
                yield b"data: keep-alive\n\n"

        def done() -> Iterator[bytes]:
            if not on(Faults.STREAM_NO_DONE):
                yield DONE_EVENT
                if on(Faults.STREAM_DONE_TWICE):
                    yield DONE_EVENT

        async for event in events:
            if event == DONE_EVENT:
                for out in done():
                    yield out
                continue
            payload = orjson.loads(event[6:-2])
            if "error" in payload and on(Faults.MIDSTREAM_ERROR_SWALLOWED):
                # End as if the answer were complete: finish "stop", usage of what was sent.
                ending = [{**last, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
                if include_usage:
                    usage = {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": contents,
                        "total_tokens": prompt_tokens + contents,
                    }
                    ending.append({**last, "choices": [], "usage": usage})
                for chunk in ending:
                    for out in bend(chunk):
                        yield out
                for out in done():
                    yield out
                state["finished"] = True
                continue
            if "error" not in payload:
                last = {k: v for k, v in payload.items() if k not in ("choices", "usage")}
            for out in bend(payload):
                yield out
        if state.get("finished") and on(Faults.STREAM_NO_CLOSE):
            await asyncio.sleep(30)


def _spread(models: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` models taken in turn from each provider, so every provider stays listed."""
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        by_owner.setdefault(model["owned_by"], []).append(model)
    taken = [m for row in itertools.zip_longest(*by_owner.values()) for m in row if m is not None]
    return taken[:count]


def _coerce_types(payload: dict[str, Any]) -> None:
    """validation-types-coerced: what a lenient gateway does with wrong types."""
    for field, kind in (("max_tokens", int), ("temperature", float)):
        value = payload.get(field)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                payload[field] = kind(value)
    if isinstance(payload.get("stream"), str):
        payload["stream"] = payload["stream"].lower() == "true"
    if isinstance(payload.get("model"), int | float):
        payload["model"] = str(payload["model"])


def _split_data_lines(chunk: bytes) -> bytes:
    """go-openai-split-data-lines: each JSON payload over two data: lines, cut after its first
    comma, so an SSE parser that joins data lines with a newline still reads valid JSON."""
    out = []
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {") and b"," in line:
            head, _, tail = line.partition(b",")
            line = head + b",\ndata: " + tail
        out.append(line)
    return b"\n".join(out)


class GoClientFaults:
    """ASGI middleware for the faults aimed at one Go SDK, known by its User-Agent: the answer
    every other client gets stays right, so only that SDK's check can notice."""

    def __init__(self, app: ASGIApp, on: Callable[[str], bool]) -> None:
        self.app, self.on = app, on

    def _faults(self, user_agent: bytes) -> tuple[str | None, str | None]:
        """(stream fault, error fault) that apply to this client."""
        on = self.on
        if user_agent.startswith(b"Go-http-client/"):
            return (
                Faults.GO_OPENAI_SPLIT_DATA_LINES
                if on(Faults.GO_OPENAI_SPLIT_DATA_LINES)
                else None,
                Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT
                if on(Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT)
                else None,
            )
        if user_agent.startswith(b"OpenAI/Go"):
            return (
                Faults.OPENAI_GO_EVENTS_NOT_SEPARATED
                if on(Faults.OPENAI_GO_EVENTS_NOT_SEPARATED)
                else None,
                Faults.OPENAI_GO_ERROR_AS_STRING if on(Faults.OPENAI_GO_ERROR_AS_STRING) else None,
            )
        return None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        stream_fault, error_fault = self._faults(headers.get(b"user-agent", b""))
        if not (stream_fault or error_fault):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}  # an error answer's start, until its body is rewritten
        body = bytearray()

        async def bent(message: Message) -> None:
            if message["type"] == "http.response.start":
                content_type = dict(message["headers"]).get(b"content-type", b"")
                if (
                    error_fault
                    and message["status"] >= 400
                    and content_type.startswith(b"application/json")
                ):
                    held["start"] = message
                    return
                held["stream"] = stream_fault and content_type.startswith(b"text/event-stream")
                await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            if "start" in held:
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                rewritten = self._error(error_fault, bytes(body))
                start = held.pop("start")
                kept = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                kept.append((b"content-length", str(len(rewritten)).encode()))
                await send({**start, "headers": kept})
                await send({"type": "http.response.body", "body": rewritten})
                return
            if held.get("stream"):
                chunk = message.get("body", b"")
                if stream_fault == Faults.GO_OPENAI_SPLIT_DATA_LINES:
                    chunk = _split_data_lines(chunk)
                else:
                    chunk = chunk.replace(b"\n\n", b"\n")
                message = {**message, "body": chunk}
            await send(message)

        await self.app(scope, receive, bent)

    @staticmethod
    def _error(fault: str | None, body: bytes) -> bytes:
        try:
            payload = json.loads(body)
            error = payload["error"]
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            return body
        if fault == Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT:
            error["message"] = {"text": message}
        else:
            payload["error"] = message
        return orjson.dumps(payload)
