"""The limiter's faults, as hooks around `RateLimiter` (limits.py): whose counts a request joins
and which limits are enforced."""

from __future__ import annotations

import math
from collections.abc import Callable

from opconform.gateway.faults import Faults
from opconform.gateway.limits import RateLimiter


class FaultyLimiter(RateLimiter):
    def __init__(self, window_seconds: int, on: Callable[[str], bool]) -> None:
        super().__init__(window_seconds)
        self.on = on

    def bucket(self, key_id: str) -> str:
        return "*" if self.on(Faults.RATELIMIT_SHARED_ACROSS_KEYS) else key_id

    def enforced(
        self, limit: int, cap: int, tokens_per_day: int | None
    ) -> tuple[float, float, int | None]:
        allowance: float = limit
        enforced_cap: float = cap
        if self.on(Faults.RATELIMIT_NOT_ENFORCED):
            allowance = math.inf
        elif self.on(Faults.RATELIMIT_OFF_BY_ONE):
            allowance += 1
        if self.on(Faults.CONCURRENCY_NOT_ENFORCED):
            enforced_cap = math.inf
        if self.on(Faults.TOKENS_PER_DAY_NOT_ENFORCED):
            tokens_per_day = None
        return allowance, enforced_cap, tokens_per_day
