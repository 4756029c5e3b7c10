"""Pure functions from what happened to what it means: a check's status, the baseline, and the
prerequisites that turn a consequence into "blocked by" its root cause.

The plugin only translates pytest's report into the inputs of these functions; everything that
decides a verdict lives here, so it can be tested without running pytest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conformance.results import (
    BLOCKED,
    DISABLED,
    ERROR,
    FAIL,
    INCONCLUSIVE,
    PASS,
    WARN,
    CheckResult,
)
from opconform.text import elide

if TYPE_CHECKING:
    from opconform.client import Exchange

# Prefixes of pytest.skip reasons that carry an opconform status (see conformance.plugin).
DISABLED_PREFIX = "[disabled] "
BLOCKED_PREFIX = "[blocked "  # "[blocked OP-RL-001] reason" or "[blocked run] reason"


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


def status_of(outcome: Outcome, level: str) -> tuple[str, str, str | None]:
    """(status, message, blocked_by) of one check. A failed assertion breaks the check's
    requirement (FAIL for a MUST, WARN for a SHOULD); any other exception means the harness
    could not judge (ERROR)."""
    if outcome.passed:
        return (WARN if outcome.warnings else PASS), "", None
    if outcome.skipped:
        reason = outcome.message
        if reason.startswith(DISABLED_PREFIX):
            return DISABLED, reason.removeprefix(DISABLED_PREFIX), None
        if reason.startswith(BLOCKED_PREFIX):
            cause, _, rest = reason.removeprefix(BLOCKED_PREFIX).partition("] ")
            return BLOCKED, rest, cause
        return INCONCLUSIVE, reason, None
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
