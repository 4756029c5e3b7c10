"""The reference gateway's limiter (gateway/limits.py) on a fake clock: the window, what the
headers say of it, concurrency and tokens per day, per key."""

from __future__ import annotations

from opconform.gateway.limits import RateLimiter
from opconform.gateway.settings import DEFAULT_PLANS


def test_limiter_window_remaining_reset_retry_after() -> None:
    now = [1000.25]
    limiter = RateLimiter(60, clock=lambda: now[0])
    free = DEFAULT_PLANS["free"]
    verdicts = [limiter.admit("k", free, takes_slot=False) for _ in range(60)]
    assert [v.remaining for v in verdicts[:3]] == [59, 58, 57] and verdicts[-1].remaining == 0
    assert {v.reset for v in verdicts} == {1060}
    refused = limiter.admit("k", free, takes_slot=False)
    assert not refused.allowed and refused.retry_after == 60  # ceil(1060 - 1000.25)
    assert limiter.admit("other", free, takes_slot=False).allowed  # per key
    now[0] = 1060.0
    assert limiter.admit("k", free, takes_slot=False).allowed


def test_limiter_concurrency_and_tokens_per_day() -> None:
    limiter = RateLimiter(60, clock=lambda: 5000.0)
    free = DEFAULT_PLANS["free"]
    for _ in range(5):
        assert limiter.admit("k", free, takes_slot=True).allowed
    assert limiter.admit("k", free, takes_slot=True).reason == "concurrent requests"
    limiter.release("k")
    assert limiter.admit("k", free, takes_slot=True).allowed
    limiter.record_tokens("j", 100_000)
    assert limiter.admit("j", free, takes_slot=False).reason == "tokens per day"
