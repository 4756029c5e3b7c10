"""Per-key limits: requests per minute, tokens per day, concurrent requests.

Semantics (documented in the README):
- requests/min is a fixed window of `window_seconds` that starts, on a whole second, with the
  key's first request after the previous window ended. Requests refused with 429 do not count.
- X-RateLimit-Limit is the plan's requests/min; X-RateLimit-Remaining what is left in the window;
  X-RateLimit-Reset the Unix time (integer seconds) at which the window ends.
- Retry-After on a 429 is ceil(reset - now) >= 1 seconds, so a client that waits it never comes
  back before Reset. Over the concurrency cap Retry-After is 1.
- tokens/day counts prompt + completion tokens of finished requests per UTC day.
- The limiter lives in one process: the gateway is single-worker, so limits are exact.

The limiter's faults are hooks around it (`FaultyLimiter`, fault_limits.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from opconform.contract import WINDOW_SECONDS, Plan

DAY_SECONDS = 86_400


@dataclass
class _KeyState:
    window_start: int = 0
    window_count: int = 0
    day: int = -1
    day_tokens: int = 0
    in_flight: int = 0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0
    reason: str = ""


class RateLimiter:
    def __init__(
        self,
        window_seconds: int = int(WINDOW_SECONDS),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._states: dict[str, _KeyState] = {}

    def bucket(self, key_id: str) -> str:
        """Whose counts a request of `key_id` joins: the key's own."""
        return key_id

    def enforced(
        self, limit: int, cap: int, tokens_per_day: int | None
    ) -> tuple[float, float, int | None]:
        """What is refused: (requests per window, concurrent requests, tokens per day)."""
        return limit, cap, tokens_per_day

    def _state(self, key_id: str) -> _KeyState:
        key_id = self.bucket(key_id)
        state = self._states.get(key_id)
        if state is None:
            state = self._states[key_id] = _KeyState()
        return state

    def admit(self, key_id: str, plan: Plan, *, takes_slot: bool) -> Verdict:
        """Count one request against `key_id`, or refuse it; takes a concurrency slot if asked."""
        now = self._clock()
        state = self._state(key_id)
        if now >= state.window_start + self.window_seconds:
            state.window_start = int(now)
            state.window_count = 0
        reset = state.window_start + self.window_seconds
        limit, cap = plan.requests_per_min, plan.concurrent
        # The gateway's plans state both figures (opconform.gateway.settings refuses a plan without
        # them).
        assert limit is not None and cap is not None
        allowance, cap_enforced, tokens_per_day = self.enforced(limit, cap, plan.tokens_per_day)

        def refuse(retry_after: int, reason: str) -> Verdict:
            remaining = max(0, limit - state.window_count)
            return Verdict(False, limit, remaining, reset, retry_after, reason)

        if state.window_count >= allowance:
            return refuse(max(1, math.ceil(reset - now)), "requests per minute")
        if takes_slot and state.in_flight >= cap_enforced:
            return refuse(1, "concurrent requests")
        day = int(now // DAY_SECONDS)
        if state.day != day:
            state.day, state.day_tokens = day, 0
        if tokens_per_day is not None and state.day_tokens >= tokens_per_day:
            return refuse(max(1, math.ceil((day + 1) * DAY_SECONDS - now)), "tokens per day")

        state.window_count += 1
        if takes_slot:
            state.in_flight += 1
        return Verdict(True, limit, max(0, limit - state.window_count), reset)

    def release(self, key_id: str) -> None:
        state = self._state(key_id)
        state.in_flight = max(0, state.in_flight - 1)

    def record_tokens(self, key_id: str, tokens: int) -> None:
        state = self._state(key_id)
        day = int(self._clock() // DAY_SECONDS)
        if state.day != day:
            state.day, state.day_tokens = day, 0
        state.day_tokens += tokens
