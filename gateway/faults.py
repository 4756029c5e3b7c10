"""Switchable faults: each breaks one documented requirement (named by its ID in
conformance/requirements.yaml), so the project's tests can prove that the check for that
requirement fails. Chaos faults break the transport instead, to prove a run still finishes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    breaks: tuple[str, ...]  # requirement IDs whose checks must fail (or warn, for SHOULDs)
    description: str
    # Extra suite options the fault needs to be observable (e.g. an opt-in area's model).
    needs: tuple[str, ...] = ()


_MIDSTREAM = ("--midstream-error-model", "op-test-midstream-error")

FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        # auth
        Fault(
            "auth-missing-header-accepted",
            ("OP-AUTH-001",),
            "requests without Authorization are served as the main Free key",
        ),
        Fault(
            "auth-any-scheme",
            ("OP-AUTH-002",),
            "any scheme is accepted: the key is whatever follows the first space",
        ),
        Fault(
            "auth-prefix-not-checked",
            ("OP-AUTH-003",),
            "keys are matched without their op_sk_ prefix",
        ),
        Fault(
            "auth-unknown-key-accepted",
            ("OP-AUTH-004",),
            "any op_sk_ key is served, on the Free plan",
        ),
        Fault("auth-restriction-ignored", ("OP-AUTH-005",), "a restricted key may use every model"),
        Fault(
            "auth-error-type-wrong", ("OP-AUTH-007",), "401 answers say type invalid_request_error"
        ),
        Fault("auth-401-html", ("OP-AUTH-007",), "401 answers are an HTML page"),
        Fault(
            "auth-main-key-refused",
            ("OP-AUTH-006",),
            "the main Free key is refused with 401 as if it were unknown",
        ),
        Fault(
            "forbidden-as-404",
            ("OP-AUTH-005", "OP-SDK-002", "OP-SDK-004"),
            "a forbidden model is answered 404, as if it did not exist",
        ),
        # models
        Fault("models-wrong-object", ("OP-MODELS-001",), 'the model list says object "models"'),
        Fault("models-few-providers", ("OP-MODELS-002",), "only OpenAI's models are listed"),
        Fault("models-duplicate-id", ("OP-MODELS-003",), "the first model is listed twice"),
        Fault(
            "models-listed-unusable",
            ("OP-MODELS-004",),
            "the list's third entry is a model that chat answers 404 for",
        ),
        Fault(
            "models-retrieve-missing",
            ("OP-MODELS-005",),
            "GET /v1/models/{id} answers 404 for every model",
        ),
        # chat
        Fault("chat-wrong-object", ("OP-CHAT-001",), 'completions say object "text_completion"'),
        Fault(
            "chat-model-not-echoed",
            ("OP-CHAT-002",),
            'completions name the upstream model ("provider/model")',
        ),
        Fault("chat-usage-mismatch", ("OP-CHAT-003",), "total_tokens is one more than the sum"),
        Fault("chat-max-tokens-ignored", ("OP-CHAT-004",), "max_tokens does not cut generation"),
        Fault(
            "chat-finish-reason-stop-when-cut",
            ("OP-CHAT-005",),
            'a completion cut by max_tokens says finish_reason "stop"',
        ),
        Fault("chat-content-type-text", ("OP-CHAT-006",), "completions are served as text/plain"),
        Fault(
            "chat-temperature-2-rejected",
            ("OP-CHAT-007",),
            "temperature above 1 is refused with 400",
        ),
        # validation
        Fault("validation-bad-json-500", ("OP-VAL-001",), "a body that is not JSON gets 500"),
        Fault(
            "validation-missing-model-defaulted",
            ("OP-VAL-002",),
            "a body without model is served with a default model",
        ),
        Fault(
            "validation-types-coerced",
            ("OP-VAL-003",),
            'wrong types are coerced ("256" as max_tokens, "true" as stream)',
        ),
        Fault(
            "validation-temperature-unchecked",
            ("OP-VAL-004",),
            "temperature outside 0..2 is accepted",
        ),
        Fault(
            "validation-messages-unchecked",
            ("OP-VAL-005",),
            "messages are not validated (empty list, unknown roles accepted)",
        ),
        Fault(
            "validation-max-tokens-unchecked",
            ("OP-VAL-006",),
            "max_tokens of 0 or less is accepted",
        ),
        Fault("validation-unknown-model-500", ("OP-VAL-007",), "an unknown model gets 500"),
        Fault(
            "content-parts-500",
            ("OP-VAL-008",),
            "content given as an array of parts crashes the handler (500)",
        ),
        # streaming
        Fault(
            "stream-content-type-json", ("OP-STREAM-001",), "streams are served as application/json"
        ),
        Fault(
            "stream-bad-json-event",
            ("OP-STREAM-002",),
            "one event's data is not JSON (data: keep-alive)",
        ),
        Fault(
            "stream-chunk-wrong-object", ("OP-STREAM-003",), 'chunks say object "chat.completion"'
        ),
        Fault("stream-id-changes", ("OP-STREAM-004",), "every chunk has a new id"),
        Fault("stream-no-role", ("OP-STREAM-005",), "no delta carries role assistant"),
        Fault("stream-finish-reason-twice", ("OP-STREAM-006",), "two chunks carry a finish_reason"),
        Fault("stream-no-done", ("OP-STREAM-007",), "the stream ends without data: [DONE]"),
        Fault("stream-done-twice", ("OP-STREAM-007",), "data: [DONE] is sent twice"),
        Fault(
            "stream-no-close", ("OP-STREAM-008",), "the connection stays open for 30 s after [DONE]"
        ),
        Fault(
            "stream-usage-chunk-missing",
            ("OP-STREAM-009",),
            "stream_options.include_usage is ignored",
        ),
        Fault(
            "stream-usage-with-choices",
            ("OP-STREAM-009",),
            "the usage chunk repeats the last choice instead of empty choices",
        ),
        Fault(
            "stream-text-differs",
            ("OP-STREAM-010",),
            "streamed text differs from the non-streamed text of the same request",
        ),
        Fault(
            "stream-fails-for-some-models",
            ("OP-STREAM-011",),
            "streaming fails (500) for every second listed model",
        ),
        # client compatibility of the wire
        Fault("sse-event-field", ("OP-COMPAT-001",), "every event carries event: message"),
        Fault("sse-id-field", ("OP-COMPAT-002",), "every event carries an id: line"),
        Fault(
            "sse-multiline-data",
            ("OP-COMPAT-003",),
            "chunks are pretty-printed over several data: lines (valid SSE)",
        ),
        Fault(
            "sse-keepalive-flood",
            ("OP-COMPAT-004",),
            "400 ': ping' comment lines before the first content",
        ),
        Fault(
            "sse-error-key-not-first",
            ("OP-COMPAT-005",),
            'in-stream errors are {"type":"error","error":{...}}',
            needs=_MIDSTREAM,
        ),
        # errors
        Fault("error-body-missing-type", ("OP-ERR-001",), "error bodies have no type"),
        Fault(
            "error-code-string",
            ("OP-ERR-002",),
            'error.code is a string ("invalid_api_key"), as OpenAI sends it',
        ),
        Fault("error-type-generic", ("OP-ERR-003",), 'every error says type "error"'),
        Fault("not-found-html", ("OP-ERR-004",), "unknown paths get an HTML 404 page"),
        Fault("method-not-allowed-html", ("OP-ERR-005",), "a wrong method gets an HTML 405 page"),
        Fault(
            "upstream-error-as-500",
            ("OP-ERR-006",),
            "an invalid upstream response is answered 500 instead of 502",
            needs=("--upstream-error-model", "op-test-upstream-error"),
        ),
        Fault(
            "unavailable-as-500",
            ("OP-ERR-007",),
            "an unavailable model is answered 500 instead of 503",
            needs=("--unavailable-model", "op-test-unavailable"),
        ),
        Fault(
            "midstream-error-swallowed",
            ("OP-ERR-008",),
            "a failure mid-stream ends the stream as if it had finished",
            needs=_MIDSTREAM,
        ),
        # rate limits
        Fault(
            "ratelimit-headers-missing-on-success",
            ("OP-RL-001",),
            "successful answers carry no X-RateLimit-* headers",
        ),
        Fault(
            "ratelimit-headers-missing-on-errors",
            ("OP-RL-002",),
            "error answers carry no X-RateLimit-* headers",
        ),
        Fault(
            "ratelimit-headers-missing-on-stream",
            ("OP-RL-003",),
            "streams carry no X-RateLimit-* headers",
        ),
        Fault("ratelimit-limit-wrong", ("OP-RL-004",), "X-RateLimit-Limit is 100 on every plan"),
        Fault(
            "ratelimit-remaining-static",
            ("OP-RL-005",),
            "X-RateLimit-Remaining always shows the full limit",
        ),
        Fault(
            "ratelimit-reset-milliseconds",
            ("OP-RL-006",),
            "X-RateLimit-Reset is epoch milliseconds",
        ),
        Fault("ratelimit-not-enforced", ("OP-RL-007",), "requests per minute are not enforced"),
        Fault(
            "ratelimit-as-503",
            ("OP-RL-007", "OP-SDK-002", "OP-SDK-004"),
            "over requests/min the answer is 503, so the SDKs raise InternalServerError",
        ),
        Fault("ratelimit-off-by-one", ("OP-RL-007",), "one request more than the plan is allowed"),
        Fault("429-no-retry-after", ("OP-RL-008",), "429 answers carry no Retry-After"),
        Fault(
            "429-retry-after-too-early",
            ("OP-RL-008",),
            "Retry-After is 1 while the window stays closed until Reset",
        ),
        Fault(
            "ratelimit-window-never-resets",
            ("OP-RL-009",),
            "a key that hit its requests/min limit stays refused",
        ),
        Fault("concurrency-not-enforced", ("OP-RL-010",), "concurrent requests are not capped"),
        Fault(
            "concurrency-slot-leak-on-disconnect",
            ("OP-RL-011",),
            "a stream whose client disconnects keeps its slot",
        ),
        Fault(
            "ratelimit-shared-across-keys",
            ("OP-RL-012",),
            "all keys share one requests/min and concurrency budget",
        ),
        Fault("tokens-per-day-not-enforced", ("OP-RL-013",), "tokens/day are not enforced"),
        Fault(
            "ratelimit-headers-missing-on-401",
            ("OP-RL-014",),
            "401 answers carry no X-RateLimit-* headers",
        ),
        # SDKs
        Fault(
            "reject-python-sdk-user-agent",
            ("OP-SDK-001",),
            "requests from the Python SDK (User-Agent OpenAI/Python) get 400",
        ),
        Fault(
            "reject-node-sdk-user-agent",
            ("OP-SDK-003",),
            "requests from the Node SDK (User-Agent OpenAI/JS) get 400",
        ),
        # performance
        Fault(
            "slow-first-token",
            ("OP-PERF-001",),
            "every first token (and so every completion) comes 600 ms late",
            needs=("--latency-slo", "ttft_p95=300ms,completion_p95=300ms"),
        ),
        Fault(
            "slow-model-list",
            ("OP-PERF-001",),
            "GET /v1/models answers 600 ms late",
            needs=("--latency-slo", "ttfb_p95=300ms"),
        ),
        # chaos: no single requirement; a run against them must still finish with a verdict
        Fault("chaos-hang", (), "chat completions never answer (the server waits 10 min)"),
        Fault("chaos-garbage", (), "chat completions answer 200 with random bytes"),
        Fault("chaos-reset", (), "chat completions close the connection without an answer"),
        Fault("chaos-endless-stream", (), "streams send content forever (up to 10 min)"),
        Fault(
            "error-echoes-key",
            (),
            "401 messages quote the key that was sent (for the redaction tests)",
        ),
    )
}


def unknown_faults(names: list[str]) -> list[str]:
    return [name for name in names if name not in FAULTS]
