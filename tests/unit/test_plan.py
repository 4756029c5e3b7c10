"""The request plan a run states before it sends (conformance/plan.py): the floor, the lines."""

from __future__ import annotations

from typing import Any

from opconform.conformance.plan import floor_seconds, plan_lines


def test_floor_is_whole_windows_beyond_the_first() -> None:
    assert floor_seconds(0, 60) == 0
    assert floor_seconds(60, 60) == 0  # one window holds them
    assert floor_seconds(61, 60) == 60
    assert floor_seconds(181, 60) == 180
    assert floor_seconds(61, 60, window=4) == 4
    assert floor_seconds(500, None) == 0  # no stated limit: nothing to wait for


def test_one_line_per_identity() -> None:
    row: dict[str, Any] = {"plan": "free", "requests_per_min": 60, "fresh_window": ["a"] * 3}
    plan = {
        "identities": {
            "main": {**row, "requests": 112, "floor_s": 60.0},
            "alt": {**row, "requests": 1, "floor_s": 0.0, "fresh_window": []},
            "anonymous": {"requests": 17},
        }
    }
    assert plan_lines(plan) == [
        "plan: main key (Free, 60 requests/min): ~112 requests, at least 1 min of pacing; "
        "3 checks need a fresh window",
        "plan: no key: ~17 requests (not limited)",
        "plan: alt key (Free, 60 requests/min): ~1 request, no pacing floor",
    ]
