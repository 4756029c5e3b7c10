"""Whole-run invariants: every exchange of the run is evidence for the per-answer rules of the
contract, whichever check sent it.

Checks still provoke their situations (a 401, a cut completion, a stream); these rules judge every
answer that comes back, so a defect that shows in one stream of five, or in an answer to some
other check, is still caught and reported once, under the requirement it breaks, with examples
and its rate ("3 of 41 streams").

Each rule is a pure function of one exchange (and what the run knows about keys and limits); a
rule names the requirements whose own checks provoke its situation on purpose ("owners"), whose
exchanges it leaves to them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from conformance.verdicts import transport_failure
from opconform.client import Exchange
from opconform.contract import RATE_HEADERS, WINDOW_SECONDS
from schemas.loader import validator

EXAMPLES_KEPT = 3


@dataclass(frozen=True)
class Context:
    """Who sent an exchange: the running check's requirements (empty for a shared fixture)."""

    requirements: frozenset[str] = frozenset()
    check: str = ""


@dataclass
class Tally:
    """What one rule saw: how many exchanges it judged, how many broke it, the first few."""

    requirement: str
    rule: str
    unit: str
    seen: int = 0
    broken: int = 0
    examples: list[tuple[str, Exchange, str]] = field(default_factory=list)  # message, ex, check
    # Requirements every broken exchange's problem is really about (see Rule.implied): when
    # one of them is broken, this tally is a consequence, blocked by it.
    implied: frozenset[str] | None = None

    def add(
        self,
        problem: str | None,
        exchange: Exchange,
        context: Context,
        implied: frozenset[str] = frozenset(),
    ) -> None:
        self.seen += 1
        if problem is None:
            return
        self.broken += 1
        self.implied = implied if self.implied is None else self.implied & implied
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append((problem, exchange, context.check))

    @property
    def rate(self) -> str:
        return f"{self.broken} of {self.seen} {self.unit}"


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


# ---------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    requirement: str
    description: str
    unit: str
    judge: Callable[[Exchange], str | bool | None]  # problem, None (holds) or False (n/a)
    owners: frozenset[str] = frozenset()
    needs: tuple[str, ...] = ()
    # What a broken exchange's problem is really about, if another requirement's deviation
    # explains it (a stream cut for running past max_tokens: OP-CHAT-004's).
    implied: Callable[[Exchange], frozenset[str]] = lambda exchange: frozenset()
    # False for rules that judge the status line and headers only: those still hold evidence
    # when the body broke off in transport.
    reads_body: bool = True


def _documented(exchange: Exchange) -> bool:
    """A request the reference documents (GET /models, GET /models/{id}, POST
    /chat/completions)."""
    path = exchange.path.split("?")[0]
    if exchange.method == "GET":
        return path == "/models" or path.startswith("/models/")
    return exchange.method == "POST" and path == "/chat/completions"


def _error_body(exchange: Exchange) -> str | bool | None:
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


def _headers(kind: str) -> Callable[[Exchange], str | bool | None]:
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


def _completion_schema(exchange: Exchange) -> str | bool | None:
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


def _usage_adds_up(exchange: Exchange) -> str | bool | None:
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


def _within_max_tokens(exchange: Exchange) -> str | bool | None:
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


def _stream_rule(judge: Callable[[Exchange, list[dict[str, Any]]], str | bool | None]) -> Any:
    def rule(exchange: Exchange) -> str | bool | None:
        if not _complete_stream(exchange):
            return False
        chunks = _chunks(exchange)
        if chunks is None or not chunks:
            return False  # OP-STREAM-002 judges streams that are not JSON events
        return judge(exchange, chunks)

    return rule


def _content_type(exchange: Exchange) -> str | bool | None:
    if not _stream_requested(exchange) or exchange.status != 200:
        return False
    if exchange.content_type == "text/event-stream":
        return None
    return f"stream answered with Content-Type {exchange.header('content-type')!r}"


def _json_events(exchange: Exchange) -> str | bool | None:
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


def _chunk_schema(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | None:
    check = validator("chat-completion-chunk")
    for index, chunk in enumerate(chunks):
        error = next(iter(check.iter_errors(chunk)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"chunk {index}: {where}: {error.message}"
    return None


def _one_identity(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | None:
    for name in ("id", "created", "model"):
        values = {json.dumps(c.get(name)) for c in chunks}
        if len(values) > 1:
            return f"{len(values)} different {name} values in one stream"
    return None


def _role_first(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | None:
    choices = chunks[0].get("choices") or [{}]
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    role = delta.get("role") if isinstance(delta, dict) else None
    return None if role == "assistant" else f"first chunk's delta role is {role!r}"


def _one_finish(exchange: Exchange, chunks: list[dict[str, Any]]) -> str | bool | None:
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


def _done_last(exchange: Exchange) -> str | bool | None:
    if not _complete_stream(exchange):
        return False
    if exchange.error_kind == "stream-cap":
        return f"no [DONE]: {exchange.error}"
    if exchange.done_count != 1:
        return f"[DONE] came {exchange.done_count} times"
    if exchange.events_after_done:
        return f"{exchange.events_after_done} events after [DONE]"
    return None


def _past_max_tokens(exchange: Exchange) -> frozenset[str]:
    """A stream we cut for more events than its max_tokens allows went on past max_tokens:
    a target that ignores max_tokens ends such streams only later, so no [DONE] by then is
    OP-CHAT-004's deviation when that one is broken."""
    return frozenset({"OP-CHAT-004"}) if exchange.past_event_cap else frozenset()


def _closes(exchange: Exchange) -> str | bool | None:
    if not _complete_stream(exchange) or exchange.done_count == 0:
        return False
    if exchange.closed_after_done is False:
        return "the connection stayed open after [DONE]"
    return None


def _retry_after(exchange: Exchange) -> str | bool | None:
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


def _no_5xx(exchange: Exchange) -> str | bool | None:
    if exchange.status is None or exchange.status < 500:
        return exchange.status is None and False
    if exchange.status in (502, 503):
        return False  # documented upstream conditions, judged by OP-ERR-006/007
    return f"{exchange.status} answer"


def _model_list(exchange: Exchange) -> str | bool | None:
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


_VALIDATION = frozenset(f"OP-VAL-00{i}" for i in range(1, 8)) | {"OP-VAL-009"}
_TEST_MODELS = frozenset({"OP-ERR-006", "OP-ERR-007", "OP-ERR-008", "OP-COMPAT-005"})
_STREAM_OWNERS = _TEST_MODELS | {"OP-RL-010", "OP-RL-011"} | _VALIDATION
# Checks that send unusual or invalid bodies judge their answers themselves.
_CLIENT_INPUT = _VALIDATION | {"OP-VAL-008", "OP-VAL-010"}
# Checks that send invalid input only to get an error answer to look at (bad JSON, an unknown
# model): a 5xx they meet is the validation requirement's own deviation, judged there.
_PROVOKE_ERRORS = frozenset({"OP-ERR-001", "OP-ERR-002", "OP-ERR-003", "OP-RL-002"})

RULES: tuple[Rule, ...] = (
    Rule(
        "OP-ERR-001",
        "every error answer is JSON with error.message and error.type",
        "error answers",
        _error_body,
    ),
    Rule("OP-RL-001", "every successful answer carries the rate-limit headers", "answers",
         _headers("success"), reads_body=False),
    Rule("OP-RL-002", "every error answer to a keyed request carries the rate-limit headers",
         "error answers", _headers("error"), needs=("OP-RL-001",), reads_body=False),
    Rule("OP-RL-003", "every stream carries the rate-limit headers", "streams",
         _headers("stream"), needs=("OP-RL-001",), reads_body=False),
    Rule("OP-RL-014", "answers to unauthenticated requests carry the rate-limit headers",
         "401 answers", _headers("anonymous"), needs=("OP-RL-001",), reads_body=False),
    Rule("OP-MODELS-001", "every model list matches the schema", "model lists", _model_list),
    Rule("OP-CHAT-001", "every completion matches the response schema", "completions",
         _completion_schema, owners=_CLIENT_INPUT, needs=("OP-CHAT-006",)),
    Rule("OP-CHAT-003", "usage adds up in every completion", "completions", _usage_adds_up,
         owners=_CLIENT_INPUT, needs=("OP-CHAT-001",)),
    Rule("OP-CHAT-004", "completion_tokens never exceeds max_tokens", "answers with usage",
         _within_max_tokens, owners=_CLIENT_INPUT),
    Rule("OP-RL-008", "every 429 carries Retry-After in whole seconds, 1..60", "429 answers",
         _retry_after, reads_body=False),
    Rule("OP-STREAM-001", "every stream is served as text/event-stream", "streams",
         _content_type, reads_body=False),
    Rule("OP-STREAM-002", "every stream event is one JSON object", "streams", _json_events,
         owners=_STREAM_OWNERS, needs=("OP-STREAM-001",)),
    Rule("OP-STREAM-003", "every chunk matches the chunk schema", "streams",
         _stream_rule(_chunk_schema), owners=_STREAM_OWNERS, needs=("OP-STREAM-002",)),
    Rule("OP-STREAM-004", "one id, created and model per stream", "streams",
         _stream_rule(_one_identity), owners=_STREAM_OWNERS, needs=("OP-STREAM-002",)),
    Rule("OP-STREAM-005", "the first delta of every stream has role assistant", "streams",
         _stream_rule(_role_first), owners=_STREAM_OWNERS, needs=("OP-STREAM-002",)),
    Rule("OP-STREAM-006", "exactly one finish_reason per stream", "streams",
         _stream_rule(_one_finish), owners=_STREAM_OWNERS, needs=("OP-STREAM-002",)),
    Rule("OP-STREAM-007", "[DONE] once and last in every stream", "streams", _done_last,
         owners=_STREAM_OWNERS, needs=("OP-STREAM-001",), implied=_past_max_tokens),
    Rule("OP-STREAM-008", "the server closes every stream after [DONE]", "streams", _closes,
         owners=_STREAM_OWNERS, needs=("OP-STREAM-007",)),
    Rule("OP-VAL-008", "no request is answered with an unexpected 5xx", "answers", _no_5xx,
         owners=_VALIDATION | _TEST_MODELS | _PROVOKE_ERRORS | {"OP-STREAM-011"},
         reads_body=False),
)  # fmt: skip


class PrematureLimits:
    """A 429 on a key that had sent fewer requests than its plan allows in a window the run saw
    from its start: the limit is below the documented one (OP-RL-007), whichever check met it.
    The client's pacer judges each 429 (`Exchange.below_plan`); a 429 it explains (the window
    spent by the run, or perhaps by another client before the run could see a whole window) is
    no evidence, and is not counted here. A 429 on a request sent after the reset the key's
    refusals named had passed (`Exchange.window_not_reset`) is OP-RL-009's, whichever check
    waited it out: reported even when that requirement's own check (opt-in) is not run."""

    def __init__(self) -> None:
        self.tally = Tally("OP-RL-007", "no 429 below the plan's requests/min", "429 answers")
        # A 429 that only the run's other keys explain: the limit is counted across keys.
        self.per_key = Tally("OP-RL-012", "limits apply per key", "429 answers")
        # A 429 on a key whose own X-RateLimit-Limit is below its plan: the key is not of it.
        self.stated = Tally("OP-RL-004", "X-RateLimit-Limit is the plan's", "429 answers")
        # A 429 on a request sent after the reset the key's refusals named: whichever check
        # waited it out (a retry, the next check on the key), the window did not reset.
        self.not_reset = Tally(
            "OP-RL-009", "a key is served again once its named reset has passed", "429 answers"
        )

    def observe(self, exchange: Exchange, context: Context) -> None:
        if exchange.key_label is None or exchange.status != 429:
            return
        if exchange.window_not_reset:
            self.not_reset.add(exchange.limit_note, exchange, context)
            return
        # Concurrency, tokens/day and per-key isolation are those checks' own situations.
        owned = context.requirements & {"OP-RL-010", "OP-RL-011", "OP-RL-012", "OP-RL-013"}
        if owned or exchange.limit_note is None:
            return
        if exchange.shared_limit:
            self.per_key.add(exchange.limit_note, exchange, context)
            return
        if exchange.stated_below_plan:
            self.stated.add(exchange.limit_note, exchange, context)
            return
        self.tally.add(exchange.limit_note if exchange.below_plan else None, exchange, context)


class Invariants:
    """Fed every exchange of the run; judged at the end (or whenever asked)."""

    def __init__(self) -> None:
        self.tallies = {rule.requirement: Tally(rule.requirement, rule.description, rule.unit)
                        for rule in RULES}  # fmt: skip
        self.limits = PrematureLimits()

    def observe(self, exchange: Exchange, context: Context) -> None:
        broken_off = transport_failure(exchange) is not None
        for rule in RULES:
            if context.requirements & rule.owners or (broken_off and rule.reads_body):
                continue
            problem = rule.judge(exchange)
            if problem is False:
                continue
            broken = isinstance(problem, str)
            self.tallies[rule.requirement].add(
                problem if isinstance(problem, str) else None,
                exchange,
                context,
                rule.implied(exchange) if broken else frozenset(),
            )
        self.limits.observe(exchange, context)

    def all_tallies(self) -> Iterator[Tally]:
        yield from self.tallies.values()
        yield self.limits.tally
        yield self.limits.per_key
        yield self.limits.stated
        yield self.limits.not_reset

    def broken(self) -> set[str]:
        return {tally.requirement for tally in self.all_tallies() if tally.broken}

    def needs_of(self, requirement: str) -> tuple[str, ...]:
        if requirement == "OP-RL-007":
            return ("OP-RL-004",)
        return next((rule.needs for rule in RULES if rule.requirement == requirement), ())
