"""The reference gateway as the contract has it, and nothing else.

Order of work for every authenticated request: authenticate (401), admit against the key's limits
(429; this is what gives every later answer its X-RateLimit-* headers), then parse and validate
(400), then resolve the model (404/403), then answer.

No fault is named here. Each decision and each answer is a method, and the faults are hooks
around them: `FaultyGateway` (fault_hooks.py) overrides the methods its switched-on faults bend,
and `create_app` (app.py) builds it only when some fault is switched on, so the contract's hot
path pays nothing for faults.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from jsonschema.exceptions import ValidationError, best_match
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from opconform.contract import KEY_PREFIX
from opconform.gateway import completion as generation
from opconform.gateway import mock
from opconform.gateway.catalogue import MockModel, model_object
from opconform.gateway.completion import Completion, SlotStreamingResponse
from opconform.gateway.limits import RateLimiter, Verdict
from opconform.gateway.settings import ANONYMOUS_PLAN, ApiKey, GatewayConfig
from opconform.gateway.timing import TimingLog
from opconform.gateway.wire import JSON, ApiError, dumps
from opconform.schemas.loader import fast_check, validator


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.timing = TimingLog(config.timing_log) if config.timing_log else None
        self.limiter = self.new_limiter(config.window_seconds)
        self._request_validator = validator("chat-completion-request")
        self._request_is_valid = fast_check("chat-completion-request")
        listed = [m for m in config.models.values() if m.listed]
        self._listed_ids = [m.id for m in listed]
        models: dict[str, Any] = {"object": "list", "data": [model_object(m) for m in listed]}
        self._models_body = dumps(self.model_list(models))

    def new_limiter(self, window_seconds: int) -> RateLimiter:
        return RateLimiter(window_seconds)

    def middleware(self) -> list[Middleware]:
        """ASGI middleware around the routes (none: the contract answers every client alike)."""
        return []

    # ------------------------------------------------------------------ headers and errors
    def model_list(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def rate_headers(self, verdict: Verdict) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(verdict.limit),
            "x-ratelimit-remaining": str(verdict.remaining),
            "x-ratelimit-reset": str(verdict.reset),
        }

    def success_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The headers of a 200 answer that is not a stream."""
        return headers

    def error_response(self, error: ApiError) -> Response:
        return Response(
            dumps({"error": error.body()}), error.status, headers=error.headers, media_type=JSON
        )

    # ------------------------------------------------------------------ authentication
    def _anonymous_headers(self, request: Request) -> dict[str, str]:
        client = request.client.host if request.client else "unknown"
        return self.rate_headers(
            self.limiter.admit(f"anonymous:{client}", ANONYMOUS_PLAN, takes_slot=False)
        )

    def authenticate(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization")
        if header is None:
            raise self.unauthorized(
                request, "Missing API key: send Authorization: Bearer op_sk_... with every request."
            )
        scheme, token = self.credentials(header)
        if scheme.lower() != "bearer":
            raise self.unauthorized(request, "The Authorization header must use the Bearer scheme.")
        if not token:
            raise self.unauthorized(request, "Empty API key provided.")
        if not token.startswith(KEY_PREFIX):
            raise self.unauthorized(request, "Invalid API key provided: keys start with op_sk_.")
        key = self.key_of(token)
        if key is None:
            raise self.unauthorized(request, "Invalid API key provided.")
        return key

    def credentials(self, header: str) -> tuple[str, str]:
        """(scheme, key) of an Authorization header."""
        scheme, _, token = header.partition(" ")
        return scheme, token.strip()

    def key_of(self, token: str) -> ApiKey | None:
        return self.config.keys.get(token)

    def unauthorized(self, request: Request, message: str) -> ApiError:
        return ApiError(401, message, self._anonymous_headers(request))

    # ------------------------------------------------------------------ limits
    def admit(self, key: ApiKey, *, takes_slot: bool) -> dict[str, str]:
        """Count the request against the key; the rate headers for its answer, or a 429."""
        verdict = self.limit(key, takes_slot)
        headers = self.rate_headers(verdict)
        if verdict.allowed:
            return headers
        raise self.refusal(key, verdict, headers)

    def limit(self, key: ApiKey, takes_slot: bool) -> Verdict:
        return self.limiter.admit(key.secret, key.plan, takes_slot=takes_slot)

    def refusal(self, key: ApiKey, verdict: Verdict, headers: dict[str, str]) -> ApiError:
        headers["retry-after"] = str(verdict.retry_after)
        return ApiError(
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
        headers = self.success_headers(self.admit_listing(key))
        return Response(self._models_body, 200, headers=headers, media_type=JSON)

    def admit_listing(self, key: ApiKey) -> dict[str, str]:
        """GET /v1/models counts against the key like every request."""
        return self.admit(key, takes_slot=False)

    async def retrieve_model(self, request: Request) -> Response:
        key = self.authenticate(request)
        headers = self.admit(key, takes_slot=False)
        model_id = request.path_params["model"]
        model = self.listed_model(model_id)
        if model is None:
            raise ApiError(404, f"The model '{model_id}' does not exist.", headers)
        headers = self.success_headers(headers)
        return Response(dumps(model_object(model)), 200, headers=headers, media_type=JSON)

    def listed_model(self, model_id: str) -> MockModel | None:
        model = self.config.models.get(model_id)
        return model if model is not None and model.listed else None

    async def chat_completions(self, request: Request) -> Response:
        key = self.authenticate(request)
        headers = self.admit(key, takes_slot=True)
        handed_to_stream = False
        try:
            response = await self.chat(request, key, headers)
            handed_to_stream = isinstance(response, SlotStreamingResponse)
            return response
        finally:
            if not handed_to_stream:
                self.release(key)

    async def chat(self, request: Request, key: ApiKey, headers: dict[str, str]) -> Response:
        payload = self.parse(await request.body(), headers)
        model = self.resolve_model(payload["model"], key, headers)
        return await self.answer(payload, model, key, headers)

    async def answer(
        self, payload: dict[str, Any], model: MockModel, key: ApiKey, headers: dict[str, str]
    ) -> Response:
        stream = payload.get("stream") is True
        failure = self.model_failure(model, headers, stream=stream)
        if failure is not None:
            raise failure
        completion = self.complete(payload, model, stream_variant=stream)
        if stream:
            return self.stream_response(completion, key, headers, payload)
        if model.latency.ttft_ms or model.latency.tpot_ms:
            await generation.pace(model, len(completion.pieces))
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
        return self.completion_response(body, headers, model, completion.max_tokens)

    def completion_response(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        model: MockModel,
        max_tokens: int | None,
    ) -> Response:
        return Response(dumps(body), 200, headers=self.success_headers(headers), media_type=JSON)

    def model_failure(
        self, model: MockModel, headers: dict[str, str], *, stream: bool
    ) -> ApiError | None:
        """The error a test model is there to produce, or None."""
        if model.behaviour == "upstream_error":
            return ApiError(
                502,
                f"The upstream provider of '{model.id}' returned an invalid "
                "response. The request was not billed.",
                headers,
            )
        if model.behaviour == "unavailable":
            return ApiError(
                503,
                f"The model '{model.id}' is temporarily unavailable.",
                {**headers, "retry-after": "5"},
            )
        return None

    # ------------------------------------------------------------------ request body
    def parse(self, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            payload = orjson.loads(raw)
        except ValueError as exc:
            raise self.not_json(exc, headers) from exc
        if not isinstance(payload, dict):
            raise ApiError(400, "The request body must be a JSON object.", headers)
        return self.validate(payload, headers)

    def not_json(self, exc: ValueError, headers: dict[str, str]) -> ApiError:
        return ApiError(400, f"The request body is not valid JSON: {exc}", headers)

    def validate(self, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        if self._request_is_valid(payload):
            return payload
        # The slow validator only for bad requests: it says precisely what is wrong.
        raise self.invalid(list(self._request_validator.iter_errors(payload)), headers)

    def invalid(self, errors: list[ValidationError], headers: dict[str, str]) -> ApiError:
        error = best_match(errors)
        where = "/".join(str(p) for p in error.absolute_path) or "body"
        return ApiError(400, f"Invalid request: {where}: {error.message}", headers)

    def resolve_model(self, model_id: str, key: ApiKey, headers: dict[str, str]) -> MockModel:
        model = self.config.models.get(model_id)
        if model is None:
            raise self.unknown_model(model_id, headers)
        if model_id in key.denied_models:
            forbidden = self.forbidden(model_id, headers)
            if forbidden is not None:
                raise forbidden
        return model

    def unknown_model(self, model_id: str, headers: dict[str, str]) -> ApiError:
        return ApiError(404, f"The model '{model_id}' does not exist.", headers)

    def forbidden(self, model_id: str, headers: dict[str, str]) -> ApiError | None:
        """The answer to a key denied `model_id` (None: served after all)."""
        return ApiError(403, f"This API key does not have permission to use '{model_id}'.", headers)

    # ------------------------------------------------------------------ generation
    def complete(
        self, payload: dict[str, Any], model: MockModel, *, stream_variant: bool
    ) -> Completion:
        messages = [m for m in payload["messages"] if isinstance(m, dict)]
        pieces: Sequence[str]
        pieces, prompt_tokens = mock.answer(model.id, messages, payload.get("temperature"))
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
        pieces, finish_reason = self.cut(pieces, cap)
        return Completion(
            id=f"chatcmpl-{secrets.token_hex(12)}",
            created=int(time.time()),
            model=model,
            pieces=pieces,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
        )

    def cut(self, pieces: Sequence[str], cap: int) -> tuple[Sequence[str], str]:
        """The answer within `cap` tokens, and its finish_reason."""
        if len(pieces) > cap:
            return pieces[:cap], "length"
        return pieces, "stop"

    # ------------------------------------------------------------------ streaming
    def stream_response(
        self, completion: Completion, key: ApiKey, headers: dict[str, str], payload: dict[str, Any]
    ) -> Response:
        state = {"finished": False, "released": False}

        def on_close() -> None:
            if state["released"] or (not state["finished"] and self.keeps_slot()):
                return
            state["released"] = True
            self.release(key)

        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        completion = self.streamed(completion)

        def spent(tokens: int) -> None:
            self.limiter.record_tokens(key.secret, tokens)

        events = generation.events(completion, include_usage, state, spent)
        events = self.stream_events(events, completion, include_usage, state)
        headers, media_type = self.stream_head(headers, "text/event-stream")
        if self.timing:
            events = self.timing.wrap(events, completion.id)
        return SlotStreamingResponse(
            events,
            on_close,
            headers={**headers, "cache-control": "no-cache"},
            media_type=media_type,
        )

    def keeps_slot(self) -> bool:
        """Whether a stream its client left keeps its concurrency slot."""
        return False

    def streamed(self, completion: Completion) -> Completion:
        """The generation as it is streamed."""
        return completion

    def stream_events(
        self,
        events: AsyncIterator[bytes],
        completion: Completion,
        include_usage: bool,
        state: dict[str, bool],
    ) -> AsyncIterator[bytes]:
        return events

    def stream_head(self, headers: dict[str, str], media_type: str) -> tuple[dict[str, str], str]:
        return headers, media_type

    # ------------------------------------------------------------------ outside the routes
    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        headers = self._soft_headers(request)
        return self.unrouted(request, exc, status, headers)

    def unrouted(
        self, request: Request, exc: Exception, status: int, headers: dict[str, str]
    ) -> Response:
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
        return self.error_response(exc)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.error_response(ApiError(500, "An unexpected error occurred on our servers."))
