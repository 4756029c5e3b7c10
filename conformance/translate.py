"""One check's pytest report as data for the verdict functions (conformance/verdicts.py), and
their judgement back onto the report, so that console, JUnit and Allure say what results.json
says; its evidence written and attached, redacted."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from opconform.conformance.results import CheckResult, level_of
from opconform.conformance.selection import area_of, needs_of, requirement_ids
from opconform.conformance.skips import Skip
from opconform.conformance.verdicts import (
    Observed,
    Outcome,
    Raised,
    assertion_text,
    evidence_first,
    judge,
    only_assertions,
    transport_failure,
)

if TYPE_CHECKING:
    from opconform.conformance.run import ConformanceRun


def raised(exc: BaseException | None) -> Raised:
    """What the exception a check ended with says about the run (opconform.client's)."""
    from opconform.client import (
        LimitSpent,
        RunStopped,
        StreamsDoNotEnd,
        TargetUnreachable,
        UnexpectedRateLimit,
    )

    if exc is None:
        return Raised()
    exchange = getattr(exc, "exchange", None)
    if getattr(exchange, "window_not_reset", False):
        root = "OP-RL-009"
    elif getattr(exchange, "stated_below_plan", False):
        root = "OP-RL-004"
    else:
        root = "OP-RL-012" if getattr(exchange, "shared_limit", False) else "OP-RL-007"
    return Raised(
        text=str(exc),
        stopped=isinstance(exc, RunStopped | TargetUnreachable | LimitSpent),
        streams_do_not_end=isinstance(exc, StreamsDoNotEnd),
        # The SDK's own 429 (openai.RateLimitError) as much as the suite client's.
        rate_limited=isinstance(exc, UnexpectedRateLimit) or type(exc).__name__ == "RateLimitError",
        limit_root=root,
        prerequisites=tuple(getattr(exc, "prerequisites", ())),
    )


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _error_message(call: pytest.CallInfo[None]) -> str:
    if call.excinfo is None:
        return "error"
    exc = call.excinfo.value
    return f"{type(exc).__name__}: {exc}"


def judged(
    run: ConformanceRun,
    item: pytest.Item,
    call: pytest.CallInfo[None],
    report: pytest.TestReport,
    sent_before: dict[str, int] | None,
) -> CheckResult:
    """The check's result (opconform.conformance.verdicts decides), with pytest's report made to
    agree."""
    ids = requirement_ids(item)
    exc = call.excinfo.value if call.excinfo is not None else None
    failed_assertion = (
        exc is not None and report.when == "call" and report.failed and only_assertions(exc)
    )
    message = (
        _skip_reason(report)
        if report.skipped
        else (assertion_text(exc) if failed_assertion else _error_message(call))
        if report.failed
        else ""
    )
    warnings = tuple(run.warnings.get(item.nodeid, []))
    named = getattr(exc, "exchange", None)
    exchanges = evidence_first(list(run.recorder.current_exchanges), named, message)
    transport = transport_failure(exchanges[0]) if exchanges else None
    skip = exc.outcome if isinstance(exc, Skip) else None
    outcome = Outcome(
        report.passed, report.skipped, failed_assertion, message, warnings, transport, skip
    )
    seen = Observed(
        id=item.nodeid,
        name=item.name,
        area=area_of(item),
        requirements=ids,
        level=level_of(ids),
        needs=needs_of(item),
        outcome=outcome,
        raised=raised(exc),
        duration=call.duration,
        exchanges=exchanges,
        notes=list(run.notes.get(item.nodeid, [])),
        sent=_sent(run, item, sent_before),
    )
    result, shown = judge(seen, run.state())
    if shown.outcome is not None:
        report.outcome = shown.outcome  # type: ignore[assignment]
    if shown.wasxfail is not None:
        report.wasxfail = shown.wasxfail
    if shown.longrepr is not None:
        report.longrepr = shown.longrepr
    if shown.skipped_because is not None:
        location = (str(item.path), item.location[1] or 0, f"Skipped: {shown.skipped_because}")
        report.longrepr = location
    return result


def _sent(run: ConformanceRun, item: pytest.Item, before: dict[str, int] | None) -> dict[str, int]:
    """The requests the check sent: since its setup, with its jobs' sent ahead of it."""
    if before is None or run.client is None:
        return {}
    from opconform.conformance.prefetch import sent_by

    after = run.client.sent
    return sent_by(item, {label: n - before.get(label, 0) for label, n in after.items()})


def redact_report(run: ConformanceRun, report: pytest.TestReport) -> None:
    """Failure text and captured output go to the terminal, JUnit and Allure: redact them here,
    where pytest records them."""
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        clean = run.redactor.text(text)
        if clean != text:
            report.longrepr = clean
    report.sections = [(name, run.redactor.text(content)) for name, content in report.sections]


def write_evidence(run: ConformanceRun, item: pytest.Item, exchanges: list[Any]) -> None:
    result = next((r for r in reversed(run.results) if r.id == item.nodeid), None)
    if result is None:
        return
    if run.report_dir is not None and exchanges:
        from opconform.conformance.evidence import write_transcript

        result.evidence = write_transcript(
            run.report_dir / "transcripts", item.nodeid, exchanges, run.redactor
        )
    if exchanges:
        try:
            import allure

            allure.attach(
                run.redactor.text(json.dumps(exchanges, indent=2)),
                name="transcript",
                attachment_type=allure.attachment_type.JSON,
            )
        except Exception:  # allure inactive: nothing to attach to
            pass


def allure_labels(area: str, ids: list[str]) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover - allure-pytest is a dependency
        return
    from opconform.conformance.catalogue import requirements

    allure.dynamic.epic(area)
    for rid in ids:
        allure.dynamic.story(rid)
        req = requirements().get(rid)
        if req is not None:
            allure.dynamic.description(
                f"{rid} ({req.level}): {req.summary}\n\nReference: {req.source}"
            )
