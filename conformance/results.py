"""Statuses, expected-failure baselines, the roll-up per requirement, and the gate verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.catalogue import Requirement, requirements
from opconform.exitcodes import CONFORMANT, HARNESS, NOT_CONFORMANT, UsageError

PASS, FAIL, WARN, SKIP, DISABLED, ERROR = "PASS", "FAIL", "WARN", "SKIP", "DISABLED", "ERROR"
STATUSES = (PASS, FAIL, WARN, SKIP, DISABLED, ERROR)
# Which status a requirement shows when its checks disagree: the most serious one wins, and a
# requirement whose checks were all skipped never reads as passed.
_SEVERITY = {ERROR: 5, FAIL: 4, WARN: 3, PASS: 2, SKIP: 1, DISABLED: 0}
UNTESTABLE = "UNTESTABLE"


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
    if not req.testable:
        status = UNTESTABLE
    elif not mine:
        status = DISABLED
    else:
        worst = max(mine, key=lambda c: _SEVERITY[c.status])
        status = worst.status
        if status == FAIL and req.level == "SHOULD":
            status = WARN
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
        "checks": [c.id for c in mine],
        "expected_failures": expected,
        "stale_baseline": stale,
    }


def verdict(checks: list[CheckResult]) -> tuple[str, int]:
    """("conformant" | "not conformant" | "error", exit code)."""
    if any(c.breaks_gate for c in checks):
        return "not conformant", NOT_CONFORMANT
    if any(c.status == ERROR for c in checks):
        return "error", HARNESS
    ran = [c for c in checks if c.status in (PASS, WARN, FAIL)]
    if not ran:
        return "error", HARNESS  # nothing was checked: not a green gate
    return "conformant", CONFORMANT


def counts(checks: list[CheckResult]) -> dict[str, int]:
    tally = {status: 0 for status in STATUSES}
    for check in checks:
        tally[check.status] += 1
    return tally


def as_dicts(checks: list[CheckResult]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
