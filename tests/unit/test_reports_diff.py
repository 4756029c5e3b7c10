"""`opconform report diff` on load runs (reports/diff.py): what changed, in the units a reader
uses, and a failure told from missing evidence."""

from __future__ import annotations

import json
from pathlib import Path


def test_load_diff_shows_latencies_in_ms(tmp_path: Path) -> None:
    from opconform.reports.diff import diff_runs, format_diff

    for name, ttft in (("old", 0.8), ("new", 0.4)):
        (tmp_path / name).mkdir()
        document = {"kind": "load", "verdict": "pass", "metrics": {"ttft": {"p95": ttft}}}
        (tmp_path / name / "load.json").write_text(json.dumps(document))
    text = format_diff(diff_runs(tmp_path / "old", tmp_path / "new"))
    assert "800.0 ms ->     400.0 ms" in text
    assert "IMPROVED  ttft_p95" in text


def test_load_diff_tells_a_failure_from_missing_evidence(tmp_path: Path) -> None:
    """pass -> fail is a regression and fail -> pass a fix; pass -> inconclusive is neither
    (the run lacked the evidence, the target did not get worse)."""
    from opconform.reports.diff import diff_runs, format_diff

    def run(name: str, statuses: dict[str, str]) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        document = {
            "kind": "load",
            "verdict": "pass",
            "metrics": {},
            "expectations": [{"name": n, "status": s} for n, s in statuses.items()],
        }
        (folder / "load.json").write_text(json.dumps(document))
        return folder

    old = run("old", {"cap": "pass", "limit": "pass", "headers": "fail"})
    new = run("new", {"cap": "inconclusive", "limit": "fail", "headers": "pass"})
    result = diff_runs(old, new)
    assert [r["metric"] for r in result["regressed"]] == ["expectation: limit"]
    assert [r["metric"] for r in result["improved"]] == ["expectation: headers"]
    assert [r["metric"] for r in result["changed"]] == ["expectation: cap"]
    assert "CHANGED   expectation: cap: pass -> inconclusive" in format_diff(result)
