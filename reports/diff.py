"""`opconform report diff OLD NEW`: what regressed, what improved, what coverage was lost, what
is new."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opconform.outcome import (
    BLOCKED,
    ERROR,
    FAIL,
    JUDGED,
    LOAD_FAIL,
    NOT_JUDGED,
    PASS,
    WARN,
    load_status,
)
from opconform.reports.render import ReportError, kind_of, load_document

# Conformance statuses from good to bad, for "did it get worse".
# Skipped or disabled is a change of coverage, not a regression: a check that passed and is now
# not judged at all is listed as lost coverage, other moves as CHANGED.
_RANK = {
    **dict.fromkeys((PASS, *NOT_JUDGED), 0),
    BLOCKED: 1,
    WARN: 2,
    FAIL: 3,
    ERROR: 3,
}
# Load metrics compared, and which direction is worse.
LOWER_IS_BETTER = [
    ("ttft", "p50"),
    ("ttft", "p95"),
    ("ttft", "p99"),
    ("itl", "p50"),
    ("itl", "p95"),
    ("e2e", "p50"),
    ("e2e", "p95"),
    ("ttfb", "p95"),
]
HIGHER_IS_BETTER = ["achieved_rps", "output_tokens_per_s", "goodput_rps"]


def diff_runs(old_dir: Path, new_dir: Path, tolerance: float = 0.10) -> dict[str, Any]:
    old_kind, new_kind = kind_of(old_dir), kind_of(new_dir)
    if old_kind != new_kind:
        raise ReportError(f"cannot compare a {old_kind} run with a {new_kind} run")
    old, new = load_document(old_dir), load_document(new_dir)
    if old_kind == "conformance":
        return _conformance(old, new)
    return _load(old, new, tolerance)


def _conformance(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    before = {c["id"]: c for c in old["checks"]}
    after = {c["id"]: c for c in new["checks"]}
    regressed, improved, changed, lost = [], [], [], []
    for check_id in sorted(set(before) & set(after)):
        was, now = before[check_id]["status"], after[check_id]["status"]
        if was == now:
            continue
        row = {
            "id": check_id,
            "requirements": after[check_id]["requirements"],
            "old": was,
            "new": now,
            "message": after[check_id]["message"][:200],
        }
        if _RANK[now] > _RANK[was]:
            regressed.append(row)
        elif was in JUDGED and now in NOT_JUDGED:
            lost.append(row)
        elif _RANK[now] < _RANK[was]:
            improved.append(row)
        else:
            changed.append(row)
    lost += [
        {
            "id": c,
            "requirements": before[c]["requirements"],
            "old": before[c]["status"],
            "new": "REMOVED",
            "message": "",
        }
        for c in sorted(set(before) - set(after))
        if before[c]["status"] in JUDGED
    ]
    return {
        "kind": "conformance",
        "verdict": {"old": old["verdict"], "new": new["verdict"]},
        "regressed": regressed,
        "improved": improved,
        "lost_coverage": lost,
        "changed": changed,
        "new_checks": [
            {"id": c, "status": after[c]["status"]} for c in sorted(set(after) - set(before))
        ],
        "removed_checks": sorted(set(before) - set(after)),
    }


def _relative(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or old == 0:
        return None
    return (new - old) / old


def _load(old: dict[str, Any], new: dict[str, Any], tolerance: float) -> dict[str, Any]:
    metrics_old, metrics_new = old.get("metrics", {}), new.get("metrics", {})
    deltas, regressed, improved = [], [], []
    for metric, stat in LOWER_IS_BETTER:
        a = (metrics_old.get(metric) or {}).get(stat)
        b = (metrics_new.get(metric) or {}).get(stat)
        change = _relative(a, b)
        row = {"metric": f"{metric}_{stat}", "old": a, "new": b, "change": change}
        deltas.append(row)
        if change is not None and change > tolerance:
            regressed.append(row)
        elif change is not None and change < -tolerance:
            improved.append(row)
    for name in HIGHER_IS_BETTER:
        a, b = metrics_old.get(name), metrics_new.get(name)
        change = _relative(a, b)
        row = {"metric": name, "old": a, "new": b, "change": change}
        deltas.append(row)
        if change is not None and change < -tolerance:
            regressed.append(row)
        elif change is not None and change > tolerance:
            improved.append(row)
    a, b = metrics_old.get("error_rate"), metrics_new.get("error_rate")
    row = {
        "metric": "error_rate",
        "old": a,
        "new": b,
        "change": None if a is None or b is None else b - a,
    }
    deltas.append(row)
    if a is not None and b is not None and b > a + 0.001:
        regressed.append(row)
    # An expectation without its evidence is inconclusive, not failed: only a move into or out
    # of "fail" is a regression or a fix; pass <-> inconclusive is a change of evidence.
    was = {e["name"]: load_status(e) for e in old.get("expectations", [])}
    changed = []
    for expectation in new.get("expectations", []):
        name, now = expectation["name"], load_status(expectation)
        before = was.get(name)
        if before is None or before == now:
            continue
        row = {"metric": f"expectation: {name}", "old": before, "new": now, "change": None}
        if now == LOAD_FAIL:
            regressed.append(row)
        elif before == LOAD_FAIL:
            improved.append(row)
        else:
            changed.append(row)
    return {
        "kind": "load",
        "profile": new.get("profile"),
        "verdict": {"old": old.get("verdict"), "new": new.get("verdict")},
        "tolerance": tolerance,
        "deltas": deltas,
        "regressed": regressed,
        "improved": improved,
        "lost_coverage": [],
        "changed": changed,
    }


def format_diff(result: dict[str, Any]) -> str:
    lines = [
        f"{result['kind']} runs: verdict {result['verdict']['old']} -> {result['verdict']['new']}"
    ]
    if result["kind"] == "conformance":
        for title, rows in (
            ("REGRESSED", result["regressed"]),
            ("LOST", result["lost_coverage"]),
            ("IMPROVED", result["improved"]),
            ("CHANGED", result["changed"]),
        ):
            for row in rows:
                lines.append(
                    f"{title:<9} {row['id']} ({', '.join(row['requirements'])}): "
                    f"{row['old']} -> {row['new']}"
                )
        for row in result["new_checks"]:
            lines.append(f"{'NEW':<9} {row['id']}: {row['status']}")
        lost = {row["id"] for row in result["lost_coverage"]}
        for check_id in result["removed_checks"]:
            if check_id not in lost:
                lines.append(f"{'REMOVED':<9} {check_id}")
    else:
        for row in result["deltas"]:
            change = row["change"]
            shown = (
                "-"
                if change is None
                else (f"{change:+.4f}" if row["metric"] == "error_rate" else f"{change:+.1%}")
            )
            unit = _unit(row["metric"])
            lines.append(
                f"{row['metric']:<22} {_num(row['old'], unit):>12} -> "
                f"{_num(row['new'], unit):>12}  {shown}"
            )
        for title, rows in (
            ("REGRESSED", result["regressed"]),
            ("IMPROVED", result["improved"]),
            ("CHANGED", result["changed"]),
        ):
            for row in rows:
                moved = f": {row['old']} -> {row['new']}" if row["change"] is None else ""
                lines.append(f"{title:<9} {row['metric']}{moved}")
    lines.append(
        f"{len(result['regressed'])} regressed, {len(result['improved'])} improved, "
        f"{len(result['lost_coverage'])} lost coverage"
    )
    return "\n".join(lines)


_LATENCIES = {f"{metric}_{stat}" for metric, stat in LOWER_IS_BETTER}


def _unit(metric: str) -> str:
    """Latencies are recorded in seconds and read in milliseconds."""
    return "ms" if metric in _LATENCIES else ""


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.1f} ms"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
