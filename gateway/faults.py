"""Switchable faults: each breaks one documented requirement (named by its ID in
conformance/requirements.yaml), so the project's tests can prove that the check for that
requirement fails. Chaos faults break the transport instead, to prove a run still finishes.
Each is declared once: its constant in `Faults` registers it in `FAULTS` (what `--list-faults`,
`--fault` and the mutation matrix read)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    breaks: tuple[str, ...]  # requirement IDs whose checks must fail (or warn, for SHOULDs)
    description: str
    needs: tuple[str, ...] = ()  # suite options that make it observable (an opt-in model)
    # Gateway options it needs (e.g. streams slow enough to outlast the check's patience).
    serve_args: tuple[str, ...] = ()


FAULTS: dict[str, Fault] = {}


def _fault(name: str, description: str, *breaks: str, **options: tuple[str, ...]) -> str:
    """Register a fault (`options`: its `needs` and `serve_args`); its name, for the constant."""
    assert name not in FAULTS, f"fault {name} declared twice"
    FAULTS[name] = Fault(name, breaks, description, **options)
    return name


_MIDSTREAM = ("--midstream-error-model", "op-test-midstream-error")


class Faults:
    """Every fault's name, as a constant the gateway imports (never reassigned): a misspelt name
    is an AttributeError (and a mypy error) instead of a check that is silently never true.
    Plain str constants, not an Enum: the gateway asks ~20 of them per request, and an Enum
    member costs ~4x more to fetch and to find in the set of active faults."""

    # auth
    AUTH_MISSING_HEADER_ACCEPTED = _fault(
        "auth-missing-header-accepted",
        "requests without Authorization are served as the main Free key",
        "OP-AUTH-001",
    )
    AUTH_ANY_SCHEME = _fault(
        "auth-any-scheme",
        "any scheme is accepted: the key is whatever follows the first space",
        "OP-AUTH-002",
    )
    AUTH_PREFIX_NOT_CHECKED = _fault(
        "auth-prefix-not-checked", "keys are matched without their op_sk_ prefix", "OP-AUTH-003"
    )
    AUTH_UNKNOWN_KEY_ACCEPTED = _fault(
        "auth-unknown-key-accepted", "any op_sk_ key is served, on the Free plan", "OP-AUTH-004"
    )
    AUTH_RESTRICTION_IGNORED = _fault(
        "auth-restriction-ignored", "a restricted key may use every model", "OP-AUTH-005"
    )
    AUTH_ERROR_TYPE_WRONG = _fault(
        "auth-error-type-wrong", "401 answers say type invalid_request_error", "OP-AUTH-007"
    )
    AUTH_401_HTML = _fault("auth-401-html", "401 answers are an HTML page", "OP-AUTH-007")
    AUTH_MAIN_KEY_REFUSED = _fault(
        "auth-main-key-refused",
        "the main Free key is refused with 401 as if it were unknown",
        "OP-AUTH-006",
    )
    FORBIDDEN_AS_404 = _fault(
        "forbidden-as-404",
        "a forbidden model is answered 404, as if it did not exist",
        "OP-AUTH-005",
    )
    # models
    MODELS_WRONG_OBJECT = _fault(
        "models-wrong-object", 'the model list says object "models"', "OP-MODELS-001"
    )
    MODELS_TOO_FEW = _fault(
        "models-too-few", "only 20 models are listed (still from all 9 providers)", "OP-MODELS-008"
    )
    MODELS_SINGLE_PROVIDER = _fault(
        "models-single-provider",
        'all 51 models are listed, every one owned_by "openai"',
        "OP-MODELS-007",
    )
    MODELS_DUPLICATE_ID = _fault(
        "models-duplicate-id", "the first model is listed twice", "OP-MODELS-003"
    )
    MODELS_LISTED_UNUSABLE = _fault(
        "models-listed-unusable",
        "the list's third entry is a model that chat answers 404 for",
        "OP-MODELS-004",
    )
    MODELS_RETRIEVE_MISSING = _fault(
        "models-retrieve-missing",
        "GET /v1/models/{id} answers 404 for every model",
        "OP-MODELS-005",
    )
    # chat
    CHAT_WRONG_OBJECT = _fault(
        "chat-wrong-object", 'completions say object "text_completion"', "OP-CHAT-001"
    )
    CHAT_MODEL_NOT_ECHOED = _fault(
        "chat-model-not-echoed",
        'completions name the upstream model ("provider/model")',
        "OP-CHAT-002",
    )
    CHAT_USAGE_MISMATCH = _fault(
        "chat-usage-mismatch", "total_tokens is one more than the sum", "OP-CHAT-003"
    )
    CHAT_MAX_TOKENS_IGNORED = _fault(
        "chat-max-tokens-ignored", "max_tokens does not cut generation", "OP-CHAT-004"
    )
    CHAT_FINISH_REASON_STOP_WHEN_CUT = _fault(
        "chat-finish-reason-stop-when-cut",
        'a completion cut by max_tokens says finish_reason "stop"',
        "OP-CHAT-005",
    )
    CHAT_CONTENT_TYPE_TEXT = _fault(
        "chat-content-type-text", "completions are served as text/plain", "OP-CHAT-006"
    )
    CHAT_TEMPERATURE_2_REJECTED = _fault(
        "chat-temperature-2-rejected", "temperature above 1 is refused with 400", "OP-CHAT-007"
    )
    USAGE_OVER_MAX_TOKENS_SOMETIMES = _fault(
        "usage-over-max-tokens-sometimes",
        "every fifth completion (streamed or not) reports completion_tokens = max_tokens + 1",
        "OP-CHAT-004",
    )
    # validation
    VALIDATION_BAD_JSON_500 = _fault(
        "validation-bad-json-500", "a body that is not JSON gets 500", "OP-VAL-001"
    )
    VALIDATION_MISSING_MODEL_DEFAULTED = _fault(
        "validation-missing-model-defaulted",
        "a body without model is served with a default model",
        "OP-VAL-002",
    )
    VALIDATION_TYPES_COERCED = _fault(
        "validation-types-coerced",
        'wrong types are coerced ("256" as max_tokens, "true" as stream)',
        "OP-VAL-003",
    )
    VALIDATION_TEMPERATURE_UNCHECKED = _fault(
        "validation-temperature-unchecked", "temperature outside 0..2 is accepted", "OP-VAL-004"
    )
    VALIDATION_MESSAGES_UNCHECKED = _fault(
        "validation-messages-unchecked",
        "messages are not validated (an empty list, a message without role or content)",
        "OP-VAL-005",
    )
    VALIDATION_MAX_TOKENS_UNCHECKED = _fault(
        "validation-max-tokens-unchecked", "max_tokens of 0 or less is accepted", "OP-VAL-006"
    )
    VALIDATION_UNKNOWN_MODEL_500 = _fault(
        "validation-unknown-model-500", "an unknown model gets 500", "OP-VAL-007"
    )
    VALIDATION_UNKNOWN_ROLE_ACCEPTED = _fault(
        "validation-unknown-role-accepted",
        "a message with an unknown role is served as if it were a user message",
        "OP-VAL-010",
    )
    MULTI_TURN_REJECTED = _fault(
        "multi-turn-rejected",
        "a conversation with an assistant turn is refused with 400",
        "OP-VAL-008",
    )
    SDK_ERRORS_AS_400 = _fault(
        "sdk-errors-as-400",
        "401, 403 and 429 reach the official SDKs (by user agent) as 400: the wire is right for "
        "plain HTTP clients, wrong for the SDKs",
        "OP-SDK-002",
        "OP-SDK-004",
    )
    CONTENT_PARTS_500 = _fault(
        "content-parts-500",
        "content given as an array of parts crashes the handler (500)",
        "OP-VAL-008",
    )
    STREAM_INVALID_BODY_ACCEPTED = _fault(
        "stream-invalid-body-accepted",
        "an invalid body with stream true gets 200 and a normal event stream (no 400)",
        "OP-VAL-009",
    )
    # streaming
    STREAM_CONTENT_TYPE_JSON = _fault(
        "stream-content-type-json", "streams are served as application/json", "OP-STREAM-001"
    )
    STREAM_BAD_JSON_EVENT = _fault(
        "stream-bad-json-event", "one event's data is not JSON (data: keep-alive)", "OP-STREAM-002"
    )
    STREAM_CHUNK_WRONG_OBJECT = _fault(
        "stream-chunk-wrong-object", 'chunks say object "chat.completion"', "OP-STREAM-003"
    )
    STREAM_ID_CHANGES = _fault("stream-id-changes", "every chunk has a new id", "OP-STREAM-004")
    STREAM_NO_ROLE = _fault("stream-no-role", "no delta carries role assistant", "OP-STREAM-005")
    STREAM_ROLE_MISSING_SOMETIMES = _fault(
        "stream-role-missing-sometimes",
        "every fifth stream's first delta has no role",
        "OP-STREAM-005",
    )
    STREAM_FINISH_REASON_TWICE = _fault(
        "stream-finish-reason-twice", "two chunks carry a finish_reason", "OP-STREAM-006"
    )
    STREAM_NO_DONE = _fault(
        "stream-no-done", "the stream ends without data: [DONE]", "OP-STREAM-007"
    )
    STREAM_DONE_TWICE = _fault("stream-done-twice", "data: [DONE] is sent twice", "OP-STREAM-007")
    STREAM_NO_CLOSE = _fault(
        "stream-no-close", "the connection stays open for 30 s after [DONE]", "OP-STREAM-008"
    )
    STREAM_NEVER_ENDS = _fault(
        "stream-never-ends",
        "streams send valid chunks every 50 ms and never end (up to 10 min); everything else is "
        "answered normally",
        "OP-STREAM-007",
    )
    STREAM_USAGE_CHUNK_MISSING = _fault(
        "stream-usage-chunk-missing", "stream_options.include_usage is ignored", "OP-STREAM-009"
    )
    STREAM_USAGE_WITH_CHOICES = _fault(
        "stream-usage-with-choices",
        "the usage chunk repeats the last choice instead of empty choices",
        "OP-STREAM-009",
    )
    STREAM_TEXT_DIFFERS = _fault(
        "stream-text-differs",
        "streamed text differs from the non-streamed text of the same request",
        "OP-STREAM-010",
    )
    STREAM_FAILS_FOR_SOME_MODELS = _fault(
        "stream-fails-for-some-models",
        "streaming fails (500) for every second listed model",
        "OP-STREAM-011",
    )
    # client compatibility of the wire
    SSE_EVENT_FIELD = _fault(
        "sse-event-field", "every event carries event: message", "OP-COMPAT-001"
    )
    SSE_ID_FIELD = _fault("sse-id-field", "every event carries an id: line", "OP-COMPAT-002")
    SSE_MULTILINE_DATA = _fault(
        "sse-multiline-data",
        "chunks are pretty-printed over several data: lines (valid SSE)",
        "OP-COMPAT-003",
    )
    SSE_KEEPALIVE_FLOOD = _fault(
        "sse-keepalive-flood",
        "400 ': ping' comment lines before the first content",
        "OP-COMPAT-004",
    )
    SSE_ERROR_KEY_NOT_FIRST = _fault(
        "sse-error-key-not-first",
        'in-stream errors are {"type":"error","error":{...}}',
        "OP-COMPAT-005",
        needs=_MIDSTREAM,
    )
    # errors
    ERROR_BODY_MISSING_TYPE = _fault(
        "error-body-missing-type", "error bodies have no type", "OP-ERR-001"
    )
    ERROR_CODE_STRING = _fault(
        "error-code-string",
        'error.code is a string ("invalid_api_key"), as OpenAI sends it',
        "OP-ERR-002",
    )
    ERROR_TYPE_GENERIC = _fault("error-type-generic", 'every error says type "error"', "OP-ERR-003")
    NOT_FOUND_HTML = _fault("not-found-html", "unknown paths get an HTML 404 page", "OP-ERR-004")
    METHOD_NOT_ALLOWED_HTML = _fault(
        "method-not-allowed-html", "a wrong method gets an HTML 405 page", "OP-ERR-005"
    )
    UPSTREAM_ERROR_AS_500 = _fault(
        "upstream-error-as-500",
        "an invalid upstream response is answered 500 instead of 502",
        "OP-ERR-006",
        needs=("--upstream-error-model", "op-test-upstream-error"),
    )
    UNAVAILABLE_AS_500 = _fault(
        "unavailable-as-500",
        "an unavailable model is answered 500 instead of 503",
        "OP-ERR-007",
        needs=("--unavailable-model", "op-test-unavailable"),
    )
    MIDSTREAM_ERROR_SWALLOWED = _fault(
        "midstream-error-swallowed",
        "a failure mid-stream ends the stream as if it had finished",
        "OP-ERR-008",
        needs=_MIDSTREAM,
    )
    # rate limits
    RATELIMIT_HEADERS_MISSING_ON_SUCCESS = _fault(
        "ratelimit-headers-missing-on-success",
        "successful answers carry no X-RateLimit-* headers",
        "OP-RL-001",
    )
    RATELIMIT_HEADERS_MISSING_ON_ERRORS = _fault(
        "ratelimit-headers-missing-on-errors",
        "error answers carry no X-RateLimit-* headers",
        "OP-RL-002",
    )
    RATELIMIT_HEADERS_MISSING_ON_STREAM = _fault(
        "ratelimit-headers-missing-on-stream", "streams carry no X-RateLimit-* headers", "OP-RL-003"
    )
    RATELIMIT_LIMIT_WRONG = _fault(
        "ratelimit-limit-wrong", "X-RateLimit-Limit is 100 on every plan", "OP-RL-004"
    )
    RATELIMIT_REMAINING_STATIC = _fault(
        "ratelimit-remaining-static",
        "X-RateLimit-Remaining always shows the full limit",
        "OP-RL-005",
    )
    RATELIMIT_RESET_MILLISECONDS = _fault(
        "ratelimit-reset-milliseconds", "X-RateLimit-Reset is epoch milliseconds", "OP-RL-006"
    )
    RATELIMIT_NOT_ENFORCED = _fault(
        "ratelimit-not-enforced", "requests per minute are not enforced", "OP-RL-007"
    )
    RATELIMIT_AS_503 = _fault(
        "ratelimit-as-503",
        "over requests/min the answer is 503, so the SDKs raise InternalServerError",
        "OP-RL-007",
    )
    RATELIMIT_OFF_BY_ONE = _fault(
        "ratelimit-off-by-one", "one request more than the plan is allowed", "OP-RL-007"
    )
    NO_RETRY_AFTER_429 = _fault(
        "429-no-retry-after", "429 answers carry no Retry-After", "OP-RL-008"
    )
    RETRY_AFTER_TOO_EARLY_429 = _fault(
        "429-retry-after-too-early",
        "Retry-After is 1 while the window stays closed until Reset",
        "OP-RL-008",
    )
    RATELIMIT_WINDOW_NEVER_RESETS = _fault(
        "ratelimit-window-never-resets",
        "a key that hit its requests/min limit stays refused",
        "OP-RL-009",
    )
    CONCURRENCY_NOT_ENFORCED = _fault(
        "concurrency-not-enforced", "concurrent requests are not capped", "OP-RL-010"
    )
    # The check waits for the slot as long as the server's pace suggests (10 s at least); the
    # held streams must still be open by then to prove the leak.
    CONCURRENCY_SLOT_LEAK_ON_DISCONNECT = _fault(
        "concurrency-slot-leak-on-disconnect",
        "a stream whose client disconnects keeps its slot",
        "OP-RL-011",
        serve_args=("--tpot-ms", "5"),
    )
    RATELIMIT_SHARED_ACROSS_KEYS = _fault(
        "ratelimit-shared-across-keys",
        "all keys share one requests/min and concurrency budget",
        "OP-RL-012",
    )
    TOKENS_PER_DAY_NOT_ENFORCED = _fault(
        "tokens-per-day-not-enforced", "tokens/day are not enforced", "OP-RL-013"
    )
    # LiteLLM's way: only completions are counted (and carry the key's headers), never GET /models.
    RATELIMIT_ONLY_COMPLETIONS = _fault(
        "ratelimit-only-completions",
        "GET /models is neither counted nor limited and carries no X-RateLimit-* headers; "
        "completions are limited as documented (as LiteLLM does)",
        "OP-RL-001",
        "OP-RL-007",
    )
    RATELIMIT_HEADERS_MISSING_ON_401 = _fault(
        "ratelimit-headers-missing-on-401",
        "401 answers carry no X-RateLimit-* headers",
        "OP-RL-014",
    )
    # Limits enforced as documented, signalled in another convention (or not at all).
    RATELIMIT_HEADERS_OFF = _fault(
        "ratelimit-headers-off",
        "no answer carries X-RateLimit-* headers (limits still enforced, Retry-After kept)",
        "OP-RL-001",
    )
    RATELIMIT_HEADERS_OPENAI = _fault(
        "ratelimit-headers-openai",
        "OpenAI's x-ratelimit-*-requests headers instead of X-RateLimit-*",
        "OP-RL-001",
    )
    RATELIMIT_HEADERS_IETF = _fault(
        "ratelimit-headers-ietf",
        "the IETF draft's RateLimit/RateLimit-Policy fields instead of X-RateLimit-*",
        "OP-RL-001",
    )
    # SDKs
    REJECT_PYTHON_SDK_USER_AGENT = _fault(
        "reject-python-sdk-user-agent",
        "requests from the Python SDK (User-Agent OpenAI/Python) get 400",
        "OP-SDK-001",
    )
    REJECT_NODE_SDK_USER_AGENT = _fault(
        "reject-node-sdk-user-agent",
        "requests from the Node SDK (User-Agent OpenAI/JS) get 400",
        "OP-SDK-003",
    )
    # Go SDKs: the wire is right for every other client; go-openai sends Go's default
    # User-Agent (Go-http-client/), openai-go sends OpenAI/Go.
    GO_OPENAI_SPLIT_DATA_LINES = _fault(
        "go-openai-split-data-lines",
        "streams to go-openai carry each JSON payload over two data: lines (valid SSE, but go-"
        "openai reads every data: line as its own message)",
        "OP-SDK-006",
    )
    GO_OPENAI_ERROR_MESSAGE_OBJECT = _fault(
        "go-openai-error-message-object",
        "errors to go-openai carry error.message as an object, so go-openai returns "
        "*openai.RequestError instead of *openai.APIError",
        "OP-SDK-007",
    )
    OPENAI_GO_EVENTS_NOT_SEPARATED = _fault(
        "openai-go-events-not-separated",
        "streams to openai-go end each event with one newline, no blank line, so openai-go never "
        "dispatches an event",
        "OP-SDK-008",
    )
    OPENAI_GO_ERROR_AS_STRING = _fault(
        "openai-go-error-as-string",
        'errors to openai-go are {"error": "<message>"}, a string where openai-go expects the '
        "error object",
        "OP-SDK-009",
    )
    # performance
    SLOW_FIRST_TOKEN = _fault(
        "slow-first-token",
        "every first token (and so every completion) comes 600 ms late",
        "OP-PERF-001",
        needs=("--latency-slo", "ttft_p95=300ms,completion_p95=300ms"),
    )
    SLOW_MODEL_LIST = _fault(
        "slow-model-list",
        "GET /v1/models answers 600 ms late",
        "OP-PERF-001",
        needs=("--latency-slo", "ttfb_p95=300ms"),
    )
    # chaos: no single requirement; a run against them must still finish with a verdict
    CHAOS_HANG = _fault("chaos-hang", "chat completions never answer (the server waits 10 min)")
    CHAOS_GARBAGE = _fault("chaos-garbage", "chat completions answer 200 with random bytes")
    CHAOS_RESET = _fault("chaos-reset", "chat completions close the connection without an answer")
    CHAOS_ENDLESS_STREAM = _fault(
        "chaos-endless-stream", "streams send content forever (up to 10 min)"
    )
    ERROR_ECHOES_KEY = _fault(
        "error-echoes-key", "401 messages quote the key that was sent (for the redaction tests)"
    )


def unknown_faults(names: list[str]) -> list[str]:
    return [name for name in names if name not in FAULTS]
