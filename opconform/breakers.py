"""When the client stops sending: a hostile target must end a run in bounded time, with the
checks it could not reach blocked, and an endpoint that keeps failing must not hold up the rest.

Both breakers count transport failures only (`Exchange.failed`): a cut by the run's own
deadline or a disconnect of our own says nothing about the target.
"""

from __future__ import annotations

import time

from opconform.exchange import Exchange
from opconform.limits import Limits


class RunStopped(Exception):
    """The run's deadline passed or the target-level breaker opened: nothing more is sent, and
    every check from here on is blocked with this reason."""


class TargetUnreachable(Exception):
    """One endpoint failed at the transport level too often in a row; checks stop calling it."""


class TargetBreaker:
    """Once the target has shown it is broken at the transport level (failures in a row across
    endpoints, or too much time spent in failed exchanges), stop sending to it at all."""

    def __init__(self, limits: Limits, deadline: float | None = None) -> None:
        self.limits = limits
        self.deadline = deadline  # monotonic time the whole run must end by (--deadline)
        self.in_a_row = 0
        self.failed_seconds = 0.0
        self.reason: str | None = None

    def check(self) -> None:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "the run's --deadline passed"
        if self.reason is not None:
            raise RunStopped(self.reason)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def record(self, exchange: Exchange) -> None:
        if not exchange.failed:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.failed_seconds += exchange.elapsed
        if self.in_a_row >= self.limits.target_failures_in_a_row:
            self.reason = (
                f"the target failed at the transport level {self.in_a_row} times in a row "
                f"(last: {exchange.describe()})"
            )
        elif self.failed_seconds >= self.limits.target_failed_seconds:
            self.reason = (
                f"{self.failed_seconds:.0f}s spent in failed exchanges "
                f"(last: {exchange.describe()})"
            )


class EndpointBreaker:
    """Transport failures in a row per endpoint: a target whose chat endpoint hangs fails fast
    after a few, while its other endpoints are still checked."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.failures: dict[str, int] = {}

    def check(self, endpoint: str) -> None:
        failures = self.failures.get(endpoint, 0)
        if failures >= self.limits.max_consecutive_failures:
            raise TargetUnreachable(
                f"{failures} transport failures in a row on {endpoint}; not sending it again"
            )

    def record(self, exchange: Exchange) -> None:
        endpoint = exchange.endpoint
        self.failures[endpoint] = self.failures.get(endpoint, 0) + 1 if exchange.failed else 0
