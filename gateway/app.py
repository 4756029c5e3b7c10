"""The reference gateway as an ASGI application (Starlette).

Order of work for every authenticated request: authenticate (401), admit against the key's limits
(429; this is what gives every later answer its X-RateLimit-* headers), then parse and validate
(400), then resolve the model (404/403), then answer.

This module is the contract. Faults live in two places: those that change a decision (accept a
bad key, skip a limit, let an invalid field through) are tested where the decision is made, by
their constant name (`Faults.X`); those that change an answer are applied afterwards by
`FaultHooks` (fault_hooks.py), which the gateway only calls when some fault is switched on.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from jsonschema.exceptions import best_match
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import mock
from gateway.catalogue import MockModel, model_object
from gateway.fault_hooks import DONE_EVENT, UNUSABLE_MODEL_ID, FaultHooks
from gateway.faults import Faults
from gateway.limits import RateLimiter, Verdict
from gateway.settings import ApiKey, GatewayConfig, Plan
from gateway.timing import TimingLog
from opconform.contract import KEY_PREFIX
from schemas.loader import fast_check, validator

JSON = "application/json"
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
_MIDSTREAM_ERROR = {
    "message": "The upstream provider failed mid-stream.",
    "type": "upstream_error",
    "code": 502,
}
# orjson: compact UTF-8 JSON in ~0.2 us where the json module takes ~3 us; every answer and
# every streamed event goes through it.
_dumps = orjson.dumps


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
    max_tokens: int | None = None  # as the request asked (None: the model's limit)

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


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # fault(Faults.X): is that fault switched on? The set's own C method: decisions ask it
        # often, and a Python method call would cost more than the lookup.
        self.fault: Callable[[str], bool] = config.faults.__contains__
        # None without faults: every `if self.hooks` is the whole cost of faults on the hot path.
        self.hooks = FaultHooks(config.faults) if config.faults else None
        self.timing = TimingLog(config.timing_log) if config.timing_log else None
        self.limiter = RateLimiter(config.window_seconds, faults=config.faults)
        self._request_validator = validator("chat-completion-request")
        self._request_is_valid = fast_check("chat-completion-request")
        # Keys refused once under the ratelimit-window-never-resets fault.
        self._blocked_keys: set[str] = set()
        listed = [m for m in config.models.values() if m.listed]
        self._listed_ids = [m.id for m in listed]
        models: dict[str, Any] = {"object": "list", "data": [model_object(m) for m in listed]}
        if self.hooks:
            models = self.hooks.model_list(models)
        self._models_body = _dumps(models)

    # ------------------------------------------------------------------ helpers
    def rate_headers(self, verdict: Verdict) -> dict[str, str]:
        if self.hooks:
            verdict = self.hooks.shown_verdict(verdict)
        headers = {
            "x-ratelimit-limit": str(verdict.limit),
            "x-ratelimit-remaining": str(verdict.remaining),
            "x-ratelimit-reset": str(verdict.reset),
        }
        return self.hooks.rate_convention(headers, verdict) if self.hooks else headers

    def error_response(self, error: ApiError) -> Response:
        body = {"message": error.message, "type": error.error_type, "code": error.status}
        if self.hooks:
            return self.hooks.error_response(error.status, body, dict(error.headers))
        return Response(
            _dumps({"error": body}), error.status, headers=error.headers, media_type=JSON
        )

    def _anonymous_headers(self, request: Request) -> dict[str, str]:
        client = request.client.host if request.client else "unknown"
        return self.rate_headers(
            self.limiter.admit(f"anonymous:{client}", ANONYMOUS_PLAN, takes_slot=False)
        )

    def authenticate(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization")
        if header is None:
            if self.fault(Faults.AUTH_MISSING_HEADER_ACCEPTED):
                main = self.config.key_for_role("main")
                if main is not None:
                    return main
            raise self._unauthorized(
                request, "Missing API key: send Authorization: Bearer op_sk_... with every request."
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" and not self.fault(Faults.AUTH_ANY_SCHEME):
            raise self._unauthorized(
                request, "The Authorization header must use the Bearer scheme."
            )
        if not token:
            raise self._unauthorized(request, "Empty API key provided.")
        if not token.startswith(KEY_PREFIX):
            if not self.fault(Faults.AUTH_PREFIX_NOT_CHECKED):
                raise self._unauthorized(
                    request, "Invalid API key provided: keys start with op_sk_."
                )
            token = KEY_PREFIX + token
        key = self.config.keys.get(token)
        if key is not None and key.role == "main" and self.fault(Faults.AUTH_MAIN_KEY_REFUSED):
            key = None
        if key is None:
            if self.fault(Faults.AUTH_UNKNOWN_KEY_ACCEPTED):
                return ApiKey(token, self.config.plans["free"])
            raise self._unauthorized(request, "Invalid API key provided.")
        return key

    def _unauthorized(self, request: Request, message: str) -> ApiError:
        if self.hooks:
            authorization = request.headers.get("authorization", "")
            message = self.hooks.unauthorized_message(message, authorization)
        return ApiError(401, message, self._anonymous_headers(request))

    def admit(self, key: ApiKey, *, takes_slot: bool) -> dict[str, str]:
        """Count the request against the key; the rate headers for its answer, or a 429."""
        verdict = self.limiter.admit(key.secret, key.plan, takes_slot=takes_slot)
        if self.fault(Faults.RATELIMIT_WINDOW_NEVER_RESETS):
            verdict = self._never_reset(key, verdict, takes_slot)
        headers = self.rate_headers(verdict)
        if verdict.allowed:
            return headers
        if self.fault(Faults.RATELIMIT_AS_503) and verdict.reason == "requests per minute":
            raise ApiError(503, "Service busy.", {**headers, "retry-after": "1"})
        retry_after: str | None = str(verdict.retry_after)
        if self.hooks:
            retry_after = self.hooks.retry_after(verdict.retry_after)
        if retry_after is not None:
            headers["retry-after"] = retry_after
        raise ApiError(
            429,
            f"Rate limit exceeded ({verdict.reason} for the {key.plan.name} "
            f"plan). Retry after the period in the Retry-After header.",
            headers,
        )

    def _never_reset(self, key: ApiKey, verdict: Verdict, takes_slot: bool) -> Verdict:
        """ratelimit-window-never-resets: a key refused once stays refused."""
        if verdict.allowed is False:
            self._blocked_keys.add(key.secret)
        if key.secret not in self._blocked_keys:
            return verdict
        if verdict.allowed and takes_slot:
            self.limiter.release(key.secret)
        return Verdict(False, verdict.limit, 0, verdict.reset, 1, "requests per minute")

    def release(self, key: ApiKey) -> None:
        self.limiter.release(key.secret)

    # ------------------------------------------------------------------ endpoints
    async def list_models(self, request: Request) -> Response:
        key = self.authenticate(request)
        uncounted = self.fault(Faults.RATELIMIT_ONLY_COMPLETIONS)
        headers = {} if uncounted else self.admit(key, takes_slot=False)
        if self.hooks:
            await self.hooks.slow_model_list()
            headers = self.hooks.success_headers(headers)
        return Response(self._models_body, 200, headers=headers, media_type=JSON)

    async def retrieve_model(self, request: Request) -> Response:
        key = self.authenticate(request)
        headers = self.admit(key, takes_slot=False)
        model_id = request.path_params["model"]
        model = self.config.models.get(model_id)
        if model is None or not model.listed or self.fault(Faults.MODELS_RETRIEVE_MISSING):
            raise ApiError(404, f"The model '{model_id}' does not exist.", headers)
        if self.hooks:
            headers = self.hooks.success_headers(headers)
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
        if self.hooks and self.hooks.refuses_client(request.headers.get("user-agent", "")):
            raise ApiError(400, "Requests from this client are not accepted.", headers)
        payload = self._parse(await request.body(), headers)
        model = self._resolve_model(payload["model"], key, headers)
        stream = payload.get("stream") is True
        if self.hooks:
            chaos = await self.hooks.chaos(headers)
            if chaos is not None:
                return chaos
            model = self.hooks.model(model)
        if model.behaviour == "upstream_error":
            status = 500 if self.fault(Faults.UPSTREAM_ERROR_AS_500) else 502
            raise ApiError(
                status,
                f"The upstream provider of '{model.id}' returned an invalid "
                "response. The request was not billed.",
                headers,
            )
        if model.behaviour == "unavailable":
            if self.fault(Faults.UNAVAILABLE_AS_500):
                raise ApiError(500, "An unexpected error occurred.", headers)
            raise ApiError(
                503,
                f"The model '{model.id}' is temporarily unavailable.",
                {**headers, "retry-after": "5"},
            )
        if (
            stream
            and self.fault(Faults.STREAM_FAILS_FOR_SOME_MODELS)
            and model.id in self._listed_ids
            and self._listed_ids.index(model.id) % 2 == 1
        ):
            raise ApiError(500, "Streaming failed.", headers)
        completion = self._complete(payload, model, stream_variant=stream)
        if stream:
            return self._stream_response(completion, key, headers, payload)
        if model.latency.ttft_ms or model.latency.tpot_ms:
            await self._pace(model, len(completion.pieces))
        usage = completion.usage
        self.limiter.record_tokens(key.secret, usage["total_tokens"])
        body = {
            "id": completion.id,
            "object": "chat.completion",
            "created": completion.created,
            "model": model.id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(completion.pieces)},
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": usage,
        }
        if self.hooks:
            return self.hooks.completion_response(body, headers, model, completion.max_tokens)
        return Response(_dumps(body), 200, headers=headers, media_type=JSON)

    # ------------------------------------------------------------------ chat internals
    def _parse(self, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            payload = orjson.loads(raw)
        except ValueError as exc:
            if self.fault(Faults.VALIDATION_BAD_JSON_500):
                raise ApiError(500, "An unexpected error occurred.", headers) from exc
            raise ApiError(400, f"The request body is not valid JSON: {exc}", headers) from exc
        if not isinstance(payload, dict):
            raise ApiError(400, "The request body must be a JSON object.", headers)
        if self.hooks:
            self.hooks.before_validation(payload)
        if self._request_is_valid(payload):
            if self.hooks and self.hooks.refuses_valid(payload):
                raise ApiError(400, "temperature must be between 0 and 1.", headers)
            return payload
        # The slow validator only for bad requests: it says precisely what is wrong.
        errors = list(self._request_validator.iter_errors(payload))
        if self.hooks:
            hooks = self.hooks
            errors = [e for e in errors if not hooks.ignores_error(e.absolute_path, e.validator)]
            accepted = hooks.accepted_invalid_stream(payload, errors) if errors else payload
            if accepted is not None:
                if hooks.refuses_valid(accepted):
                    raise ApiError(400, "temperature must be between 0 and 1.", headers)
                return accepted
        error = best_match(errors)
        where = "/".join(str(p) for p in error.absolute_path) or "body"
        raise ApiError(400, f"Invalid request: {where}: {error.message}", headers)

    def _resolve_model(self, model_id: str, key: ApiKey, headers: dict[str, str]) -> MockModel:
        model = self.config.models.get(model_id)
        if model is None or model_id == UNUSABLE_MODEL_ID:
            if self.fault(Faults.VALIDATION_UNKNOWN_MODEL_500):
                raise ApiError(500, "An unexpected error occurred.", headers)
            raise ApiError(404, f"The model '{model_id}' does not exist.", headers)
        if model_id in key.denied_models and not self.fault(Faults.AUTH_RESTRICTION_IGNORED):
            if self.fault(Faults.FORBIDDEN_AS_404):
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
        if stream_variant and self.fault(Faults.STREAM_TEXT_DIFFERS):
            temperature = (temperature or 0) + 0.5
        pieces: Sequence[str]
        pieces, prompt_tokens = mock.answer(model.id, messages, temperature)
        if self.config.answer_tokens is not None:
            # The mock's natural answer is this short: a full answer, not one cut by max_tokens.
            pieces = pieces[: self.config.answer_tokens]
        requested = payload.get("max_tokens") or payload.get("max_completion_tokens")
        max_tokens = None
        if isinstance(requested, int | float) and requested >= 1:
            max_tokens = int(requested)
        cap = (
            model.max_output_tokens
            if max_tokens is None
            else min(model.max_output_tokens, max_tokens)
        )
        finish_reason = "stop"
        if len(pieces) > cap and not self.fault(Faults.CHAT_MAX_TOKENS_IGNORED):
            pieces = pieces[:cap]
            finish_reason = "length"
        return Completion(
            id=f"chatcmpl-{secrets.token_hex(12)}",
            created=int(time.time()),
            model=model,
            pieces=pieces,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
        )

    async def _pace(self, model: MockModel, tokens: int) -> None:
        latency = model.latency
        total = latency.ttft_ms + tokens * latency.tpot_ms
        if latency.jitter_ms:
            total += random.uniform(-latency.jitter_ms, latency.jitter_ms) * (tokens + 1)
        if total > 0:
            await asyncio.sleep(total / 1000)

    # ------------------------------------------------------------------ streaming
    def _stream_response(
        self, completion: Completion, key: ApiKey, headers: dict[str, str], payload: dict[str, Any]
    ) -> Response:
        hooks = self.hooks
        state = {"finished": False, "released": False}

        def on_close() -> None:
            if state["released"]:
                return
            if not state["finished"] and hooks and hooks.leaks_slot():
                return
            state["released"] = True
            self.release(key)

        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        media_type = "text/event-stream"
        if hooks:
            model = completion.model
            pieces, latency = hooks.stream_pieces(completion.pieces, model.latency)
            completion = replace(completion, pieces=pieces, model=replace(model, latency=latency))
        events = self._events(completion, key, include_usage, state)
        if hooks:
            events = hooks.stream(
                events,
                model=completion.model,
                prompt_tokens=completion.prompt_tokens,
                max_tokens=completion.max_tokens,
                include_usage=include_usage,
                state=state,
            )
            headers, media_type = hooks.stream_head(headers, media_type)
        if self.timing:
            events = self.timing.wrap(events, completion.id)
        return SlotStreamingResponse(
            events,
            on_close,
            headers={**headers, "cache-control": "no-cache"},
            media_type=media_type,
        )

    async def _events(
        self, completion: Completion, key: ApiKey, include_usage: bool, state: dict[str, bool]
    ) -> AsyncIterator[bytes]:
        """The stream as the contract has it: a role chunk, one chunk per piece on the model's
        clock, the finish_reason chunk, the usage chunk if asked for, then [DONE]."""
        model = completion.model
        latency = model.latency
        head = {
            "id": completion.id,
            "object": "chat.completion.chunk",
            "created": completion.created,
            "model": model.id,
        }

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + _dumps({**head, "choices": choices, **extra}) + b"\n\n"

        sent_tokens = 0
        try:
            first_delta = {"role": "assistant", "content": ""}
            yield chunk([{"index": 0, "delta": first_delta, "finish_reason": None}])
            start = time.perf_counter()
            for index, piece in enumerate(completion.pieces):
                due = latency.ttft_ms + index * latency.tpot_ms
                if latency.jitter_ms:
                    due += random.uniform(-latency.jitter_ms, latency.jitter_ms)
                delay = due / 1000 - (time.perf_counter() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
                if model.behaviour == "midstream_error" and index == 3:
                    yield b"data: " + _dumps({"error": _MIDSTREAM_ERROR}) + b"\n\n"
                    return
                yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                sent_tokens = index + 1
            final = {"index": 0, "delta": {}, "finish_reason": completion.finish_reason}
            yield chunk([final])
            if include_usage:
                yield chunk([], usage=completion.usage)
            yield DONE_EVENT
            state["finished"] = True
        finally:
            self.limiter.record_tokens(key.secret, completion.prompt_tokens + sent_tokens)

    # ------------------------------------------------------------------ app
    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        headers = self._soft_headers(request)
        if self.hooks:
            page = self.hooks.html_page(status, headers)
            if page is not None:
                return page
        if status == 405:
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
        error: ApiError = exc
        if self.hooks:
            error = self.hooks.error_for_client(error, request.headers.get("user-agent", ""))
        return self.error_response(error)

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
        middleware = self.hooks.middleware() if self.hooks else None
        return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)


def create_app(config: GatewayConfig) -> Starlette:
    return Gateway(config).app()
