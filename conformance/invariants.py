"""Whole-run invariants: every exchange of the run is evidence for the per-answer rules of the
contract, whichever check sent it.

Checks still provoke their situations (a 401, a cut completion, a stream); these rules judge every
answer that comes back, so a defect that shows in one stream of five, or in an answer to some
other check, is still caught and reported once, under the requirement it breaks, with examples
and its rate ("3 of 41 streams").

Each rule judges by a pure function of one exchange (conformance/judges.py; what the run knows
about keys and limits for 429s); it stands on its requirement's needs (requirements.yaml), and a
rule names the requirements whose own checks provoke its situation on purpose ("owners"), whose
exchanges it leaves to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from opconform.client import Exchange
from opconform.conformance.catalogue import prerequisites
from opconform.conformance.judges import (
    chunk_schema,
    closes,
    completion_schema,
    content_type,
    done_last,
    error_body,
    headers,
    json_events,
    model_list,
    no_5xx,
    one_finish,
    one_identity,
    past_max_tokens,
    retry_after,
    role_first,
    stream_rule,
    usage_adds_up,
    within_max_tokens,
)
from opconform.conformance.verdicts import transport_failure

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


# ---------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    requirement: str
    description: str
    unit: str
    judge: Callable[[Exchange], str | bool | None]  # problem, None (holds) or False (n/a)
    owners: frozenset[str] = frozenset()
    # What this rule stands on beyond its requirement's needs (requirements.yaml).
    situation: tuple[str, ...] = ()
    # What a broken exchange's problem is really about, if another requirement's deviation
    # explains it (a stream cut for running past max_tokens: OP-CHAT-004's).
    implied: Callable[[Exchange], frozenset[str]] = lambda exchange: frozenset()
    # False for rules that judge the status line and headers only: those still hold evidence
    # when the body broke off in transport.
    reads_body: bool = True


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
        error_body,
    ),
    Rule("OP-RL-001", "every successful answer carries the rate-limit headers", "answers",
         headers("success"), reads_body=False),
    Rule("OP-RL-002", "every error answer to a keyed request carries the rate-limit headers",
         "error answers", headers("error"), reads_body=False),
    Rule("OP-RL-003", "every stream carries the rate-limit headers", "streams",
         headers("stream"), reads_body=False),
    Rule("OP-RL-014", "answers to unauthenticated requests carry the rate-limit headers",
         "401 answers", headers("anonymous"), reads_body=False),
    Rule("OP-MODELS-001", "every model list matches the schema", "model lists", model_list),
    Rule("OP-CHAT-001", "every completion matches the response schema", "completions",
         completion_schema, owners=_CLIENT_INPUT),
    Rule("OP-CHAT-003", "usage adds up in every completion", "completions", usage_adds_up,
         # Usage that is not three integers breaks the schema first: the check says so by a
         # Deviation of OP-CHAT-001, this rule by standing on it.
         owners=_CLIENT_INPUT, situation=("OP-CHAT-001",)),
    Rule("OP-CHAT-004", "completion_tokens never exceeds max_tokens", "answers with usage",
         within_max_tokens, owners=_CLIENT_INPUT),
    Rule("OP-RL-008", "every 429 carries Retry-After in whole seconds, 1..60", "429 answers",
         retry_after, reads_body=False),
    Rule("OP-STREAM-001", "every stream is served as text/event-stream", "streams",
         content_type, reads_body=False),
    Rule("OP-STREAM-002", "every stream event is one JSON object", "streams", json_events,
         owners=_STREAM_OWNERS),
    Rule("OP-STREAM-003", "every chunk matches the chunk schema", "streams",
         stream_rule(chunk_schema), owners=_STREAM_OWNERS),
    Rule("OP-STREAM-004", "one id, created and model per stream", "streams",
         stream_rule(one_identity), owners=_STREAM_OWNERS),
    Rule("OP-STREAM-005", "the first delta of every stream has role assistant", "streams",
         stream_rule(role_first), owners=_STREAM_OWNERS),
    Rule("OP-STREAM-006", "exactly one finish_reason per stream", "streams",
         stream_rule(one_finish), owners=_STREAM_OWNERS),
    Rule("OP-STREAM-007", "[DONE] once and last in every stream", "streams", done_last,
         owners=_STREAM_OWNERS, implied=past_max_tokens),
    Rule("OP-STREAM-008", "the server closes every stream after [DONE]", "streams", closes,
         owners=_STREAM_OWNERS),
    Rule("OP-VAL-008", "no request is answered with an unexpected 5xx", "answers", no_5xx,
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

    # A key whose limit is not its plan's (OP-RL-004) meets 429s "below the plan" as that
    # deviation's consequence.
    SITUATION = {"OP-RL-007": ("OP-RL-004",)}

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

    def needs_of(self, requirement: str) -> list[str]:
        """What a tally stands on: its requirement's needs, then its rule's own."""
        rule = next((r for r in RULES if r.requirement == requirement), None)
        situation = rule.situation if rule else PrematureLimits.SITUATION.get(requirement, ())
        return prerequisites([requirement], situation)
