"""Pure functions from what happened to what it means: a check's status, the baseline, and the
prerequisites that turn a consequence into "blocked by" its root cause.

The plugin only translates pytest's report into the inputs of these functions (`Observed`, and
the run so far as `RunState`); everything that decides a verdict lives here, so it can be tested
without running pytest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opconform.conformance.results import Baseline, CheckResult
from opconform.outcome import BLOCKED, DISABLED, ERROR, FAIL, INCONCLUSIVE, PASS, WARN
from opconform.text import elide

if TYPE_CHECKING:
    from opconform.client import Exchange


@dataclass(frozen=True)
class Disabled:
    """The run's configuration turned a check off (not the target's doing)."""

    reason: str

    def __str__(self) -> str:  # the skip reason pytest shows (console, JUnit)
        return f"[disabled] {self.reason}"


@dataclass(frozen=True)
class Blocked:
    """Something a check stands on is broken: a requirement (by ID), or the run itself ("run":
    deadline, target-level breaker, unreachable target)."""

    cause: str
    reason: str

    def __str__(self) -> str:
        return f"[blocked {self.cause}] {self.reason}"


@dataclass(frozen=True)
class Outcome:
    """What pytest saw, reduced to what a status depends on."""

    passed: bool
    skipped: bool
    failed_assertion: bool  # an AssertionError or pytest.fail (the check's own judgement)
    message: str
    warnings: tuple[str, ...] = ()
    # The exchange the judgement rests on broke in transport (reset, timeout, cut body): what
    # arrived is not the server's answer, so it is no evidence about status codes or bodies.
    transport: str | None = None
    skip: Disabled | Blocked | None = None  # a skip that carries an opconform status


def status_of(outcome: Outcome, level: str) -> tuple[str, str, str | None]:
    """(status, message, blocked_by) of one check. A failed assertion breaks the check's
    requirement (FAIL for a MUST, WARN for a SHOULD); any other exception means the harness
    could not judge (ERROR)."""
    if outcome.passed:
        return (WARN if outcome.warnings else PASS), "", None
    if outcome.skipped:
        if isinstance(outcome.skip, Disabled):
            return DISABLED, outcome.skip.reason, None
        if isinstance(outcome.skip, Blocked):
            return BLOCKED, outcome.skip.reason, outcome.skip.cause
        return INCONCLUSIVE, outcome.message, None
    if outcome.failed_assertion and outcome.transport:
        return ERROR, f"{outcome.transport}: no evidence either way ({outcome.message})", None
    if outcome.failed_assertion:
        return (FAIL if level == "MUST" else WARN), outcome.message, None
    return ERROR, outcome.message, None


# Exchange.error_kind values that say the transfer broke, not that the answer broke a bound
# of the contract ("stream-cap", "body-cap" are the target's doing and stay evidence).
TRANSPORT_FAILURES = ("transport", "timeout", "deadline")


def transport_failure(exchange: Exchange) -> str | None:
    """Why an exchange is no evidence about its answer, or None."""
    if exchange.aborted or exchange.error_kind not in TRANSPORT_FAILURES:
        return None  # aborted: a check disconnected on purpose and judges what came before
    return f"{exchange.method} {exchange.path}: {exchange.error}"


def only_assertions(exc: BaseException) -> bool:
    """An assertion, or a group of them (a property run that found several counter-examples):
    the check's own judgement, never a harness error."""
    if isinstance(exc, BaseExceptionGroup):
        return all(only_assertions(inner) for inner in exc.exceptions)
    return isinstance(exc, AssertionError) or type(exc).__name__ == "Failed"


def resolve_roots(results: list[CheckResult]) -> None:
    """A check blocked by a requirement whose own checks all ended up blocked is blocked by
    that requirement's root: the reader is sent to the deviation itself."""
    by_requirement: dict[str, list[CheckResult]] = {}
    for result in results:
        for rid in result.requirements:
            by_requirement.setdefault(rid, []).append(result)
    for result in results:
        seen: set[str] = set()
        while result.status == BLOCKED and result.blocked_by not in (None, "run", *seen):
            cause = result.blocked_by
            assert cause is not None
            seen.add(cause)
            mine = by_requirement.get(cause, [])
            if not mine or any(r.status in (FAIL, WARN) for r in mine):
                break
            roots = {r.blocked_by for r in mine if r.status == BLOCKED and r.blocked_by}
            if len(roots) != 1:
                break
            result.blocked_by = roots.pop()


def apply_prerequisites(results: list[CheckResult]) -> None:
    """A check that could not pass because something it stands on is broken is blocked by that
    requirement, not counted as a failure (or error) of its own: one deviation, one failing
    requirement. Checks are resolved in the order of their prerequisite depth, so a blocked
    check never blocks another."""
    by_requirement: dict[str, list[CheckResult]] = {}
    for result in results:
        for rid in result.requirements:
            by_requirement.setdefault(rid, []).append(result)

    def depth(result: CheckResult, seen: frozenset[str] = frozenset()) -> int:
        deeper = [
            depth(other, seen | {rid})
            for rid in (*result.needs, *result.implied)
            if rid not in seen
            for other in by_requirement.get(rid, [])
            if other is not result
        ]
        return 1 + max(deeper, default=0) if result.needs or result.implied else 0

    for result in sorted(results, key=depth):
        if not (result.needs or result.implied) or result.status not in (
            FAIL,
            WARN,
            ERROR,
            INCONCLUSIVE,
        ):
            continue
        for rid in (*result.needs, *result.implied):
            if rid in result.requirements:
                continue
            culprits = [
                other
                for other in by_requirement.get(rid, [])
                if other is not result
                and other.status in (FAIL, WARN)
                and other.baseline != "expected"
            ]
            if culprits:
                result.message = f"blocked by {rid} ({elide(culprits[0].message, 160)}); here: " + (
                    result.message or result.status.lower()
                )
                result.status, result.blocked_by = BLOCKED, rid
                break


# ---------------------------------------------------------------------------- one check
@dataclass(frozen=True)
class Raised:
    """What the exception a check ended with says about the run, read off it by the plugin."""

    text: str = ""  # str(exception)
    stopped: bool = False  # the run sends nothing more: deadline, breaker, unreachable, budget
    streams_do_not_end: bool = False  # judged once, by the stream that ran past its cap
    rate_limited: bool = False  # a 429 this check did not provoke
    limit_root: str = "OP-RL-007"  # the whole-run requirement such a 429 stands on
    prerequisites: tuple[str, ...] = ()  # what a Deviation says the failure is really about


@dataclass(frozen=True)
class Observed:
    """One check as pytest ran it and the run recorded it."""

    id: str
    name: str
    area: str
    requirements: list[str]
    level: str
    needs: list[str]
    outcome: Outcome
    raised: Raised = Raised()
    duration: float = 0.0
    exchanges: list[Exchange] = field(default_factory=list)  # the one judged first
    notes: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)


@dataclass
class RunState:
    """The run so far, as far as a judgement depends on it."""

    results: list[CheckResult]
    baseline: Baseline  # its record of used entries is the one thing judging changes
    broken_invariants: Mapping[str, str] = field(default_factory=dict)  # rid -> first example
    replay: Callable[[Exchange], str] = str  # an exchange as a (redacted) curl command


@dataclass(frozen=True)
class Shown:
    """What pytest's own report (console, JUnit, Allure) must say so that it agrees."""

    outcome: str | None = None  # "passed", "skipped", "failed"; None: as pytest decided
    wasxfail: str | None = None
    longrepr: str | None = None
    skipped_because: str | None = None  # a failure turned BLOCKED: pytest shows a skip


def broken(rid: str, state: RunState) -> tuple[str, str] | None:
    """(root requirement, why) when `rid` is broken so far in this run: a check failed on it,
    an invariant did, or its own checks were blocked by a root cause (which then blocks this
    one too); else None."""
    for result in state.results:
        failed = rid in result.requirements and result.status in (FAIL, WARN)
        if failed and result.baseline != "expected":
            return rid, f"blocked by {rid}: {elide(result.message, 200)}"
    known = state.baseline.match(f"invariant::{rid}", f"invariant: {rid}", [rid])
    if rid in state.broken_invariants and not known:
        return rid, f"blocked by {rid}: {state.broken_invariants[rid]}"
    for result in state.results:
        root = result.blocked_by
        if rid in result.requirements and result.status == BLOCKED and root and root != "run":
            return root, result.message.split("; here:")[0]
    return None


def broken_prerequisite(
    own: list[str], needs: list[str], state: RunState
) -> tuple[str, str] | None:
    """The first prerequisite already shown broken (by a check, or by an invariant so far)."""
    for rid in needs:
        cause = None if rid in own else broken(rid, state)
        if cause is not None and cause[0] not in own:  # a check is not blocked by itself
            return cause
    return None


def judge(seen: Observed, state: RunState) -> tuple[CheckResult, Shown]:
    """An opconform result for one check, and what pytest's report must say to agree."""
    ids, raised = seen.requirements, seen.raised
    status, message, blocked_by = status_of(seen.outcome, seen.level)
    if raised.stopped:
        status, blocked_by = BLOCKED, "run"
        message = f"not sent: {raised.text}"
    elif raised.streams_do_not_end:
        # Judged once, by the stream that ran past its cap (OP-STREAM-007's invariant).
        status, blocked_by = BLOCKED, "OP-STREAM-007"
        message = f"blocked by OP-STREAM-007: {raised.text}"
    elif raised.rate_limited and raised.limit_root in state.broken_invariants:
        # A 429 this check did not provoke: a limit below the plan's (OP-RL-007), or one counted
        # across keys (OP-RL-012), judged over the whole run, blocks it; otherwise the
        # harness's pacing failed, and ERROR says so.
        status, blocked_by = BLOCKED, raised.limit_root
        message = f"blocked by {blocked_by}: {raised.text}"
    for implied in raised.prerequisites:
        why = None if implied in ids or status not in (FAIL, WARN) else broken(implied, state)
        if why is not None:
            status, blocked_by = BLOCKED, why[0]
            message = f"{why[1]}; here: {message}"
            break
    stuck = any(e.window_not_reset for e in seen.exchanges)
    if stuck and status in (FAIL, WARN, ERROR, INCONCLUSIVE) and "OP-RL-009" not in ids:
        # A key still refused after the reset it named (OP-RL-009's invariant) spoils whatever
        # this check wanted from it.
        why = broken("OP-RL-009", state)
        if why is not None:
            status, blocked_by = BLOCKED, why[0]
            message = f"{why[1]}; here: {message}"
    if status in (FAIL, WARN, ERROR, INCONCLUSIVE):
        cause = broken_prerequisite(ids, seen.needs, state)
        if cause is not None:
            status, blocked_by = BLOCKED, cause[0]
            message = f"{cause[1]}; here: {message}"
    warnings = seen.outcome.warnings
    if status in (FAIL, WARN) and not seen.outcome.failed_assertion and warnings:
        message = "; ".join(warnings)
    if status in (FAIL, WARN) and seen.exchanges and not seen.outcome.passed:
        message = name_request(message, seen.exchanges[0])
    failing = status in (FAIL, WARN)
    result = CheckResult(
        id=seen.id,
        name=seen.name,
        area=seen.area,
        requirements=ids,
        level=seen.level,
        status=status,
        message=message,
        duration=round(seen.duration, 4),
        warnings=list(warnings),
        needs=seen.needs,
        implied=[r for r in raised.prerequisites if r and r not in ids] if failing else [],
        blocked_by=blocked_by,
        replay=[state.replay(e) for e in seen.exchanges[:3]] if failing else [],
        notes=list(seen.notes),
        sent=seen.sent,
    )
    failed = not seen.outcome.passed and not seen.outcome.skipped
    matched = state.baseline.match(seen.id, seen.name, ids)
    if matched and status == FAIL:
        result.baseline = "expected"
        return result, Shown("skipped", wasxfail=f"expected failure ({matched} in the baseline)")
    if matched and status == PASS:
        result.baseline = "stale"
        return result, Shown(
            "failed",
            longrepr=f"stale baseline: {matched} is listed in {state.baseline.path} but now "
            "passes; remove it",
        )
    if status == WARN and failed:
        # A SHOULD broken: a warning, not a failed gate, in plain pytest too.
        result.warnings.append(message)
        return result, Shown("passed")
    if status == BLOCKED and failed:
        return result, Shown("skipped", skipped_because=message)
    return result, Shown()


REQUEST_NAMED = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) (/[^\s:?\]]*)")


def evidence_first(
    exchanges: list[Exchange], named: Exchange | None, message: str
) -> list[Exchange]:
    """The check's exchanges, the one that showed the deviation first: the one the failure
    carries (`named`: expect attaches it), else the last whose request the message names ("GET
    /models -> 401: ..."), else the last the check did not abandon itself (streams a check
    held and closed after its request are context, not the answer it judged); the rest follow,
    newest first."""
    request = REQUEST_NAMED.search(message)
    if named is None and request is not None:
        method, path = request.groups()
        named = next(
            (e for e in reversed(exchanges) if e.method == method and e.path == path), None
        )
    candidates = [e for e in exchanges if not e.aborted] or exchanges
    focus = named if named is not None else (candidates[-1] if candidates else None)
    rest = [e for e in reversed(exchanges) if e is not focus]
    return [focus, *rest] if focus is not None else rest


def assertion_text(exc: BaseException | None) -> str:
    """The check's own words, without pytest's rewritten-assertion explanation."""
    text = str(exc).strip()
    return text.split("\nassert ")[0].strip() if text.count("\n") else text


def name_request(message: str, exchange: Exchange) -> str:
    """Every failure names the request that caused it."""
    named = f"{exchange.method} {exchange.path}"
    if any(f"{method} /" in message for method in ("GET", "POST", "PUT", "DELETE", "PATCH")):
        return message
    body = elide(exchange.request_body[:2000].decode("utf-8", errors="replace"), 160)
    return f"{message} [request: {named}{' ' + body if body else ''}]"
