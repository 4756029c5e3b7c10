"""The cases of tests/integration/test_reports.py that start no process or server.

Reports rendered from real runs: readable HTML (checked in headless Chromium when it is
installed), Markdown for pull requests, diffs that find regressions, load plots, Allure."""

from __future__ import annotations

import json
from pathlib import Path

from opconform.reports.render import reproduction
from opconform.text import elide


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


def test_a_long_message_loses_its_middle_not_its_end() -> None:
    body = json.dumps({"error": {"message": "x" * 400, "type": "invalid_request_error"}})
    short = elide(f"bad body {body} [request: POST /chat/completions]", 200)
    assert len(short) <= 200 and "[...]" in short
    assert short.startswith("bad body {") and short.endswith("[request: POST /chat/completions]")
    assert elide("fits\n as is") == "fits as is"


def test_a_rate_limit_finding_says_what_it_takes_to_see_it() -> None:
    same = "curl -sS -i http://x/v1/models"
    checks = {
        "a": {"replay": [same, "curl -sS -i -X POST http://x/v1/chat/completions"]},
        "b": {"replay": [same]},
    }
    causes = [
        {"requirement": "OP-ERR-001", "checks": ["a"]},
        {"requirement": "OP-RL-007", "checks": ["b"]},
    ]
    steps = reproduction(causes, checks, {"requests_per_min": 60, "concurrent": 5})
    assert steps[0]["curl"] == checks["a"]["replay"] and steps[0]["before"] is None
    assert steps[1] == {
        "requirement": "OP-RL-007",
        "before": "after 60 requests within 60 s on this key",
        "curl": [],
        "same_as": ["OP-ERR-001"],
    }
    unknown = reproduction(causes[1:], checks, {"requests_per_min": None})
    assert unknown[0]["before"] is None  # an enterprise plan without a known limit
