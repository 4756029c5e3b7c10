"""What bounds each exchange and the run: deadlines, size caps, breaker thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from opconform.timeouts import DEFAULT_TIMEOUTS, Timeouts


@dataclass(frozen=True)
class Limits:
    # The run's deadlines, the Target's own object (conformance.run.limits_of), not a copy.
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    close_grace: float = 2.0  # how long a stream may stay open after [DONE]
    max_body_bytes: int = 4 * 1024 * 1024
    max_stream_bytes: int = 16 * 1024 * 1024
    max_consecutive_failures: int = 3  # on one endpoint: then that endpoint is not called again
    # The target as a whole: this many transport failures in a row across endpoints, or this
    # much time spent in failed exchanges, and the run stops sending (the rest is blocked).
    target_failures_in_a_row: int = 5
    target_failed_seconds: float = 30.0
    # A stream with more events than this (per max_tokens asked, plus room for the role, finish
    # and usage chunks) does not end the way the contract says: cut it and say so.
    stream_events_per_token: int = 4
    stream_events_floor: int = 64

    def stream_event_cap(self, max_tokens: int) -> int:
        return max(self.stream_events_floor, self.stream_events_per_token * max_tokens + 16)
