"""Statuses, expected-failure baselines, the roll-up per requirement, and the gate verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opconform.conformance.catalogue import Requirement, requirements
from opconform.exitcodes import UsageError
from opconform.outcome import (
    BLOCKED,
    CONFORMANT,
    DISABLED,
    ERROR,
    FAIL,
    HARNESS,
    NOT_CONFORMANT,
    PASS,
    RETIRED,
    SEVERITY,
    STATUSES,
    UNTESTABLE,
    WARN,
)
from opconform.outcome import INCONCLUSIVE as INCONCLUSIVE  # re-exported with the others


@dataclass
class CheckResult:
    id: str  # pytest node id
    name: str
    area: str
    requirements: list[str]
    level: str  # MUST if any of its requirements is a MUST
    status: str
    message: str = ""
    duration: float = 0.0
    evidence: str | None = None  # path of the transcript, relative to the run folder
    warnings: list[str] = field(default_factory=list)
    baseline: str | None = None  # "expected" (known failure) or "stale" (known failure, passed)
    needs: list[str] = field(default_factory=list)  # requirement IDs this check stands on
    # Requirements its failure is really about (a Deviation's): blocked by one that turns out
    # broken, even when that is judged later in the run.
    implied: list[str] = field(default_factory=list)
    blocked_by: str | None = None  # the requirement (or run condition) that blocked it
    replay: list[str] = field(default_factory=list)  # curl commands of the failing exchanges
    samples: str | None = None  # "3 of 41 streams": how much evidence a judgement rests on
    notes: list[str] = field(default_factory=list)  # measurements, e.g. how long a slot took
    sent: dict[str, int] = field(default_factory=dict)  # requests sent by the check, per key

    @property
    def breaks_gate(self) -> bool:
        if self.baseline == "stale":
            return True
        return self.status == FAIL and self.baseline != "expected"


def level_of(requirement_ids: list[str]) -> str:
    catalogue = requirements()
    levels = {catalogue[r].level for r in requirement_ids if r in catalogue}
    return "MUST" if "MUST" in levels or not levels else "SHOULD"


class Baseline:
    """--expected-failures FILE: requirement IDs or check names/ids known to fail.

    The file is YAML: a list of entries, or {expected_failures: [...]}; an entry is an ID or
    {id: ..., reason: ...}.
    """

    def __init__(self, entries: dict[str, str], path: Path | None = None) -> None:
        self.entries = entries
        self.path = path
        self.used: set[str] = set()

    @classmethod
    def load(cls, path: str | None) -> Baseline:
        if not path:
            return cls({})
        file = Path(path)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--expected-failures: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"--expected-failures: {path} is not YAML: {exc}") from None
        if isinstance(data, dict):
            data = data.get("expected_failures", [])
        if not isinstance(data, list):
            raise UsageError(f"--expected-failures: {path} must hold a list of IDs")
        entries: dict[str, str] = {}
        for item in data:
            if isinstance(item, str):
                entries[item] = ""
            elif isinstance(item, dict) and isinstance(item.get("id"), str):
                entries[item["id"]] = str(item.get("reason", ""))
            else:
                raise UsageError(f"--expected-failures: bad entry {item!r} in {path}")
        return cls(entries, file)

    def match(self, nodeid: str, name: str, requirement_ids: list[str]) -> str | None:
        for candidate in (nodeid, name, *requirement_ids):
            if candidate in self.entries:
                self.used.add(candidate)
                return candidate
        return None


def roll_up(checks: list[CheckResult]) -> list[dict[str, Any]]:
    """One row per catalogue requirement: its worst check status, or why it has none."""
    rows = []
    for req in requirements().values():
        mine = [c for c in checks if req.id in c.requirements]
        rows.append(_row(req, mine))
    return rows


def _row(req: Requirement, mine: list[CheckResult]) -> dict[str, Any]:
    if req.retired:
        status = RETIRED
    elif not req.testable:
        status = UNTESTABLE
    elif not mine:
        status = DISABLED
    else:
        worst = max(mine, key=lambda c: SEVERITY[c.status])
        status = worst.status
        if status == FAIL and req.level == "SHOULD":
            status = WARN
    blocked_by = sorted({c.blocked_by for c in mine if c.status == BLOCKED and c.blocked_by})
    expected = [c.id for c in mine if c.baseline == "expected"]
    stale = [c.id for c in mine if c.baseline == "stale"]
    return {
        "id": req.id,
        "area": req.area,
        "level": req.level or "-",
        "status": status,
        "summary": req.summary,
        "source": req.source,
        "basis": req.basis,
        "untestable": req.untestable,
        "retired": req.retired,
        "checks": [c.id for c in mine],
        "blocked_by": blocked_by,
        "expected_failures": expected,
        "stale_baseline": stale,
    }


def verdict(checks: list[CheckResult], partial: str | None = None) -> tuple[str, int]:
    """("conformant" | "not conformant" | "could not judge", exit code).

    A broken MUST decides the gate whatever else happened. Without one, a run that could not
    judge everything it set out to (harness errors, checks blocked by the run's own limits, a
    partial run) is not a green gate: exit 3, never 1."""
    if any(c.breaks_gate for c in checks):
        return "not conformant", NOT_CONFORMANT
    if partial or any(c.status in (ERROR, BLOCKED) for c in checks):
        return "could not judge", HARNESS
    ran = [c for c in checks if c.status in (PASS, WARN, FAIL)]
    if not ran:
        return "could not judge", HARNESS  # nothing was checked: not a green gate
    return "conformant", CONFORMANT


def root_causes(checks: list[CheckResult]) -> list[dict[str, Any]]:
    """The broken requirements that are not themselves blocked, each with the checks that
    failed on it and the checks it blocked: "4 requirements broken; 19 checks blocked"."""
    catalogue = requirements()
    failing: dict[str, list[CheckResult]] = {}
    for check in checks:
        if check.status in (FAIL, WARN) and check.baseline != "expected":
            for rid in check.requirements:
                failing.setdefault(rid, []).append(check)
    causes = []
    for rid, mine in sorted(failing.items()):
        blocked = [c.id for c in checks if c.status == BLOCKED and c.blocked_by == rid]
        req = catalogue.get(rid)
        causes.append(
            {
                "requirement": rid,
                "level": req.level if req else "",
                "summary": req.summary if req else "",
                "status": FAIL if any(c.status == FAIL for c in mine) else WARN,
                "checks": [c.id for c in mine],
                "message": mine[0].message,
                "blocked": blocked,
            }
        )
    causes.sort(key=lambda c: (c["status"] != FAIL, -len(c["blocked"]), c["requirement"]))
    return causes


def counts(checks: list[CheckResult]) -> dict[str, int]:
    tally = {status: 0 for status in STATUSES}
    for check in checks:
        tally[check.status] += 1
    return tally


def as_dicts(checks: list[CheckResult]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
