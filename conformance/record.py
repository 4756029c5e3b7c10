"""What a finished run leaves: the results of its opt-in, unreachable and whole-run checks, the
verdict, results.json and the rendered reports, and the lines the console ends with."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opconform import __version__
from opconform.conformance.results import (
    Baseline,
    CheckResult,
    as_dicts,
    counts,
    level_of,
    roll_up,
    root_causes,
    verdict,
)
from opconform.conformance.selection import area_of, is_check, opt_in_of, requirement_ids
from opconform.conformance.verdicts import apply_prerequisites, resolve_roots
from opconform.outcome import BLOCKED, DISABLED, FAIL, PASS, WARN
from opconform.preflight import make_report_dir
from opconform.text import elide

if TYPE_CHECKING:
    import pytest

    from opconform.conformance.run import ConformanceRun
    from opconform.target import Target

INVARIANT_PREFIX = "invariant::"  # the id of a whole-run rule's result
SELECTION_PASSED = "selection passed"  # the verdict of a narrowed run without a failure


def _opt_in_results(run: ConformanceRun) -> list[CheckResult]:
    results = []
    for item in run.disabled_items:
        opt_in = opt_in_of(item)
        results.append(
            CheckResult(
                id=item.nodeid,
                name=item.name,
                area=area_of(item),
                requirements=requirement_ids(item),
                level="MUST",
                status=DISABLED,
                message=f"opt-in ({', '.join(opt_in)}): select it with -m {opt_in[0]}",
            )
        )
    return results


def _invariant_results(run: ConformanceRun) -> list[CheckResult]:
    """One result per whole-run rule that judged anything: PASS, or FAIL/WARN with the first
    examples, their replay lines and the rate."""
    from opconform.conformance.catalogue import requirements

    results = []
    catalogue = requirements()
    for tally in run.invariants.all_tallies():
        if not tally.seen:
            continue
        req = catalogue[tally.requirement]
        status = PASS
        message = ""
        if tally.broken:
            status = FAIL if req.level == "MUST" else WARN
            shown = "; ".join(
                f"{problem} ({exchange.method} {exchange.path}, in {check or 'a fixture'})"
                for problem, exchange, check in tally.examples
            )
            message = f"{tally.rule}: broken in {tally.rate}: {shown}"
        results.append(
            CheckResult(
                id=f"{INVARIANT_PREFIX}{tally.requirement}",
                name=f"invariant: {tally.rule}",
                area=req.area,
                requirements=[tally.requirement],
                level=req.level,
                status=status,
                message=run.redactor.text(message),
                needs=list(run.invariants.needs_of(tally.requirement)),
                implied=sorted(tally.implied or ()),
                samples=tally.rate,
                replay=[run.recorder.replay(e) for _, e, _ in tally.examples],
            )
        )
    return results


def _unreachable_results(run: ConformanceRun, items: list[pytest.Item]) -> list[CheckResult]:
    return [
        CheckResult(
            id=item.nodeid,
            name=item.name,
            area=area_of(item),
            requirements=requirement_ids(item),
            level=level_of(requirement_ids(item)),
            status=BLOCKED,
            message=f"not run: {run.unreachable}",
            blocked_by="run",
        )
        for item in items
        if is_check(item) and not any(r.id == item.nodeid for r in run.results)
    ]


def finish(run: ConformanceRun, items: list[pytest.Item]) -> None:
    """Judge the whole run (run.summary), and write results.json and the reports into the run
    folder, if it has one."""
    from opconform.schemas.loader import schema_hashes

    run.results.extend(_opt_in_results(run))
    if run.unreachable:
        run.results.extend(_unreachable_results(run, items))
    elif run.invariants is not None:
        # Invariants speak for the requirements this selection covers (-m, --area, -k ...).
        selected = {rid for item in items if is_check(item) for rid in requirement_ids(item)}
        # ... and for the deviations that blocked a selected check (a stream cut at its cap,
        # a key that stays refused): the root cause is reported whoever met it.
        blocking = {r.blocked_by for r in run.results if r.status == BLOCKED and r.blocked_by}
        for result in _invariant_results(run):
            broken = result.status in (FAIL, WARN) and blocking & set(result.requirements)
            if not (selected & set(result.requirements) or broken):
                continue
            matched = run.baseline.match(result.id, result.name, result.requirements)
            if matched and result.status == FAIL:
                result.baseline = "expected"
            run.results.append(result)
    apply_prerequisites(run.results)
    resolve_roots(run.results)
    partial = run.unreachable or (
        f"the run stopped sending: {run.stopped}" if run.stopped else None
    )
    summary, code = verdict(run.results, partial)
    if run.selection and summary == "conformant":
        summary = SELECTION_PASSED  # a narrowed run says nothing about the whole contract
    selection = f"partial: {run.selection}" if run.selection else None
    causes = root_causes(run.results)
    unused = sorted(set(run.baseline.entries) - run.baseline.used)
    run.summary = {
        "verdict": summary,
        "exit_code": code,
        "counts": counts(run.results),
        "root_causes": causes,
        "partial": partial,
        "selection": selection,
        "checks": len(run.results),
        "tests": sum(1 for r in run.results if not r.id.startswith(INVARIANT_PREFIX)),
        "requirements": len({rid for r in run.results for rid in r.requirements}),
    }
    if run.report_dir is None or run.target is None:
        return
    run.report_dir.mkdir(parents=True, exist_ok=True)
    client = run.client
    document = {
        "kind": "conformance",
        "suite": {"name": "opconform", "version": __version__},
        "target": {**run.target.describe(), "insecure": run.target.transport.insecure},
        "started_at": run.started,
        "finished_at": time.time(),
        "duration_s": round(time.time() - run.started, 3),
        "schema_hashes": schema_hashes(),
        "verdict": summary,
        "exit_code": code,
        "partial": partial,
        "selection": selection,
        "counts": counts(run.results),
        "root_causes": causes,
        "samples": run.target.samples,
        "plan": run.plan,
        "requests_sent": dict(client.sent) if client else {},
        "tokens_spent": client.budget.spent if client else 0,
        # Where the run waited for a key's window, and why (the plan's rate, or a 429).
        "pacing": {
            "waited_s": round(client.pacer.waited, 1) if client else 0,
            "waits": list(client.pacer.waits) if client else [],
        },
        "baseline": {
            "file": str(run.baseline.path) if run.baseline.path else None,
            "unused_entries": unused,
        },
        "checks": as_dicts(run.results),
        "requirements": roll_up(run.results),
    }
    text = run.redactor.text(json.dumps(document, indent=2))
    (run.report_dir / "results.json").write_text(text, encoding="utf-8")
    from opconform.reports.render import render_run

    render_run(run.report_dir)
    run.summary["report"] = str(run.report_dir / "report.html")


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The root causes first: "2 requirements broken; 19 checks blocked by them"."""
    causes = summary.get("root_causes") or []
    lines = []
    if summary.get("partial"):
        lines.append(f"PARTIAL RUN: {summary['partial']}")
    if summary.get("selection"):
        lines.append(f"{summary['selection']}: no verdict on the whole contract")
    if causes:
        blocked_total = sum(len(c["blocked"]) for c in causes)
        lines.append(
            f"{len(causes)} requirement(s) broken; {blocked_total} check(s) blocked by them"
        )
        for cause in causes:
            extra = f" (blocks {len(cause['blocked'])})" if cause["blocked"] else ""
            lines.append(
                f"  {cause['status']} {cause['requirement']}{extra}: {elide(cause['message'], 160)}"
            )
    return lines


def verdict_lines(summary: dict[str, Any]) -> tuple[str, str]:
    """The last lines of a run, after pytest's own counts: what opconform counted (which is
    not what pytest counted), then the verdict, its exit code and the report."""
    invariants, requirements = summary["checks"] - summary["tests"], summary["requirements"]
    counted = (
        f"opconform: {summary['checks']} checks = {summary['tests']} tests + {invariants} "
        f"whole-run invariants, over {requirements} requirement{'s' * (requirements != 1)} "
        "(pytest counts tests only: WARN as passed, BLOCKED and DISABLED as skipped or deselected)"
    )
    tally = ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n)
    report = f"; report: {summary['report']}" if summary.get("report") else ""
    return counted, (
        f"opconform: {summary['verdict'].upper()} ({tally}); exit {summary['exit_code']}{report}"
    )


def write_unreachable(report_dir: Path, target: Target, baseline: Baseline, why: str) -> None:
    """The one file an unreachable target leaves: results.json that says so, nothing judged."""
    from opconform.schemas.loader import schema_hashes

    summary, code = verdict([], why)
    now = time.time()
    document = {
        "kind": "conformance",
        "suite": {"name": "opconform", "version": __version__},
        "target": {**target.describe(), "insecure": target.transport.insecure},
        "started_at": now,
        "finished_at": now,
        "duration_s": 0.0,
        "verdict": summary,
        "exit_code": code,
        "partial": why,
        "selection": None,
        "counts": counts([]),
        "root_causes": [],
        "samples": target.samples,
        "requests_sent": {},
        "tokens_spent": 0,
        "baseline": {
            "file": str(baseline.path) if baseline.path else None,
            "unused_entries": [],
        },
        "schema_hashes": schema_hashes(),
        "checks": [],
        "requirements": [],
    }
    make_report_dir(report_dir)
    (report_dir / "results.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
