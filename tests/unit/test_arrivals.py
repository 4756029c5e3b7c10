"""The users' arrival strategies (loadtests/arrivals.py): closed-loop pacing with a phase,
Poisson and constant schedules, and the open-loop process a client that honours Retry-After
pauses, without a burst when the pause ends."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from opconform.loadtests.arrivals import ClosedLoopPacing, open_arrivals, schedule


def test_closed_loop_users_start_at_their_phase_then_keep_the_interval() -> None:
    pacing = ClosedLoopPacing(phase=0.5)
    assert pacing.next(2.0, now=100.0) == 100.25  # half of a 0.5 s interval
    assert pacing.next(2.0, now=100.3) == 100.75  # on schedule, whenever the answer came
    assert pacing.next(2.0, now=100.4) == 101.25


def test_a_closed_loop_user_behind_its_schedule_restarts_from_now() -> None:
    pacing = ClosedLoopPacing()
    assert pacing.next(1.0, now=10.0) == 10.0
    # Its last answer took 3 s: the target's pace, not a backlog to catch up in a burst.
    assert pacing.next(1.0, now=13.0) == 13.0
    assert pacing.next(1.0, now=13.2) == 14.0


def test_after_a_retry_after_wait_the_next_send_is_at_once() -> None:
    pacing = ClosedLoopPacing(phase=0.9)
    pacing.next(1.0, now=0.0)
    pacing.restart()
    assert pacing.next(1.0, now=50.0) == pytest.approx(50.9)  # from its phase again


def test_the_rate_may_change_between_sends() -> None:
    pacing = ClosedLoopPacing()
    assert [pacing.next(4.0, now=0.0), pacing.next(1.0, now=0.0)] == [0.0, 0.25]
    assert pacing.next(1.0, now=0.0) == 1.25


def test_open_arrivals_pause_only_for_a_client_that_honours_retry_after() -> None:
    blocked = {"until": 0.45}
    ignoring = open_arrivals("constant", 10.0, 0.0, random.Random())
    honouring = open_arrivals("constant", 10.0, 0.0, random.Random(), 0.0, lambda: blocked["until"])
    assert [next(ignoring) for _ in range(2)] == [(0.0, 0.0), (0.1, 0.0)]
    first = next(honouring)
    assert first[0] == pytest.approx(0.45) and first[1] == pytest.approx(0.45)
    assert next(honouring)[0] == pytest.approx(0.55)  # the spacing kept after the pause


def test_poisson_arrivals_are_poisson() -> None:
    """Inter-arrival times of a Poisson process are exponential: coefficient of variation 1,
    and the count over a long run is the rate times the time."""
    times = list(itertools.islice(schedule("poisson", 40.0, 0.0, random.Random(7)), 20_000))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.03)
    assert len(times) / times[-1] == pytest.approx(40.0, rel=0.03)
    steady = list(itertools.islice(schedule("constant", 4.0, 10.0, random.Random(), 0.5), 3))
    assert steady == pytest.approx([10.125, 10.375, 10.625])  # phase spreads users apart


def test_open_loop_arrivals_pause_for_retry_after_without_a_burst() -> None:
    """Arrivals due while Retry-After holds wait, then the process resumes with its spacing:
    they do not all leave together when the wait ends."""
    from opconform.loadtests.arrivals import paused

    moments = schedule("constant", 10.0, 0.0, random.Random())  # 0.0, 0.1, 0.2 ...
    blocked = {"until": 0.0}

    def until() -> float:
        return blocked["until"]

    arrivals = paused(moments, until)
    first = [next(arrivals) for _ in range(3)]
    blocked["until"] = 1.0  # a 429 at 0.2 s said: come back at 1.0 s
    after = [next(arrivals) for _ in range(4)]
    assert [m for m, _ in first] == pytest.approx([0.0, 0.1, 0.2])
    assert [m for m, _ in after] == pytest.approx([1.0, 1.1, 1.2, 1.3])
    assert [w for _, w in after] == pytest.approx([0.7, 0.0, 0.0, 0.0])
