"""Requests/min windows as the load tester cuts them from its samples (loadtests/windows.py)."""

from __future__ import annotations

from opconform.loadtests import windows
from opconform.metrics import Sample
from tests.support.samples import chat_sample

LIMIT = 60


def _answer(sent: float, status: int, remaining: int) -> Sample:
    return chat_sample("polite", sent, status, ratelimit_limit=LIMIT, ratelimit_remaining=remaining)


def test_a_window_with_one_late_request_is_not_merged_into_the_next() -> None:
    """A limiter whose windows follow the clock: the run's first request lands just before a
    window ends (Remaining 59), the next window's first also says 59. Counted as one window,
    61 accepted before the first 429 looked like a limit of 61 (a false FAIL of rpm-burst
    against a conformant server)."""
    late = [_answer(0.0, 200, LIMIT - 1)]
    full = [_answer(0.01 * (i + 1), 200, LIMIT - 1 - i) for i in range(LIMIT)]
    refused = [_answer(1.0, 429, 0), _answer(1.1, 429, 0)]
    rows = windows.rows(late + full + refused)
    assert [(row["accepted"], row["onset"]) for row in rows] == [(1, None), (LIMIT, LIMIT)]
    assert rows[1]["fresh"]


def test_remaining_going_up_still_opens_a_window() -> None:
    first = [_answer(0.01 * i, 200, LIMIT - 1 - i) for i in range(3)]
    second = [_answer(1.0 + 0.01 * i, 200, LIMIT - 1 - i) for i in range(2)]
    assert [len(part) for part in windows.split(first + second)] == [3, 2]
