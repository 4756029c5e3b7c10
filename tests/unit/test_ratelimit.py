"""The pacer (opconform/ratelimit.py): each identity paced at its plan's documented rate, headers
only ever slowing it, and which 429s the plan explains."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from opconform.ratelimit import Pacer, PacingStopped
from tests.support.fakes import FakeClock


def _pacer(clock: FakeClock, limit: int = 3, **extra: Any) -> Pacer:
    return Pacer({"main": ("free", limit)}, window=60, clock=clock, sleep=clock.sleep, **extra)


# ---------------------------------------------------------------------------- the pacer
def test_pacer_keeps_the_plan_in_any_trailing_window() -> None:
    clock = FakeClock()
    pacer = _pacer(clock)
    for _ in range(3):
        pacer.before("main")
        pacer.sent("main")
        clock.now += 1
    assert clock.slept == []
    pacer.before("main")  # the fourth waits until the first leaves the window
    assert clock.slept == [pytest.approx(57.0)]
    assert "waiting 57s for the main key (Free: 3 requests/min)" in pacer.waits[0]


def test_pacer_goes_slower_on_headers_never_faster() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=100)
    pacer.sent("main")
    pacer.observe("main", 200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "10"})
    pacer.before("main")
    assert clock.slept == [pytest.approx(10.25)]
    # A Remaining above what the plan allows does not let it send more than the plan.
    pacer.observe("main", 200, {"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "999"})
    assert pacer.recent("main") == 1


def test_only_the_contracts_limit_lets_a_key_go_faster_than_its_plan() -> None:
    """A gateway may pass an upstream's OpenAI-named headers through (LiteLLM: llmock's 100000
    on a 60/min key): the key is still paced at its plan, not at the upstream's figure."""
    clock = FakeClock()
    pacer = _pacer(clock, limit=3)
    pacer.observe("main", 200, {"x-ratelimit-limit-requests": "100000"})
    pacer.sent("main", 3)
    pacer.before("main")
    assert clock.slept == [pytest.approx(60.0)]
    pro_as_free = _pacer(FakeClock(), limit=3)  # the contract's own statement: another plan
    pro_as_free.observe("main", 200, {"x-ratelimit-limit": "600", "x-ratelimit-remaining": "5"})
    pro_as_free.sent("main", 3)
    pro_as_free.before("main")
    assert pro_as_free.waits == []


def test_pacer_never_waits_past_the_deadline() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60, time_left=lambda: 5.0)
    pacer.sent("main", 60)
    with pytest.raises(PacingStopped, match="deadline"):
        pacer.before("main")


class _TogetherClock:
    """A clock whose sleepers sleep at the same time: each sleep waits until `sleepers` threads
    sleep, and then time moves on to the latest of their wake-up times."""

    def __init__(self, sleepers: int) -> None:
        self.now = 1000.0
        self._barrier = threading.Barrier(sleepers, timeout=10)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        wake = self.now + seconds
        self._barrier.wait()
        with self._lock:
            self.now = max(self.now, wake)


def test_waits_taken_together_are_counted_once() -> None:
    """results.json's pacing.waited is the run's time spent held back, not a sum over threads
    (it showed 233 s for a 124 s run)."""
    clock = _TogetherClock(sleepers=3)
    pacer = Pacer({"main": ("free", 3)}, window=60, clock=clock, sleep=clock.sleep)
    pacer.sent("main", 3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(pacer.before, "main") for _ in range(3)]:
            future.result()
    assert pacer.waited == 60.0


def test_threads_taking_room_never_overfill_the_window() -> None:
    """Requests sent at once from several threads (ApiClient.gather) each take their place in
    the window as they are admitted."""
    clock = FakeClock()
    pacer = _pacer(clock, limit=10)
    pacer.sent("main", 8)
    admitted = [clock.now] * 8
    lock = threading.Lock()

    def admit() -> None:
        with lock:  # one sleeper at a time: the fake clock is shared
            pacer.before("main", take=True)
            admitted.append(clock.now)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(admit) for _ in range(4)]:
            future.result()
    # Two fit at once; the other two waited until the first eight left the window.
    assert sorted(admitted)[-2:] == [1060.0, 1060.0]
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + 60) <= 10


def test_a_429_is_explained_until_the_run_has_seen_a_whole_window() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.sent("main")
    # In the run's first minute, another client (or an earlier run) may have spent the window.
    assert "earlier run" in (pacer.explains_429("main") or "")
    clock.now += 61
    pacer.sent("main", 3)
    assert pacer.explains_429("main") is None  # 3 of 60 in a window the run saw: below plan
    pacer.sent("main", 57)
    assert "the run sent 60" in (pacer.explains_429("main") or "")


def test_a_429_only_the_other_keys_explain_is_a_shared_limit() -> None:
    clock = FakeClock()
    pacer = Pacer(
        {"main": ("free", 60), "pro": ("pro", 600)}, window=60, clock=clock, sleep=clock.sleep
    )
    clock.now += 61
    pacer.sent("main", 5)
    assert pacer.shared_window("main") is None  # 5 in all: below the plan, not shared
    pacer.sent("pro", 55)
    shared = pacer.shared_window("main")
    assert shared is not None and "together had sent 60" in shared
    assert pacer.shared_window("pro") is None  # 60 of Pro's 600


def test_waiting_out_a_429_makes_the_next_window_observed() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.sent("main")
    pacer.wait_out_429("main", {"retry-after": "20"})
    assert clock.slept and clock.slept[0] == pytest.approx(20.25)
    assert pacer.explains_429("main") is None  # a second 429 now is evidence


def _refusal(pacer: Pacer, clock: FakeClock, headers: dict[str, str]) -> str | None:
    """A requests/min 429 on the main key, sent just now (the run counts it as sent)."""
    pacer.sent("main")
    clock.now += 0.01
    return pacer.not_reset("main", headers, sent_ago=0.005)


def test_a_429_after_the_named_reset_shows_the_window_did_not_reset() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None  # the first: wait it out
    clock.now += 2
    assert _refusal(pacer, clock, {"retry-after": "3"}) is None  # early: the reset is ahead
    clock.now += 5
    note = _refusal(pacer, clock, {"retry-after": "5"})
    assert note is not None and "its window did not reset" in note


def test_an_answer_sent_after_the_refusals_ends_them() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None
    pacer.observe("main", 200, {}, sent_ago=30)  # a stream opened before them: no news
    clock.now += 6
    pacer.observe("main", 200, {}, sent_ago=0.01)  # served after the reset: the window reset
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None


def test_an_epoch_reset_counts_by_the_targets_clock_not_ours() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"x-ratelimit-reset": "1700000010"}) is None
    clock.now += 30
    # Long after by our clock, but the same Reset: the target's window is the same one (its
    # clock may be behind ours), so this refusal is no evidence.
    assert _refusal(pacer, clock, {"x-ratelimit-reset": "1700000010"}) is None
    note = _refusal(pacer, clock, {"x-ratelimit-reset": "1700000013"})
    assert note is not None  # a later window by the target's own clock, and still refused


def test_nothing_named_needs_a_whole_quiet_window() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {}) is None
    clock.now += 30
    pacer.sent("main")  # the run sent on the key within the window: a limiter may count it
    clock.now += 31
    assert _refusal(pacer, clock, {}) is None
    clock.now += 61
    assert _refusal(pacer, clock, {}) is not None


def test_a_window_the_run_refilled_or_another_limit_is_no_evidence() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None
    clock.now += 6
    pacer.sent("main", 60)  # the run filled the new window itself
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None
    other = _pacer(FakeClock(), limit=60)
    assert other.not_reset("main", {"retry-after": "3600"}, sent_ago=0) is None  # tokens/day
    assert other.not_reset("main", {"retry-after": "3600"}, sent_ago=0) is None


def test_errors_in_the_window_trouble_the_key_until_it_leaves() -> None:
    """What the concurrency check asks before it trusts a served extra request."""
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.sent("main")
    pacer.observe("main", 200, {})
    assert pacer.troubled("main") is None
    clock.now += 5
    pacer.observe("main", 500, {})
    clock.now += 10
    pacer.observe("main", None, {})  # no answer at all
    assert pacer.troubled("main") == (
        "2 answer(s) on the main key in the last 60s were errors, the last 0s ago"
    )
    clock.now += 56  # the 500 left the window, the failed exchange not yet
    left = pacer.troubled("main")
    assert left is not None and left.startswith("1 answer(s)")
    clock.now += 5
    assert pacer.troubled("main") is None


def test_a_quiet_window_counts_from_the_last_send_or_answer() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.wait_quiet("main", "nothing sent yet")
    assert clock.slept == []
    pacer.sent("main")
    clock.now += 10
    pacer.observe("main", 200, {})  # a stream that ended 10 s after it was sent
    clock.now += 20
    pacer.wait_quiet("main", "measure again", settle=3)
    assert clock.slept == [pytest.approx(43.0)]
    assert "measure again" in pacer.waits[0]
    late = _pacer(FakeClock(), limit=60, time_left=lambda: 5.0)
    late.sent("main")
    with pytest.raises(PacingStopped, match="deadline"):
        late.wait_quiet("main", "measure again")


# ---------------------------------------------------------------------------- whole runs
# The gateway's and the run's window are 4 s instead of 60 (both options exist for tests):
# the run paces exactly as with the contract's minute, only 15 times faster.
