"""The faults as hooks around the contract: `FaultyGateway` overrides the methods of `Gateway`
(contract.py) that its switched-on faults bend, calls the contract's own for everything else,
and leaves the contract's code free of faults.

Decisions (who is authenticated, what is admitted, what is valid, which model is resolved) and
answers (the model list, rate-limit headers, error bodies) are bent here; completions and streams
in fault_answers.py; answers aimed at one client in fault_clients.py; the limiter's in
fault_limits.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from jsonschema.exceptions import ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from opconform.contract import KEY_PREFIX, WINDOW_SECONDS
from opconform.gateway.catalogue import CREATED, MockModel
from opconform.gateway.completion import Completion
from opconform.gateway.contract import Gateway
from opconform.gateway.fault_answers import AnswerFaults
from opconform.gateway.fault_clients import GO_FAULTS, NODE_SDK, PYTHON_SDK, GoClientFaults
from opconform.gateway.fault_limits import FaultyLimiter
from opconform.gateway.faults import Faults
from opconform.gateway.limits import RateLimiter, Verdict
from opconform.gateway.settings import ApiKey, GatewayConfig
from opconform.gateway.wire import JSON, ApiError, dumps

UNUSABLE_MODEL_ID = "gpt-3.5-turbo-legacy"
_SERVER_ERROR = "An unexpected error occurred."


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


def _without_rate_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.startswith("x-ratelimit-")}


class FaultyGateway(Gateway):
    """The reference gateway with the faults of its configuration switched on."""

    def __init__(self, config: GatewayConfig) -> None:
        # fault(Faults.X): is that fault switched on? The set's own C method.
        self.on = config.faults.__contains__
        self.answers = AnswerFaults(self.on)
        # Keys refused once under the ratelimit-window-never-resets fault.
        self._blocked_keys: set[str] = set()
        super().__init__(config)

    def new_limiter(self, window_seconds: int) -> RateLimiter:
        return FaultyLimiter(window_seconds, self.on)

    def middleware(self) -> list[Middleware]:
        if any(self.on(name) for name in GO_FAULTS):
            return [Middleware(GoClientFaults, on=self.on)]
        return []

    # ------------------------------------------------------------------ headers and errors
    def model_list(self, body: dict[str, Any]) -> dict[str, Any]:
        on, data = self.on, body["data"]
        if on(Faults.MODELS_TOO_FEW):
            data = _spread(data, 20)
        if on(Faults.MODELS_SINGLE_PROVIDER):
            data = [{**m, "owned_by": "openai"} for m in data]
        if on(Faults.MODELS_DUPLICATE_ID):
            data.insert(1, dict(data[0]))
        if on(Faults.MODELS_LISTED_UNUSABLE):
            unusable = {"id": UNUSABLE_MODEL_ID, "object": "model", "created": CREATED}
            data.insert(2, {**unusable, "owned_by": "openai"})
        return {"object": "models" if on(Faults.MODELS_WRONG_OBJECT) else "list", "data": data}

    def rate_headers(self, verdict: Verdict) -> dict[str, str]:
        """The X-RateLimit-* headers as the chosen convention says them (or not at all), of
        what they claim rather than what the limiter decided."""
        on = self.on
        verdict = replace(
            verdict,
            limit=100 if on(Faults.RATELIMIT_LIMIT_WRONG) else verdict.limit,
            remaining=verdict.limit if on(Faults.RATELIMIT_REMAINING_STATIC) else verdict.remaining,
            reset=verdict.reset * 1000
            if on(Faults.RATELIMIT_RESET_MILLISECONDS)
            else verdict.reset,
        )
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
        return super().rate_headers(verdict)

    def success_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {} if self.on(Faults.RATELIMIT_HEADERS_MISSING_ON_SUCCESS) else headers

    def error_response(self, error: ApiError) -> Response:
        on, status, body, headers = self.on, error.status, error.body(), dict(error.headers)
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
        return Response(dumps({"error": body}), status, headers=headers, media_type=JSON)

    def unrouted(
        self, request: Request, exc: Exception, status: int, headers: dict[str, str]
    ) -> Response:
        """Unknown paths and wrong methods answered as a web server's HTML page."""
        if status == 405 and self.on(Faults.METHOD_NOT_ALLOWED_HTML):
            return HTMLResponse("<h1>405 Method Not Allowed</h1>", 405, headers=headers)
        if status != 405 and self.on(Faults.NOT_FOUND_HTML):
            return HTMLResponse("<h1>404 Not Found</h1>", 404, headers=headers)
        return super().unrouted(request, exc, status, headers)

    async def api_error(self, request: Request, exc: Exception) -> Response:
        """sdk-errors-as-400: what the official SDKs (known by user agent) are told on a 401,
        403 or 429."""
        assert isinstance(exc, ApiError)
        sdk = request.headers.get("user-agent", "").startswith((PYTHON_SDK, NODE_SDK))
        if sdk and exc.status in (401, 403, 429) and self.on(Faults.SDK_ERRORS_AS_400):
            exc = ApiError(400, exc.message, exc.headers)
        return await super().api_error(request, exc)

    # ------------------------------------------------------------------ authentication
    def authenticate(self, request: Request) -> ApiKey:
        if "authorization" not in request.headers and self.on(Faults.AUTH_MISSING_HEADER_ACCEPTED):
            main = self.config.key_for_role("main")
            if main is not None:
                return main
        return super().authenticate(request)

    def credentials(self, header: str) -> tuple[str, str]:
        scheme, token = super().credentials(header)
        if self.on(Faults.AUTH_ANY_SCHEME):
            scheme = "Bearer"
        if token and not token.startswith(KEY_PREFIX) and self.on(Faults.AUTH_PREFIX_NOT_CHECKED):
            token = KEY_PREFIX + token
        return scheme, token

    def key_of(self, token: str) -> ApiKey | None:
        key = super().key_of(token)
        if key is not None and key.role == "main" and self.on(Faults.AUTH_MAIN_KEY_REFUSED):
            key = None
        if key is None and self.on(Faults.AUTH_UNKNOWN_KEY_ACCEPTED):
            return ApiKey(token, self.config.plans["free"])
        return key

    def unauthorized(self, request: Request, message: str) -> ApiError:
        if self.on(Faults.ERROR_ECHOES_KEY):
            message = f"{message} (got {request.headers.get('authorization', '')!r})"
        return super().unauthorized(request, message)

    # ------------------------------------------------------------------ limits
    def limit(self, key: ApiKey, takes_slot: bool) -> Verdict:
        """ratelimit-window-never-resets: a key refused once stays refused."""
        verdict = super().limit(key, takes_slot)
        if not self.on(Faults.RATELIMIT_WINDOW_NEVER_RESETS):
            return verdict
        if verdict.allowed is False:
            self._blocked_keys.add(key.secret)
        if key.secret not in self._blocked_keys:
            return verdict
        if verdict.allowed and takes_slot:
            self.limiter.release(key.secret)
        return Verdict(False, verdict.limit, 0, verdict.reset, 1, "requests per minute")

    def refusal(self, key: ApiKey, verdict: Verdict, headers: dict[str, str]) -> ApiError:
        if self.on(Faults.RATELIMIT_AS_503) and verdict.reason == "requests per minute":
            return ApiError(503, "Service busy.", {**headers, "retry-after": "1"})
        error = super().refusal(key, verdict, headers)
        if self.on(Faults.NO_RETRY_AFTER_429):
            del error.headers["retry-after"]
        elif self.on(Faults.RETRY_AFTER_TOO_EARLY_429):
            error.headers["retry-after"] = "1"
        return error

    # ------------------------------------------------------------------ endpoints
    def admit_listing(self, key: ApiKey) -> dict[str, str]:
        if self.on(Faults.RATELIMIT_ONLY_COMPLETIONS):
            return {}
        return super().admit_listing(key)

    async def list_models(self, request: Request) -> Response:
        answer = await super().list_models(request)
        if self.on(Faults.SLOW_MODEL_LIST):
            await asyncio.sleep(0.6)
        return answer

    def listed_model(self, model_id: str) -> MockModel | None:
        if self.on(Faults.MODELS_RETRIEVE_MISSING):
            return None
        return super().listed_model(model_id)

    async def chat(self, request: Request, key: ApiKey, headers: dict[str, str]) -> Response:
        user_agent = request.headers.get("user-agent", "")
        if (self.on(Faults.REJECT_PYTHON_SDK_USER_AGENT) and user_agent.startswith(PYTHON_SDK)) or (
            self.on(Faults.REJECT_NODE_SDK_USER_AGENT) and user_agent.startswith(NODE_SDK)
        ):
            raise ApiError(400, "Requests from this client are not accepted.", headers)
        return await super().chat(request, key, headers)

    async def answer(
        self, payload: dict[str, Any], model: MockModel, key: ApiKey, headers: dict[str, str]
    ) -> Response:
        # A broken transport instead of an answer.
        if self.on(Faults.CHAOS_HANG):
            await asyncio.sleep(600)
        if self.on(Faults.CHAOS_GARBAGE):
            return Response(os.urandom(4096), 200, headers=headers, media_type=JSON)
        if self.on(Faults.CHAOS_RESET):
            return TruncatedResponse()
        if self.on(Faults.SLOW_FIRST_TOKEN):  # 600 ms more to the first token
            latency = model.latency
            model = replace(model, latency=replace(latency, ttft_ms=latency.ttft_ms + 600))
        return await super().answer(payload, model, key, headers)

    def model_failure(
        self, model: MockModel, headers: dict[str, str], *, stream: bool
    ) -> ApiError | None:
        failure = super().model_failure(model, headers, stream=stream)
        if failure is not None:
            if failure.status == 502 and self.on(Faults.UPSTREAM_ERROR_AS_500):
                return ApiError(500, failure.message, headers)
            if failure.status == 503 and self.on(Faults.UNAVAILABLE_AS_500):
                return ApiError(500, _SERVER_ERROR, headers)
            return failure
        if (
            stream
            and self.on(Faults.STREAM_FAILS_FOR_SOME_MODELS)
            and model.id in self._listed_ids
            and self._listed_ids.index(model.id) % 2 == 1
        ):
            return ApiError(500, "Streaming failed.", headers)
        return None

    def completion_response(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        model: MockModel,
        max_tokens: int | None,
    ) -> Response:
        self.answers.completion(body, model, max_tokens)
        answer = super().completion_response(body, headers, model, max_tokens)
        if self.on(Faults.CHAT_CONTENT_TYPE_TEXT):
            answer.headers["content-type"] = "text/plain; charset=utf-8"
        return answer

    # ------------------------------------------------------------------ request body
    def not_json(self, exc: ValueError, headers: dict[str, str]) -> ApiError:
        if self.on(Faults.VALIDATION_BAD_JSON_500):
            return ApiError(500, _SERVER_ERROR, headers)
        return super().not_json(exc, headers)

    def validate(self, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """What a lenient (or fragile) gateway does to a body before and while checking it."""
        on = self.on
        if on(Faults.VALIDATION_MISSING_MODEL_DEFAULTED):
            payload.setdefault("model", "gpt-4o-mini")
        if on(Faults.VALIDATION_TYPES_COERCED):
            _coerce_types(payload)
        if on(Faults.CONTENT_PARTS_500):
            for message in payload.get("messages") or []:
                if isinstance(message, dict) and isinstance(message.get("content"), list):
                    raise TypeError("content-parts-500: the handler expected a string")
        accepted = payload
        if not self._request_is_valid(payload):
            errors = [
                e
                for e in self._request_validator.iter_errors(payload)
                if not self._ignores(e.absolute_path, e.validator)
            ]
            patched = self._accepted_invalid_stream(payload, errors) if errors else payload
            if patched is None:
                raise self.invalid(errors, headers)
            accepted = patched
        if self._refuses_valid(accepted):
            raise ApiError(400, "temperature must be between 0 and 1.", headers)
        return accepted

    def _ignores(self, path: Sequence[Any], keyword: Any) -> bool:
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

    def _accepted_invalid_stream(
        self, payload: dict[str, Any], errors: list[ValidationError]
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

    def _refuses_valid(self, payload: dict[str, Any]) -> bool:
        temperature = payload.get("temperature", 0)
        if self.on(Faults.MULTI_TURN_REJECTED) and any(
            isinstance(m, dict) and m.get("role") == "assistant"
            for m in payload.get("messages") or []
        ):
            return True
        return self.on(Faults.CHAT_TEMPERATURE_2_REJECTED) and temperature > 1

    def resolve_model(self, model_id: str, key: ApiKey, headers: dict[str, str]) -> MockModel:
        if model_id == UNUSABLE_MODEL_ID:  # listed by models-listed-unusable, never served
            raise self.unknown_model(model_id, headers)
        return super().resolve_model(model_id, key, headers)

    def unknown_model(self, model_id: str, headers: dict[str, str]) -> ApiError:
        if self.on(Faults.VALIDATION_UNKNOWN_MODEL_500):
            return ApiError(500, _SERVER_ERROR, headers)
        return super().unknown_model(model_id, headers)

    def forbidden(self, model_id: str, headers: dict[str, str]) -> ApiError | None:
        if self.on(Faults.AUTH_RESTRICTION_IGNORED):
            return None
        if self.on(Faults.FORBIDDEN_AS_404):
            return ApiError(404, f"The model '{model_id}' does not exist.", headers)
        return super().forbidden(model_id, headers)

    # ------------------------------------------------------------------ generation and streams
    def complete(
        self, payload: dict[str, Any], model: MockModel, *, stream_variant: bool
    ) -> Completion:
        if stream_variant and self.on(Faults.STREAM_TEXT_DIFFERS):
            payload = {**payload, "temperature": (payload.get("temperature") or 0) + 0.5}
        return super().complete(payload, model, stream_variant=stream_variant)

    def cut(self, pieces: Sequence[str], cap: int) -> tuple[Sequence[str], str]:
        if self.on(Faults.CHAT_MAX_TOKENS_IGNORED):
            return pieces, "stop"
        return super().cut(pieces, cap)

    def keeps_slot(self) -> bool:
        return self.on(Faults.CONCURRENCY_SLOT_LEAK_ON_DISCONNECT)

    def streamed(self, completion: Completion) -> Completion:
        return self.answers.streamed(completion)

    def stream_events(
        self,
        events: AsyncIterator[bytes],
        completion: Completion,
        include_usage: bool,
        state: dict[str, bool],
    ) -> AsyncIterator[bytes]:
        return self.answers.stream(events, completion, include_usage, state)

    def stream_head(self, headers: dict[str, str], media_type: str) -> tuple[dict[str, str], str]:
        if self.on(Faults.RATELIMIT_HEADERS_MISSING_ON_STREAM):
            headers = {}
        if self.on(Faults.STREAM_CONTENT_TYPE_JSON):
            media_type = JSON
        return headers, media_type


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
