"""Switchable faults: each breaks one documented requirement (named by its ID in
conformance/requirements.yaml), so the project's tests can prove that the check for that
requirement fails. Chaos faults break the transport instead, to prove a run still finishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


class Faults:
    """Every fault's name, as a constant the gateway imports: a misspelt name is an
    AttributeError (and a mypy error) instead of a check that is silently never true.
    Plain str constants, not an Enum: the gateway asks ~20 of them per request, and an Enum
    member costs ~4x more to fetch and to find in the set of active faults."""

    # auth
    AUTH_MISSING_HEADER_ACCEPTED: Final = "auth-missing-header-accepted"
    AUTH_ANY_SCHEME: Final = "auth-any-scheme"
    AUTH_PREFIX_NOT_CHECKED: Final = "auth-prefix-not-checked"
    AUTH_UNKNOWN_KEY_ACCEPTED: Final = "auth-unknown-key-accepted"
    AUTH_RESTRICTION_IGNORED: Final = "auth-restriction-ignored"
    AUTH_ERROR_TYPE_WRONG: Final = "auth-error-type-wrong"
    AUTH_401_HTML: Final = "auth-401-html"
    AUTH_MAIN_KEY_REFUSED: Final = "auth-main-key-refused"
    FORBIDDEN_AS_404: Final = "forbidden-as-404"
    # models
    MODELS_WRONG_OBJECT: Final = "models-wrong-object"
    MODELS_TOO_FEW: Final = "models-too-few"
    MODELS_SINGLE_PROVIDER: Final = "models-single-provider"
    MODELS_DUPLICATE_ID: Final = "models-duplicate-id"
    MODELS_LISTED_UNUSABLE: Final = "models-listed-unusable"
    MODELS_RETRIEVE_MISSING: Final = "models-retrieve-missing"
    # chat
    CHAT_WRONG_OBJECT: Final = "chat-wrong-object"
    CHAT_MODEL_NOT_ECHOED: Final = "chat-model-not-echoed"
    CHAT_USAGE_MISMATCH: Final = "chat-usage-mismatch"
    CHAT_MAX_TOKENS_IGNORED: Final = "chat-max-tokens-ignored"
    CHAT_FINISH_REASON_STOP_WHEN_CUT: Final = "chat-finish-reason-stop-when-cut"
    CHAT_CONTENT_TYPE_TEXT: Final = "chat-content-type-text"
    CHAT_TEMPERATURE_2_REJECTED: Final = "chat-temperature-2-rejected"
    USAGE_OVER_MAX_TOKENS_SOMETIMES: Final = "usage-over-max-tokens-sometimes"
    # validation
    VALIDATION_BAD_JSON_500: Final = "validation-bad-json-500"
    VALIDATION_MISSING_MODEL_DEFAULTED: Final = "validation-missing-model-defaulted"
    VALIDATION_TYPES_COERCED: Final = "validation-types-coerced"
    VALIDATION_TEMPERATURE_UNCHECKED: Final = "validation-temperature-unchecked"
    VALIDATION_MESSAGES_UNCHECKED: Final = "validation-messages-unchecked"
    VALIDATION_MAX_TOKENS_UNCHECKED: Final = "validation-max-tokens-unchecked"
    VALIDATION_UNKNOWN_MODEL_500: Final = "validation-unknown-model-500"
    CONTENT_PARTS_500: Final = "content-parts-500"
    VALIDATION_UNKNOWN_ROLE_ACCEPTED: Final = "validation-unknown-role-accepted"
    MULTI_TURN_REJECTED: Final = "multi-turn-rejected"
    SDK_ERRORS_AS_400: Final = "sdk-errors-as-400"
    STREAM_INVALID_BODY_ACCEPTED: Final = "stream-invalid-body-accepted"
    # streaming
    STREAM_CONTENT_TYPE_JSON: Final = "stream-content-type-json"
    STREAM_BAD_JSON_EVENT: Final = "stream-bad-json-event"
    STREAM_CHUNK_WRONG_OBJECT: Final = "stream-chunk-wrong-object"
    STREAM_ID_CHANGES: Final = "stream-id-changes"
    STREAM_NO_ROLE: Final = "stream-no-role"
    STREAM_ROLE_MISSING_SOMETIMES: Final = "stream-role-missing-sometimes"
    STREAM_FINISH_REASON_TWICE: Final = "stream-finish-reason-twice"
    STREAM_NO_DONE: Final = "stream-no-done"
    STREAM_DONE_TWICE: Final = "stream-done-twice"
    STREAM_NO_CLOSE: Final = "stream-no-close"
    STREAM_NEVER_ENDS: Final = "stream-never-ends"
    STREAM_USAGE_CHUNK_MISSING: Final = "stream-usage-chunk-missing"
    STREAM_USAGE_WITH_CHOICES: Final = "stream-usage-with-choices"
    STREAM_TEXT_DIFFERS: Final = "stream-text-differs"
    STREAM_FAILS_FOR_SOME_MODELS: Final = "stream-fails-for-some-models"
    # client compatibility of the wire
    SSE_EVENT_FIELD: Final = "sse-event-field"
    SSE_ID_FIELD: Final = "sse-id-field"
    SSE_MULTILINE_DATA: Final = "sse-multiline-data"
    SSE_KEEPALIVE_FLOOD: Final = "sse-keepalive-flood"
    SSE_ERROR_KEY_NOT_FIRST: Final = "sse-error-key-not-first"
    # errors
    ERROR_BODY_MISSING_TYPE: Final = "error-body-missing-type"
    ERROR_CODE_STRING: Final = "error-code-string"
    ERROR_TYPE_GENERIC: Final = "error-type-generic"
    NOT_FOUND_HTML: Final = "not-found-html"
    METHOD_NOT_ALLOWED_HTML: Final = "method-not-allowed-html"
    UPSTREAM_ERROR_AS_500: Final = "upstream-error-as-500"
    UNAVAILABLE_AS_500: Final = "unavailable-as-500"
    MIDSTREAM_ERROR_SWALLOWED: Final = "midstream-error-swallowed"
    # rate limits
    RATELIMIT_HEADERS_MISSING_ON_SUCCESS: Final = "ratelimit-headers-missing-on-success"
    RATELIMIT_HEADERS_MISSING_ON_ERRORS: Final = "ratelimit-headers-missing-on-errors"
    RATELIMIT_HEADERS_MISSING_ON_STREAM: Final = "ratelimit-headers-missing-on-stream"
    RATELIMIT_LIMIT_WRONG: Final = "ratelimit-limit-wrong"
    RATELIMIT_REMAINING_STATIC: Final = "ratelimit-remaining-static"
    RATELIMIT_RESET_MILLISECONDS: Final = "ratelimit-reset-milliseconds"
    RATELIMIT_NOT_ENFORCED: Final = "ratelimit-not-enforced"
    RATELIMIT_AS_503: Final = "ratelimit-as-503"
    RATELIMIT_OFF_BY_ONE: Final = "ratelimit-off-by-one"
    NO_RETRY_AFTER_429: Final = "429-no-retry-after"
    RETRY_AFTER_TOO_EARLY_429: Final = "429-retry-after-too-early"
    RATELIMIT_WINDOW_NEVER_RESETS: Final = "ratelimit-window-never-resets"
    CONCURRENCY_NOT_ENFORCED: Final = "concurrency-not-enforced"
    CONCURRENCY_SLOT_LEAK_ON_DISCONNECT: Final = "concurrency-slot-leak-on-disconnect"
    RATELIMIT_SHARED_ACROSS_KEYS: Final = "ratelimit-shared-across-keys"
    TOKENS_PER_DAY_NOT_ENFORCED: Final = "tokens-per-day-not-enforced"
    RATELIMIT_HEADERS_MISSING_ON_401: Final = "ratelimit-headers-missing-on-401"
    # LiteLLM's way: only completions are counted (and carry the key's headers), never GET /models.
    RATELIMIT_ONLY_COMPLETIONS: Final = "ratelimit-only-completions"
    # Limits enforced as documented, signalled in another convention (or not at all).
    RATELIMIT_HEADERS_OFF: Final = "ratelimit-headers-off"
    RATELIMIT_HEADERS_OPENAI: Final = "ratelimit-headers-openai"
    RATELIMIT_HEADERS_IETF: Final = "ratelimit-headers-ietf"
    # SDKs
    REJECT_PYTHON_SDK_USER_AGENT: Final = "reject-python-sdk-user-agent"
    REJECT_NODE_SDK_USER_AGENT: Final = "reject-node-sdk-user-agent"
    GO_OPENAI_SPLIT_DATA_LINES: Final = "go-openai-split-data-lines"
    GO_OPENAI_ERROR_MESSAGE_OBJECT: Final = "go-openai-error-message-object"
    OPENAI_GO_EVENTS_NOT_SEPARATED: Final = "openai-go-events-not-separated"
    OPENAI_GO_ERROR_AS_STRING: Final = "openai-go-error-as-string"
    # performance
    SLOW_FIRST_TOKEN: Final = "slow-first-token"
    SLOW_MODEL_LIST: Final = "slow-model-list"
    # chaos
    CHAOS_HANG: Final = "chaos-hang"
    CHAOS_GARBAGE: Final = "chaos-garbage"
    CHAOS_RESET: Final = "chaos-reset"
    CHAOS_ENDLESS_STREAM: Final = "chaos-endless-stream"
    ERROR_ECHOES_KEY: Final = "error-echoes-key"


@dataclass(frozen=True)
class Fault:
    name: str
    breaks: tuple[str, ...]  # requirement IDs whose checks must fail (or warn, for SHOULDs)
    description: str
    # Extra suite options the fault needs to be observable (e.g. an opt-in area's model).
    needs: tuple[str, ...] = ()
    # Gateway options it needs (e.g. streams slow enough to outlast the check's patience).
    serve_args: tuple[str, ...] = ()


_MIDSTREAM = ("--midstream-error-model", "op-test-midstream-error")

FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        # auth
        Fault(
            Faults.AUTH_MISSING_HEADER_ACCEPTED,
            ("OP-AUTH-001",),
            "requests without Authorization are served as the main Free key",
        ),
        Fault(
            Faults.AUTH_ANY_SCHEME,
            ("OP-AUTH-002",),
            "any scheme is accepted: the key is whatever follows the first space",
        ),
        Fault(
            Faults.AUTH_PREFIX_NOT_CHECKED,
            ("OP-AUTH-003",),
            "keys are matched without their op_sk_ prefix",
        ),
        Fault(
            Faults.AUTH_UNKNOWN_KEY_ACCEPTED,
            ("OP-AUTH-004",),
            "any op_sk_ key is served, on the Free plan",
        ),
        Fault(
            Faults.AUTH_RESTRICTION_IGNORED,
            ("OP-AUTH-005",),
            "a restricted key may use every model",
        ),
        Fault(
            Faults.AUTH_ERROR_TYPE_WRONG,
            ("OP-AUTH-007",),
            "401 answers say type invalid_request_error",
        ),
        Fault(Faults.AUTH_401_HTML, ("OP-AUTH-007",), "401 answers are an HTML page"),
        Fault(
            Faults.AUTH_MAIN_KEY_REFUSED,
            ("OP-AUTH-006",),
            "the main Free key is refused with 401 as if it were unknown",
        ),
        Fault(
            Faults.FORBIDDEN_AS_404,
            ("OP-AUTH-005",),
            "a forbidden model is answered 404, as if it did not exist",
        ),
        # models
        Fault(
            Faults.MODELS_WRONG_OBJECT, ("OP-MODELS-001",), 'the model list says object "models"'
        ),
        Fault(
            Faults.MODELS_TOO_FEW,
            ("OP-MODELS-008",),
            "only 20 models are listed (still from all 9 providers)",
        ),
        Fault(
            Faults.MODELS_SINGLE_PROVIDER,
            ("OP-MODELS-007",),
            'all 51 models are listed, every one owned_by "openai"',
        ),
        Fault(Faults.MODELS_DUPLICATE_ID, ("OP-MODELS-003",), "the first model is listed twice"),
        Fault(
            Faults.MODELS_LISTED_UNUSABLE,
            ("OP-MODELS-004",),
            "the list's third entry is a model that chat answers 404 for",
        ),
        Fault(
            Faults.MODELS_RETRIEVE_MISSING,
            ("OP-MODELS-005",),
            "GET /v1/models/{id} answers 404 for every model",
        ),
        # chat
        Fault(
            Faults.CHAT_WRONG_OBJECT, ("OP-CHAT-001",), 'completions say object "text_completion"'
        ),
        Fault(
            Faults.CHAT_MODEL_NOT_ECHOED,
            ("OP-CHAT-002",),
            'completions name the upstream model ("provider/model")',
        ),
        Fault(
            Faults.CHAT_USAGE_MISMATCH, ("OP-CHAT-003",), "total_tokens is one more than the sum"
        ),
        Fault(
            Faults.CHAT_MAX_TOKENS_IGNORED, ("OP-CHAT-004",), "max_tokens does not cut generation"
        ),
        Fault(
            Faults.CHAT_FINISH_REASON_STOP_WHEN_CUT,
            ("OP-CHAT-005",),
            'a completion cut by max_tokens says finish_reason "stop"',
        ),
        Fault(
            Faults.CHAT_CONTENT_TYPE_TEXT, ("OP-CHAT-006",), "completions are served as text/plain"
        ),
        Fault(
            Faults.CHAT_TEMPERATURE_2_REJECTED,
            ("OP-CHAT-007",),
            "temperature above 1 is refused with 400",
        ),
        Fault(
            Faults.USAGE_OVER_MAX_TOKENS_SOMETIMES,
            ("OP-CHAT-004",),
            "every fifth completion (streamed or not) reports completion_tokens = max_tokens + 1",
        ),
        # validation
        Fault(Faults.VALIDATION_BAD_JSON_500, ("OP-VAL-001",), "a body that is not JSON gets 500"),
        Fault(
            Faults.VALIDATION_MISSING_MODEL_DEFAULTED,
            ("OP-VAL-002",),
            "a body without model is served with a default model",
        ),
        Fault(
            Faults.VALIDATION_TYPES_COERCED,
            ("OP-VAL-003",),
            'wrong types are coerced ("256" as max_tokens, "true" as stream)',
        ),
        Fault(
            Faults.VALIDATION_TEMPERATURE_UNCHECKED,
            ("OP-VAL-004",),
            "temperature outside 0..2 is accepted",
        ),
        Fault(
            Faults.VALIDATION_MESSAGES_UNCHECKED,
            ("OP-VAL-005",),
            "messages are not validated (an empty list, a message without role or content)",
        ),
        Fault(
            Faults.VALIDATION_MAX_TOKENS_UNCHECKED,
            ("OP-VAL-006",),
            "max_tokens of 0 or less is accepted",
        ),
        Fault(Faults.VALIDATION_UNKNOWN_MODEL_500, ("OP-VAL-007",), "an unknown model gets 500"),
        Fault(
            Faults.VALIDATION_UNKNOWN_ROLE_ACCEPTED,
            ("OP-VAL-010",),
            "a message with an unknown role is served as if it were a user message",
        ),
        Fault(
            Faults.MULTI_TURN_REJECTED,
            ("OP-VAL-008",),
            "a conversation with an assistant turn is refused with 400",
        ),
        Fault(
            Faults.SDK_ERRORS_AS_400,
            ("OP-SDK-002", "OP-SDK-004"),
            "401, 403 and 429 reach the official SDKs (by user agent) as 400: the wire is right "
            "for plain HTTP clients, wrong for the SDKs",
        ),
        Fault(
            Faults.CONTENT_PARTS_500,
            ("OP-VAL-008",),
            "content given as an array of parts crashes the handler (500)",
        ),
        Fault(
            Faults.STREAM_INVALID_BODY_ACCEPTED,
            ("OP-VAL-009",),
            "an invalid body with stream true gets 200 and a normal event stream (no 400)",
        ),
        # streaming
        Fault(
            Faults.STREAM_CONTENT_TYPE_JSON,
            ("OP-STREAM-001",),
            "streams are served as application/json",
        ),
        Fault(
            Faults.STREAM_BAD_JSON_EVENT,
            ("OP-STREAM-002",),
            "one event's data is not JSON (data: keep-alive)",
        ),
        Fault(
            Faults.STREAM_CHUNK_WRONG_OBJECT,
            ("OP-STREAM-003",),
            'chunks say object "chat.completion"',
        ),
        Fault(Faults.STREAM_ID_CHANGES, ("OP-STREAM-004",), "every chunk has a new id"),
        Fault(Faults.STREAM_NO_ROLE, ("OP-STREAM-005",), "no delta carries role assistant"),
        Fault(
            Faults.STREAM_ROLE_MISSING_SOMETIMES,
            ("OP-STREAM-005",),
            "every fifth stream's first delta has no role",
        ),
        Fault(
            Faults.STREAM_FINISH_REASON_TWICE,
            ("OP-STREAM-006",),
            "two chunks carry a finish_reason",
        ),
        Fault(Faults.STREAM_NO_DONE, ("OP-STREAM-007",), "the stream ends without data: [DONE]"),
        Fault(Faults.STREAM_DONE_TWICE, ("OP-STREAM-007",), "data: [DONE] is sent twice"),
        Fault(
            Faults.STREAM_NO_CLOSE,
            ("OP-STREAM-008",),
            "the connection stays open for 30 s after [DONE]",
        ),
        Fault(
            Faults.STREAM_NEVER_ENDS,
            ("OP-STREAM-007",),
            "streams send valid chunks every 50 ms and never end (up to 10 min); everything "
            "else is answered normally",
        ),
        Fault(
            Faults.STREAM_USAGE_CHUNK_MISSING,
            ("OP-STREAM-009",),
            "stream_options.include_usage is ignored",
        ),
        Fault(
            Faults.STREAM_USAGE_WITH_CHOICES,
            ("OP-STREAM-009",),
            "the usage chunk repeats the last choice instead of empty choices",
        ),
        Fault(
            Faults.STREAM_TEXT_DIFFERS,
            ("OP-STREAM-010",),
            "streamed text differs from the non-streamed text of the same request",
        ),
        Fault(
            Faults.STREAM_FAILS_FOR_SOME_MODELS,
            ("OP-STREAM-011",),
            "streaming fails (500) for every second listed model",
        ),
        # client compatibility of the wire
        Fault(Faults.SSE_EVENT_FIELD, ("OP-COMPAT-001",), "every event carries event: message"),
        Fault(Faults.SSE_ID_FIELD, ("OP-COMPAT-002",), "every event carries an id: line"),
        Fault(
            Faults.SSE_MULTILINE_DATA,
            ("OP-COMPAT-003",),
            "chunks are pretty-printed over several data: lines (valid SSE)",
        ),
        Fault(
            Faults.SSE_KEEPALIVE_FLOOD,
            ("OP-COMPAT-004",),
            "400 ': ping' comment lines before the first content",
        ),
        Fault(
            Faults.SSE_ERROR_KEY_NOT_FIRST,
            ("OP-COMPAT-005",),
            'in-stream errors are {"type":"error","error":{...}}',
            needs=_MIDSTREAM,
        ),
        # errors
        Fault(Faults.ERROR_BODY_MISSING_TYPE, ("OP-ERR-001",), "error bodies have no type"),
        Fault(
            Faults.ERROR_CODE_STRING,
            ("OP-ERR-002",),
            'error.code is a string ("invalid_api_key"), as OpenAI sends it',
        ),
        Fault(Faults.ERROR_TYPE_GENERIC, ("OP-ERR-003",), 'every error says type "error"'),
        Fault(Faults.NOT_FOUND_HTML, ("OP-ERR-004",), "unknown paths get an HTML 404 page"),
        Fault(
            Faults.METHOD_NOT_ALLOWED_HTML, ("OP-ERR-005",), "a wrong method gets an HTML 405 page"
        ),
        Fault(
            Faults.UPSTREAM_ERROR_AS_500,
            ("OP-ERR-006",),
            "an invalid upstream response is answered 500 instead of 502",
            needs=("--upstream-error-model", "op-test-upstream-error"),
        ),
        Fault(
            Faults.UNAVAILABLE_AS_500,
            ("OP-ERR-007",),
            "an unavailable model is answered 500 instead of 503",
            needs=("--unavailable-model", "op-test-unavailable"),
        ),
        Fault(
            Faults.MIDSTREAM_ERROR_SWALLOWED,
            ("OP-ERR-008",),
            "a failure mid-stream ends the stream as if it had finished",
            needs=_MIDSTREAM,
        ),
        # rate limits
        Fault(
            Faults.RATELIMIT_HEADERS_MISSING_ON_SUCCESS,
            ("OP-RL-001",),
            "successful answers carry no X-RateLimit-* headers",
        ),
        Fault(
            Faults.RATELIMIT_HEADERS_MISSING_ON_ERRORS,
            ("OP-RL-002",),
            "error answers carry no X-RateLimit-* headers",
        ),
        Fault(
            Faults.RATELIMIT_HEADERS_MISSING_ON_STREAM,
            ("OP-RL-003",),
            "streams carry no X-RateLimit-* headers",
        ),
        Fault(
            Faults.RATELIMIT_LIMIT_WRONG, ("OP-RL-004",), "X-RateLimit-Limit is 100 on every plan"
        ),
        Fault(
            Faults.RATELIMIT_REMAINING_STATIC,
            ("OP-RL-005",),
            "X-RateLimit-Remaining always shows the full limit",
        ),
        Fault(
            Faults.RATELIMIT_RESET_MILLISECONDS,
            ("OP-RL-006",),
            "X-RateLimit-Reset is epoch milliseconds",
        ),
        Fault(
            Faults.RATELIMIT_NOT_ENFORCED, ("OP-RL-007",), "requests per minute are not enforced"
        ),
        Fault(
            Faults.RATELIMIT_AS_503,
            ("OP-RL-007",),
            "over requests/min the answer is 503, so the SDKs raise InternalServerError",
        ),
        Fault(
            Faults.RATELIMIT_OFF_BY_ONE, ("OP-RL-007",), "one request more than the plan is allowed"
        ),
        Fault(Faults.NO_RETRY_AFTER_429, ("OP-RL-008",), "429 answers carry no Retry-After"),
        Fault(
            Faults.RETRY_AFTER_TOO_EARLY_429,
            ("OP-RL-008",),
            "Retry-After is 1 while the window stays closed until Reset",
        ),
        Fault(
            Faults.RATELIMIT_WINDOW_NEVER_RESETS,
            ("OP-RL-009",),
            "a key that hit its requests/min limit stays refused",
        ),
        Fault(
            Faults.CONCURRENCY_NOT_ENFORCED, ("OP-RL-010",), "concurrent requests are not capped"
        ),
        Fault(
            Faults.CONCURRENCY_SLOT_LEAK_ON_DISCONNECT,
            ("OP-RL-011",),
            "a stream whose client disconnects keeps its slot",
            # The check waits for the slot as long as the server's pace suggests (10 s at
            # least); the held streams must still be open by then to prove the leak.
            serve_args=("--tpot-ms", "5"),
        ),
        Fault(
            Faults.RATELIMIT_SHARED_ACROSS_KEYS,
            ("OP-RL-012",),
            "all keys share one requests/min and concurrency budget",
        ),
        Fault(Faults.TOKENS_PER_DAY_NOT_ENFORCED, ("OP-RL-013",), "tokens/day are not enforced"),
        Fault(
            Faults.RATELIMIT_ONLY_COMPLETIONS,
            ("OP-RL-001", "OP-RL-007"),
            "GET /models is neither counted nor limited and carries no X-RateLimit-* headers; "
            "completions are limited as documented (as LiteLLM does)",
        ),
        Fault(
            Faults.RATELIMIT_HEADERS_MISSING_ON_401,
            ("OP-RL-014",),
            "401 answers carry no X-RateLimit-* headers",
        ),
        Fault(
            Faults.RATELIMIT_HEADERS_OFF,
            ("OP-RL-001",),
            "no answer carries X-RateLimit-* headers (limits still enforced, Retry-After kept)",
        ),
        Fault(
            Faults.RATELIMIT_HEADERS_OPENAI,
            ("OP-RL-001",),
            "OpenAI's x-ratelimit-*-requests headers instead of X-RateLimit-*",
        ),
        Fault(
            Faults.RATELIMIT_HEADERS_IETF,
            ("OP-RL-001",),
            "the IETF draft's RateLimit/RateLimit-Policy fields instead of X-RateLimit-*",
        ),
        # SDKs
        Fault(
            Faults.REJECT_PYTHON_SDK_USER_AGENT,
            ("OP-SDK-001",),
            "requests from the Python SDK (User-Agent OpenAI/Python) get 400",
        ),
        Fault(
            Faults.REJECT_NODE_SDK_USER_AGENT,
            ("OP-SDK-003",),
            "requests from the Node SDK (User-Agent OpenAI/JS) get 400",
        ),
        # Go SDKs: the wire is right for every other client; go-openai sends Go's default
        # User-Agent (Go-http-client/), openai-go sends OpenAI/Go.
        Fault(
            Faults.GO_OPENAI_SPLIT_DATA_LINES,
            ("OP-SDK-006",),
            "streams to go-openai carry each JSON payload over two data: lines (valid SSE, but "
            "go-openai reads every data: line as its own message)",
        ),
        Fault(
            Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT,
            ("OP-SDK-007",),
            "errors to go-openai carry error.message as an object, so go-openai returns "
            "*openai.RequestError instead of *openai.APIError",
        ),
        Fault(
            Faults.OPENAI_GO_EVENTS_NOT_SEPARATED,
            ("OP-SDK-008",),
            "streams to openai-go end each event with one newline, no blank line, so openai-go "
            "never dispatches an event",
        ),
        Fault(
            Faults.OPENAI_GO_ERROR_AS_STRING,
            ("OP-SDK-009",),
            'errors to openai-go are {"error": "<message>"}, a string where openai-go expects '
            "the error object",
        ),
        # performance
        Fault(
            Faults.SLOW_FIRST_TOKEN,
            ("OP-PERF-001",),
            "every first token (and so every completion) comes 600 ms late",
            needs=("--latency-slo", "ttft_p95=300ms,completion_p95=300ms"),
        ),
        Fault(
            Faults.SLOW_MODEL_LIST,
            ("OP-PERF-001",),
            "GET /v1/models answers 600 ms late",
            needs=("--latency-slo", "ttfb_p95=300ms"),
        ),
        # chaos: no single requirement; a run against them must still finish with a verdict
        Fault(Faults.CHAOS_HANG, (), "chat completions never answer (the server waits 10 min)"),
        Fault(Faults.CHAOS_GARBAGE, (), "chat completions answer 200 with random bytes"),
        Fault(Faults.CHAOS_RESET, (), "chat completions close the connection without an answer"),
        Fault(Faults.CHAOS_ENDLESS_STREAM, (), "streams send content forever (up to 10 min)"),
        Fault(
            Faults.ERROR_ECHOES_KEY,
            (),
            "401 messages quote the key that was sent (for the redaction tests)",
        ),
    )
}


def unknown_faults(names: list[str]) -> list[str]:
    return [name for name in names if name not in FAULTS]
