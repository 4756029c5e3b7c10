"""The reference gateway as an ASGI application (Starlette), with its faults.

Order of work for every authenticated request: authenticate (401), admit against the key's limits
(429; this is what gives every later answer its X-RateLimit-* headers), then parse and validate
(400), then resolve the model (404/403), then answer. Faults are checked inline, by name, where
the behaviour they break is implemented, so each reads as the one line it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema.exceptions import best_match
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import mock
from gateway.catalogue import MockModel, model_object
from gateway.limits import RateLimiter, Verdict
from gateway.settings import ApiKey, GatewayConfig, Plan
from schemas.loader import fast_check, validator

JSON = "application/json"
UNUSABLE_MODEL_ID = "gpt-3.5-turbo-legacy"
ANONYMOUS_PLAN = Plan("anonymous", requests_per_min=60, tokens_per_day=None, concurrent=5)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "upstream_error",
    503: "service_unavailable",
}


def _dumps(value: Any) -> bytes:
    # orjson: compact UTF-8 JSON in ~0.2 us where the json module takes ~3 us; every answer and
    # every streamed event goes through here.
    return orjson.dumps(value)


class ApiError(Exception):
    """An answer with the documented error body."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.error_type = error_type or _ERROR_TYPES.get(status, "api_error")


@dataclass
class Completion:
    """One mock generation, shared by the streaming and non-streaming paths."""

    id: str
    created: int
    model: MockModel
    pieces: Sequence[str]
    finish_reason: str
    prompt_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


class SlotStreamingResponse(StreamingResponse):
    """A stream that hands its concurrency slot back however it ends (finished or client gone)."""

    def __init__(
        self, content: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


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


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.faults = config.faults
        # fault("name"): is that fault switched on? The set's own C method: it is asked ~20 times
        # a request, and a Python method call would cost more than the lookup.
        self.fault: Callable[[str], bool] = config.faults.__contains__
        self.limiter = RateLimiter(config.window_seconds, faults=config.faults)
        self._request_validator = validator("chat-completion-request")
        self._request_is_valid = fast_check("chat-completion-request")
        # Keys refused once under the ratelimit-window-never-resets fault.
        self._blocked_keys: set[str] = set()
        listed = [m for m in config.models.values() if m.listed]
        self._listed_ids = [m.id for m in listed]
        self._models_body = _dumps(self._model_list(listed))

    # ------------------------------------------------------------------ helpers

    def _model_list(self, listed: list[MockModel]) -> dict[str, Any]:
        data = [model_object(m) for m in listed]
        if self.fault("models-few-providers"):
            data = [m for m in data if m["owned_by"] == "openai"]
        if self.fault("models-duplicate-id"):
            data.insert(1, dict(data[0]))
        if self.fault("models-listed-unusable"):
            data.insert(
                2,
                {
                    "id": UNUSABLE_MODEL_ID,
                    "object": "model",
                    "created": 1700000000,
                    "owned_by": "openai",
                },
            )
        return {"object": "models" if self.fault("models-wrong-object") else "list", "data": data}

    def rate_headers(self, verdict: Verdict) -> dict[str, str]:
        limit = 100 if self.fault("ratelimit-limit-wrong") else verdict.limit
        remaining = verdict.limit if self.fault("ratelimit-remaining-static") else verdict.remaining
        reset = (
            verdict.reset * 1000 if self.fault("ratelimit-reset-milliseconds") else verdict.reset
        )
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
        }

    def error_response(self, error: ApiError) -> Response:
        headers = dict(error.headers)
        if error.status >= 400 and self.fault("ratelimit-headers-missing-on-errors"):
            headers = {k: v for k, v in headers.items() if not k.startswith("x-ratelimit-")}
        if error.status == 401:
            if self.fault("ratelimit-headers-missing-on-401"):
                headers = {k: v for k, v in headers.items() if not k.startswith("x-ratelimit-")}
            if self.fault("auth-401-html"):
                return HTMLResponse(
                    "<html><body><h1>401 Unauthorized</h1></body></html>", 401, headers=headers
                )
        error_type = error.error_type
        if error.status == 401 and self.fault("auth-error-type-wrong"):
            error_type = "invalid_request_error"
        if self.fault("error-type-generic"):
            error_type = "error"
        body: dict[str, Any] = {"message": error.message, "type": error_type, "code": error.status}
        if self.fault("error-code-string"):
            body["code"] = "invalid_api_key" if error.status == 401 else "error"
        if self.fault("error-body-missing-type"):
            del body["type"]
        return Response(_dumps({"error": body}), error.status, headers=headers, media_type=JSON)

    def _anonymous_headers(self, request: Request) -> dict[str, str]:
        client = request.client.host if request.client else "unknown"
        return self.rate_headers(
            self.limiter.admit(f"anonymous:{client}", ANONYMOUS_PLAN, takes_slot=False)
        )

    def authenticate(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization")
        if header is None:
            if self.fault("auth-missing-header-accepted"):
                main = self.config.key_for_role("main")
                if main is not None:
                    return main
            raise self._unauthorized(
                request, "Missing API key: send Authorization: Bearer op_sk_... with every request."
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" and not self.fault("auth-any-scheme"):
            raise self._unauthorized(
                request, "The Authorization header must use the Bearer scheme."
            )
        if not token:
            raise self._unauthorized(request, "Empty API key provided.")
        if not token.startswith("op_sk_"):
            if not self.fault("auth-prefix-not-checked"):
                raise self._unauthorized(
                    request, "Invalid API key provided: keys start with op_sk_."
                )
            token = "op_sk_" + token
        key = self.config.keys.get(token)
        if key is not None and key.role == "main" and self.fault("auth-main-key-refused"):
            key = None
        if key is None:
            if self.fault("auth-unknown-key-accepted"):
                return ApiKey(token, self.config.plans["free"])
            raise self._unauthorized(request, "Invalid API key provided.")
        return key

    def _unauthorized(self, request: Request, message: str) -> ApiError:
        if self.fault("error-echoes-key"):
            message += f" (got {request.headers.get('authorization', '')!r})"
        return ApiError(401, message, self._anonymous_headers(request))

    def admit(self, key: ApiKey, *, takes_slot: bool) -> dict[str, str]:
        """Count the request against the key; the rate headers for its answer, or a 429."""
        verdict = self.limiter.admit(key.secret, key.plan, takes_slot=takes_slot)
        if self.fault("ratelimit-window-never-resets") and verdict.allowed is False:
            self._blocked_keys.add(key.secret)
        if self.fault("ratelimit-window-never-resets") and key.secret in self._blocked_keys:
            if verdict.allowed and takes_slot:
                self.limiter.release(key.secret)
            verdict = Verdict(False, verdict.limit, 0, verdict.reset, 1, "requests per minute")
        headers = self.rate_headers(verdict)
        if verdict.allowed:
            return headers
        if self.fault("ratelimit-as-503") and verdict.reason == "requests per minute":
            raise ApiError(503, "Service busy.", {**headers, "retry-after": "1"})
        if not self.fault("429-no-retry-after"):
            headers["retry-after"] = (
                "1" if self.fault("429-retry-after-too-early") else str(verdict.retry_after)
            )
        raise ApiError(
            429,
            f"Rate limit exceeded ({verdict.reason} for the {key.plan.name} "
            f"plan). Retry after the period in the Retry-After header.",
            headers,
        )

    def release(self, key: ApiKey) -> None:
        self.limiter.release(key.secret)

    # ------------------------------------------------------------------ endpoints
    async def list_models(self, request: Request) -> Response:
        key = self.authenticate(request)
        headers = self.admit(key, takes_slot=False)
        if self.fault("slow-model-list"):
            await asyncio.sleep(0.6)
        if self.fault("ratelimit-headers-missing-on-success"):
            headers = {}
        return Response(self._models_body, 200, headers=headers, media_type=JSON)

    async def retrieve_model(self, request: Request) -> Response:
        key = self.authenticate(request)
        headers = self.admit(key, takes_slot=False)
        model_id = request.path_params["model"]
        model = self.config.models.get(model_id)
        if model is None or not model.listed or self.fault("models-retrieve-missing"):
            raise ApiError(404, f"The model '{model_id}' does not exist.", headers)
        if self.fault("ratelimit-headers-missing-on-success"):
            headers = {}
        return Response(_dumps(model_object(model)), 200, headers=headers, media_type=JSON)

    async def chat_completions(self, request: Request) -> Response:
        key = self.authenticate(request)
        headers = self.admit(key, takes_slot=True)
        handed_to_stream = False
        try:
            response = await self._chat(request, key, headers)
            handed_to_stream = isinstance(response, SlotStreamingResponse)
            return response
        finally:
            if not handed_to_stream:
                self.release(key)

    async def _chat(self, request: Request, key: ApiKey, headers: dict[str, str]) -> Response:
        user_agent = request.headers.get("user-agent", "")
        if (
            self.fault("reject-python-sdk-user-agent") and user_agent.startswith("OpenAI/Python")
        ) or (self.fault("reject-node-sdk-user-agent") and user_agent.startswith("OpenAI/JS")):
            raise ApiError(400, "Requests from this client are not accepted.", headers)
        payload = self._parse(await request.body(), headers)
        model = self._resolve_model(payload["model"], key, headers)
        stream = payload.get("stream") is True
        if self.fault("chaos-hang"):
            await asyncio.sleep(600)
        if self.fault("chaos-garbage"):
            return Response(os.urandom(4096), 200, headers=headers, media_type=JSON)
        if self.fault("chaos-reset"):
            return TruncatedResponse()
        if model.behaviour == "upstream_error":
            status = 500 if self.fault("upstream-error-as-500") else 502
            raise ApiError(
                status,
                f"The upstream provider of '{model.id}' returned an invalid "
                "response. The request was not billed.",
                headers,
            )
        if model.behaviour == "unavailable":
            if self.fault("unavailable-as-500"):
                raise ApiError(500, "An unexpected error occurred.", headers)
            raise ApiError(
                503,
                f"The model '{model.id}' is temporarily unavailable.",
                {**headers, "retry-after": "5"},
            )
        if (
            stream
            and self.fault("stream-fails-for-some-models")
            and model.id in self._listed_ids
            and self._listed_ids.index(model.id) % 2 == 1
        ):
            raise ApiError(500, "Streaming failed.", headers)
        completion = self._complete(payload, model, stream_variant=stream)
        if stream:
            return self._stream_response(completion, key, headers, payload)
        if model.latency.ttft_ms or model.latency.tpot_ms or self.fault("slow-first-token"):
            await self._pace(model, len(completion.pieces))
        self.limiter.record_tokens(key.secret, completion.usage["total_tokens"])
        body = {
            "id": completion.id,
            "object": "text_completion" if self.fault("chat-wrong-object") else "chat.completion",
            "created": completion.created,
            "model": self._echoed_model(model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(completion.pieces)},
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": self._usage(completion),
        }
        if self.fault("ratelimit-headers-missing-on-success"):
            headers = {}
        media_type = "text/plain" if self.fault("chat-content-type-text") else JSON
        return Response(_dumps(body), 200, headers=headers, media_type=media_type)

    # ------------------------------------------------------------------ chat internals
    def _parse(self, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            payload = orjson.loads(raw)
        except ValueError as exc:
            if self.fault("validation-bad-json-500"):
                raise ApiError(500, "An unexpected error occurred.", headers) from exc
            raise ApiError(400, f"The request body is not valid JSON: {exc}", headers) from exc
        if not isinstance(payload, dict):
            raise ApiError(400, "The request body must be a JSON object.", headers)
        if self.fault("validation-missing-model-defaulted"):
            payload.setdefault("model", "gpt-4o-mini")
        if self.fault("validation-types-coerced"):
            _coerce_types(payload)
        if self.fault("content-parts-500"):
            for message in payload.get("messages") or []:
                if isinstance(message, dict) and isinstance(message.get("content"), list):
                    raise TypeError("content-parts-500: the handler expected a string")
        if self._request_is_valid(payload):
            errors = []
        else:  # the slow validator only for bad requests: it says precisely what is wrong
            errors = [
                e
                for e in self._request_validator.iter_errors(payload)
                if not self._error_ignored_by_fault(e.absolute_path, e.validator)
            ]
        if errors:
            error = best_match(errors)
            where = "/".join(str(p) for p in error.absolute_path) or "body"
            raise ApiError(400, f"Invalid request: {where}: {error.message}", headers)
        if self.fault("chat-temperature-2-rejected") and payload.get("temperature", 0) > 1:
            raise ApiError(400, "temperature must be between 0 and 1.", headers)
        return payload

    def _error_ignored_by_fault(self, path: Any, keyword: Any) -> bool:
        field = path[0] if path else None
        if field == "temperature" and keyword in ("minimum", "maximum"):
            return self.fault("validation-temperature-unchecked")
        if field == "max_tokens" and keyword == "minimum":
            return self.fault("validation-max-tokens-unchecked")
        if field == "messages" and not (len(path) == 1 and keyword == "type"):
            return self.fault("validation-messages-unchecked")
        return False

    def _resolve_model(self, model_id: str, key: ApiKey, headers: dict[str, str]) -> MockModel:
        model = self.config.models.get(model_id)
        if model is None or model_id == UNUSABLE_MODEL_ID:
            if self.fault("validation-unknown-model-500"):
                raise ApiError(500, "An unexpected error occurred.", headers)
            raise ApiError(404, f"The model '{model_id}' does not exist.", headers)
        if model_id in key.denied_models and not self.fault("auth-restriction-ignored"):
            if self.fault("forbidden-as-404"):
                raise ApiError(404, f"The model '{model_id}' does not exist.", headers)
            raise ApiError(
                403, f"This API key does not have permission to use '{model_id}'.", headers
            )
        return model

    def _complete(
        self, payload: dict[str, Any], model: MockModel, *, stream_variant: bool
    ) -> Completion:
        messages = [m for m in payload["messages"] if isinstance(m, dict)]
        temperature = payload.get("temperature")
        if stream_variant and self.fault("stream-text-differs"):
            temperature = (temperature or 0) + 0.5
        pieces, prompt_tokens = mock.answer(model.id, messages, temperature)
        max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
        cap = model.max_output_tokens
        if isinstance(max_tokens, int | float) and max_tokens >= 1:
            cap = min(cap, int(max_tokens))
        finish_reason = "stop"
        if len(pieces) > cap and not self.fault("chat-max-tokens-ignored"):
            pieces = pieces[:cap]
            finish_reason = "stop" if self.fault("chat-finish-reason-stop-when-cut") else "length"
        return Completion(
            id=f"chatcmpl-{secrets.token_hex(12)}",
            created=int(time.time()),
            model=model,
            pieces=pieces,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
        )

    def _usage(self, completion: Completion) -> dict[str, int]:
        usage = completion.usage
        if self.fault("chat-usage-mismatch"):
            usage["total_tokens"] += 1
        return usage

    def _echoed_model(self, model: MockModel) -> str:
        return f"{model.owned_by}/{model.id}" if self.fault("chat-model-not-echoed") else model.id

    async def _pace(self, model: MockModel, tokens: int) -> None:
        latency = model.latency
        total = latency.ttft_ms + tokens * latency.tpot_ms
        if self.fault("slow-first-token"):
            total += 600
        if latency.jitter_ms:
            total += random.uniform(-latency.jitter_ms, latency.jitter_ms) * (tokens + 1)
        if total > 0:
            await asyncio.sleep(total / 1000)

    # ------------------------------------------------------------------ streaming
    def _stream_response(
        self, completion: Completion, key: ApiKey, headers: dict[str, str], payload: dict[str, Any]
    ) -> Response:
        state = {"finished": False, "released": False}

        def on_close() -> None:
            if state["released"]:
                return
            if not state["finished"] and self.fault("concurrency-slot-leak-on-disconnect"):
                return
            state["released"] = True
            self.release(key)

        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        events = self._events(completion, key, include_usage, state)
        if self.fault("ratelimit-headers-missing-on-stream"):
            headers = {}
        media_type = JSON if self.fault("stream-content-type-json") else "text/event-stream"
        return SlotStreamingResponse(
            events,
            on_close,
            headers={**headers, "cache-control": "no-cache"},
            media_type=media_type,
        )

    def _event(self, payload: Any, number: int) -> bytes:
        if not self.faults:
            return b"data: " + _dumps(payload) + b"\n\n"
        head = ""
        if self.fault("sse-event-field"):
            head += "event: message\n"
        if self.fault("sse-id-field"):
            head += f"id: {number}\n"
        if self.fault("sse-multiline-data") and isinstance(payload, dict):
            lines = json.dumps(payload, indent=1).splitlines()
            return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode()
        return head.encode() + b"data: " + _dumps(payload) + b"\n\n"

    async def _events(
        self, completion: Completion, key: ApiKey, include_usage: bool, state: dict[str, bool]
    ) -> AsyncIterator[bytes]:
        model = completion.model
        chunk_id = completion.id
        echoed = self._echoed_model(model)
        obj = (
            "chat.completion"
            if self.fault("stream-chunk-wrong-object")
            else "chat.completion.chunk"
        )
        number = 0

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            nonlocal number, chunk_id
            number += 1
            if self.fault("stream-id-changes"):
                chunk_id = f"chatcmpl-{secrets.token_hex(12)}"
            body = {
                "id": chunk_id,
                "object": obj,
                "created": completion.created,
                "model": echoed,
                "choices": choices,
                **extra,
            }
            return self._event(body, number)

        sent_tokens = 0
        try:
            first_delta: dict[str, Any] = {"content": ""}
            if not self.fault("stream-no-role"):
                first_delta = {"role": "assistant", "content": ""}
            yield chunk([{"index": 0, "delta": first_delta, "finish_reason": None}])
            if self.fault("sse-keepalive-flood"):
                yield b": ping\n\n" * 200
            latency = model.latency
            ttft = latency.ttft_ms + (600 if self.fault("slow-first-token") else 0)
            start = time.perf_counter()
            pieces = completion.pieces
            endless = self.fault("chaos-endless-stream")
            index = 0
            while index < len(pieces) or endless:
                due = ttft + index * latency.tpot_ms
                if latency.jitter_ms:
                    due += random.uniform(-latency.jitter_ms, latency.jitter_ms)
                delay = due / 1000 - (time.perf_counter() - start)
                if endless:
                    delay = 0.01
                    if time.perf_counter() - start > 600:
                        break
                if delay > 0:
                    await asyncio.sleep(delay)
                piece = pieces[index % len(pieces)] if pieces else " x"
                if model.behaviour == "midstream_error" and index == 3:
                    if self.fault("midstream-error-swallowed"):
                        break
                    error = {
                        "message": "The upstream provider failed mid-stream.",
                        "type": "upstream_error",
                        "code": 502,
                    }
                    body = (
                        {"type": "error", "error": error}
                        if self.fault("sse-error-key-not-first")
                        else {"error": error}
                    )
                    yield self._event(body, number + 1)
                    return
                yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                sent_tokens = index + 1
                index += 1
                if index == 1 and self.fault("stream-bad-json-event"):
                    yield b"data: keep-alive\n\n"
            final = {"index": 0, "delta": {}, "finish_reason": completion.finish_reason}
            if model.behaviour == "midstream_error":
                final["finish_reason"] = "stop"
            yield chunk([final])
            if self.fault("stream-finish-reason-twice"):
                yield chunk([final])
            if include_usage and not self.fault("stream-usage-chunk-missing"):
                usage = self._usage(completion)
                if model.behaviour == "midstream_error":
                    usage = {
                        "prompt_tokens": completion.prompt_tokens,
                        "completion_tokens": sent_tokens,
                        "total_tokens": completion.prompt_tokens + sent_tokens,
                    }
                choices = [final] if self.fault("stream-usage-with-choices") else []
                yield chunk(choices, usage=usage)
            if not self.fault("stream-no-done"):
                yield b"data: [DONE]\n\n"
                if self.fault("stream-done-twice"):
                    yield b"data: [DONE]\n\n"
            state["finished"] = True
            if self.fault("stream-no-close"):
                await asyncio.sleep(30)
        finally:
            self.limiter.record_tokens(key.secret, completion.prompt_tokens + sent_tokens)

    # ------------------------------------------------------------------ app
    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        headers = self._soft_headers(request)
        if status == 405:
            if self.fault("method-not-allowed-html"):
                return HTMLResponse("<h1>405 Method Not Allowed</h1>", 405, headers=headers)
            allow = (
                exc.headers.get("Allow", "")
                if isinstance(exc, HTTPException) and exc.headers
                else ""
            )
            return self.error_response(
                ApiError(
                    405,
                    f"Method {request.method} is not allowed on {request.url.path}.",
                    {**headers, **({"allow": allow} if allow else {})},
                )
            )
        if self.fault("not-found-html"):
            return HTMLResponse("<h1>404 Not Found</h1>", 404, headers=headers)
        return self.error_response(ApiError(404, f"Unknown path {request.url.path}.", headers))

    def _soft_headers(self, request: Request) -> dict[str, str]:
        """Rate headers for an answer outside the routes: the key's if it is valid."""
        try:
            key = self.authenticate(request)
        except ApiError as error:
            return error.headers
        verdict = self.limiter.admit(key.secret, key.plan, takes_slot=False)
        return self.rate_headers(verdict)

    async def api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return self.error_response(exc)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.error_response(ApiError(500, "An unexpected error occurred on our servers."))

    def app(self) -> Starlette:
        routes = [  # the busiest route first: Starlette tries them in order
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.retrieve_model, methods=["GET"]),
        ]
        handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
            ApiError: self.api_error,
            HTTPException: self.not_found,
            Exception: self.server_error,
        }
        return Starlette(routes=routes, exception_handlers=handlers)


def _coerce_types(payload: dict[str, Any]) -> None:
    """The validation-types-coerced fault: what a lenient gateway does with wrong types."""
    for field, kind in (("max_tokens", int), ("temperature", float)):
        value = payload.get(field)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                payload[field] = kind(value)
    if isinstance(payload.get("stream"), str):
        payload["stream"] = payload["stream"].lower() == "true"
    if isinstance(payload.get("model"), int | float):
        payload["model"] = str(payload["model"])


def create_app(config: GatewayConfig) -> Starlette:
    return Gateway(config).app()
