"""What the report says it takes to see a finding again (reports/render.py)."""

from __future__ import annotations

from opconform.reports.render import reproduction


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
