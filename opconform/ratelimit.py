"""Rate limits as a client meets them: the header conventions a target may speak, and the pacer
that keeps each identity of a run inside its plan's documented limit.

The contract's headers are `X-RateLimit-Limit/-Remaining/-Reset`. Targets in the field also send
OpenAI's per-resource names (`x-ratelimit-limit-requests`, ... with reset as a duration such as
"6m0s") or the IETF httpapi draft's structured fields (`RateLimit-Policy: "permin";q=60;w=60`,
`RateLimit: "permin";r=59;t=30`), and `Retry-After` (seconds or an HTTP date) or `retry-after-ms`
on a 429. `read_rate_headers` reads all of them into one `RateInfo`; the checks still require the
contract's own names, and say which other convention they found.

The pacer sets the pace from the plan, not from the server (as Locust's `constant_pacing` and
k6's constant-arrival-rate do): an identity never has more requests in any trailing window than
its plan allows, which no fixed-window, sliding-window or token-bucket limiter of that size
refuses. Headers can only make it slower (Remaining 0 until Reset, Retry-After after a 429).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from opconform.contract import WINDOW_SECONDS
from opconform.rate_headers import (
    CONTRACT,
    epoch_reset,
    read_rate_headers,
    relative_reset,
    retry_after_seconds,
)


# ---------------------------------------------------------------------------- the pacer
class PacingStopped(Exception):
    """Waiting for a key's window would pass the run's deadline."""


@dataclass
class _Identity:
    limit: int | None  # requests per window; None: the plan states none (Enterprise unknown)
    plan: str
    sent: deque[float]
    blocked_until: float = 0.0
    header_limit: int | None = None
    header_convention: str | None = None
    # From this moment on, every request the key has seen in a window is one the run sent (the
    # window was observed from its start): a 429 then is evidence about the limit.
    observed_from: float = 0.0
    refused: _Refusal | None = None  # requests/min 429s since the key's last other answer
    # When the key's last request left or its last answer ended, and when its answers in the
    # trailing window were errors: a server's per-key state left by the run (see `troubled`).
    last_active: float = float("-inf")
    errors: deque[float] = field(default_factory=deque)


@dataclass
class _Refusal:
    """A key refused for its requests/min since `since`, and what the target named for its
    reset: the time by which every Retry-After and relative Reset it gave has passed (or a
    whole window, when it named nothing), and the latest epoch Reset it gave."""

    since: float
    until: float
    epoch: float | None
    stated: bool


def _states_less(identity: _Identity) -> bool:
    """The contract's X-RateLimit-Limit states less than the key's plan."""
    return (
        identity.header_convention == CONTRACT
        and identity.header_limit is not None
        and identity.limit is not None
        and identity.header_limit < identity.limit
    )


class Pacer:
    """Keeps each identity within its plan: at most `limit` requests of the run in any trailing
    window, and no request before a Reset or Retry-After the target asked for. Thread-safe: the
    run may send one identity's requests from several threads."""

    def __init__(
        self,
        limits: Mapping[str, tuple[str, int | None]] | None = None,
        *,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        time_left: Callable[[], float | None] = lambda: None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._time_left = time_left
        self.on_wait = on_wait
        self._lock = threading.Lock()
        started = clock()
        self._identities: dict[str, _Identity] = {}
        for label, (plan, limit) in (limits or {}).items():
            # What other clients (or an earlier run) sent before this run is unknown for one
            # window; after that, every request in a trailing window is the run's own.
            self._identities[label] = _Identity(limit, plan, deque(), observed_from=started)
        # Seconds during which at least one request was held back: threads sending one key's
        # requests at once wait together, and their waits are one stretch of the run, not a sum.
        self.waited = 0.0
        self._waiters = 0
        self._waiting_since = 0.0
        self.waits: list[str] = []

    def _identity(self, label: str) -> _Identity:
        identity = self._identities.get(label)
        if identity is None:
            identity = self._identities[label] = _Identity(
                None, "unknown", deque(), observed_from=self._clock()
            )
        return identity

    def limit_of(self, label: str) -> int | None:
        return self._identity(label).limit

    def stated_limit(self, label: str) -> int | None:
        """The requests/min the contract's X-RateLimit-Limit last stated for this key, if any
        (another convention's figure is not the contract's statement)."""
        identity = self._identity(label)
        return identity.header_limit if identity.header_convention == CONTRACT else None

    def describe(self, label: str) -> str:
        identity = self._identity(label)
        plan = identity.plan.capitalize()
        rate = f"{identity.limit} requests/min" if identity.limit else "no stated limit"
        return f"the {label} key ({plan}: {rate})"

    def _prune(self, identity: _Identity, now: float) -> None:
        while identity.sent and identity.sent[0] <= now - self.window:
            identity.sent.popleft()

    def recent(self, label: str) -> int:
        """The run's requests on this key in the trailing window."""
        with self._lock:
            identity = self._identity(label)
            self._prune(identity, self._clock())
            return len(identity.sent)

    def troubled(self, label: str) -> str | None:
        """Why the target's own count of this key's open requests may be off, else None: some
        of the key's answers in the trailing window were errors (or none came). Servers keep
        that count per request, and failed requests are where it goes wrong: LiteLLM keeps the
        slot of a request it refuses before calling its model and gives back three slots for a
        streamed request that fails after its retries (measured by hand, tests/interop)."""
        with self._lock:
            identity = self._identity(label)
            now = self._clock()
            while identity.errors and identity.errors[0] <= now - self.window:
                identity.errors.popleft()
            if not identity.errors:
                return None
            return (
                f"{len(identity.errors)} answer(s) on the {label} key in the last "
                f"{self.window:.0f}s were errors, the last {now - identity.errors[-1]:.0f}s ago"
            )

    def wait_quiet(self, label: str, why: str, *, settle: float = 0.0) -> None:
        """Wait until the run has sent nothing on this key, and had no answer on it, for a
        whole window (and `settle` seconds more, for the server to notice disconnects): what a
        server keeps per window about the key has then expired. PacingStopped when the run's
        deadline comes first."""
        while True:
            with self._lock:
                identity = self._identity(label)
                delay = identity.last_active + self.window + settle - self._clock()
            if delay <= 0:
                return
            self._wait(label, delay, why)

    def _delay(self, identity: _Identity, needed: int, now: float) -> float:
        self._prune(identity, now)
        limit = identity.limit
        # A key whose headers state a lower limit than its plan is paced by the plan alone:
        # waiting for its resets would hide that deviation (OP-RL-004/007 judge it).
        delay = 0.0 if _states_less(identity) else max(0.0, identity.blocked_until - now)
        stated = identity.header_limit if identity.header_convention == CONTRACT else None
        if stated is not None and limit is not None:
            # Only the contract's X-RateLimit-Limit speaks for the key (one of another plan goes
            # at its own rate); another convention's figure may be an upstream's passed through
            # (LiteLLM forwards llmock's x-ratelimit-limit-requests: 100000 on a 60/min key).
            limit = max(limit, stated)
        if limit is not None and identity.sent and len(identity.sent) + needed > limit:
            # The oldest requests that must leave the window before `needed` more fit in it.
            index = min(len(identity.sent) - 1, max(0, len(identity.sent) + needed - limit - 1))
            delay = max(delay, identity.sent[index] + self.window - now)
        return delay

    def before(self, label: str, needed: int = 1, *, why: str = "", take: bool = False) -> None:
        """Wait until `needed` more requests on this key fit in its plan's window and any Reset
        or Retry-After has passed. With `take`, the request is counted in the same step, so
        threads sending one identity's requests at once never overfill its window."""
        while True:
            with self._lock:
                identity = self._identity(label)
                now = self._clock()
                delay = self._delay(identity, needed, now)
                if delay <= 0:
                    if take:
                        identity.sent.append(now)
                        identity.last_active = now
                    return
            self._wait(label, delay, why or f"room for {needed} request(s) in its window")
            why = why or ""

    def _wait(self, label: str, delay: float, reason: str) -> None:
        left = self._time_left()
        message = f"waiting {delay:.0f}s for {self.describe(label)}: {reason}"
        if left is not None and delay > left:
            raise PacingStopped(f"{message}, but the run's --deadline comes first")
        if delay >= 1:  # the spacing of single requests at the window's edge is not news
            self.waits.append(message)
            if self.on_wait is not None:
                self.on_wait(message)
        with self._lock:
            if self._waiters == 0:
                self._waiting_since = self._clock()
            self._waiters += 1
        try:
            self._sleep(delay)
        finally:
            with self._lock:
                self._waiters -= 1
                if self._waiters == 0:
                    self.waited += self._clock() - self._waiting_since

    def sent(self, label: str, n: int = 1) -> None:
        """Requests that left for this key (paced or not, ours or an SDK's)."""
        with self._lock:
            identity = self._identity(label)
            now = self._clock()
            identity.sent.extend([now] * n)
            identity.last_active = max(identity.last_active, now)

    def observe(
        self, label: str, status: int | None, headers: Mapping[str, str], sent_ago: float = 0.0
    ) -> None:
        """Slow down on what the target says: Remaining 0 until Reset; Retry-After on a 429.
        An answer other than 429 to a request sent after the key's refusals began ends them
        (a stream opened before them and closed after says nothing about the window)."""
        info = read_rate_headers(headers)
        now = self._clock()
        with self._lock:
            identity = self._identity(label)
            identity.last_active = max(identity.last_active, now)
            if status is None or status >= 400:
                identity.errors.append(now)
            if info is not None:
                identity.header_limit = info.limit
                identity.header_convention = info.convention
                if info.remaining == 0 and info.reset_seconds is not None:
                    until = now + min(info.reset_seconds, self.window) + 0.25
                    identity.blocked_until = max(identity.blocked_until, until)
            refused = identity.refused
            if status not in (None, 429) and refused and now - sent_ago > refused.since:
                identity.refused = None
            if status == 429:
                wait = retry_after_seconds(headers)
                # A wait longer than the window is another limit's (tokens/day): the request
                # that met it is told so (LimitSpent); it does not hold back the key's pace.
                if wait is not None and wait <= self.window:
                    identity.blocked_until = max(identity.blocked_until, now + wait)

    def explains_429(self, label: str) -> str | None:
        """Why a 429 on this key is no evidence of a limit below the plan (the window is spent
        by the run, or may have been by another client or an earlier run), else None: the run
        had sent fewer than the plan allows in a window it observed from its start."""
        with self._lock:
            identity = self._identity(label)
            now = self._clock()
            self._prune(identity, now)
            if identity.limit is None:
                return "the key's plan states no requests/min"
            if len(identity.sent) >= identity.limit:
                return f"the run sent {len(identity.sent)} requests in the last minute"
            if now < identity.observed_from + self.window:
                return (
                    "the window may have been spent by another client or an earlier run "
                    "(the run has not yet seen one from its start)"
                )
            return None

    def stated_below_plan(self, label: str) -> str | None:
        """The key's own X-RateLimit-Limit states less than its plan: a 429 on it is that
        deviation's (OP-RL-004), whatever the run sent."""
        with self._lock:
            identity = self._identity(label)
            if not _states_less(identity):
                return None
            return (
                f"X-RateLimit-Limit is {identity.header_limit} for the {label} key; its plan "
                f"({identity.plan.capitalize()}) allows {identity.limit} requests/min"
            )

    def shared_window(self, label: str) -> str | None:
        """When a 429 on this key is not explained by its own requests: did the run's keys
        together fill its window? Then the limit is counted across keys, not per key."""
        with self._lock:
            now = self._clock()
            identity = self._identity(label)
            if identity.limit is None:
                return None
            together = 0
            for other_label, other in self._identities.items():
                self._prune(other, now)
                if other_label != "anonymous":
                    together += len(other.sent)
            own = len(identity.sent)
            if own >= identity.limit or together < identity.limit:
                return None
            return (
                f"429 on the {label} key after {own} of its own requests in the window, when the "
                f"run's keys together had sent {together}: {self.describe(label)} is counted "
                "across keys, not per key"
            )

    def not_reset(self, label: str, headers: Mapping[str, str], sent_ago: float) -> str | None:
        """For a requests/min 429 on this key, sent `sent_ago` seconds before now: why it shows
        that the key's window did not reset (OP-RL-009), else None, and it is recorded as one
        more refusal to wait out. Evidence only when the request left after the reset the
        key's refusals named had passed: every Retry-After and relative Reset by our clock, a
        later epoch Reset by the target's own (so a clock that differs from ours cannot make a
        request look late), or a whole window in which the run sent nothing on the key when
        nothing was named; and the run's keys together sent fewer than its plan allows since
        (else the run, or a limit counted across keys, explains it)."""
        now = self._clock()
        sent_at = now - sent_ago
        # A wait of 0 names no reset to wait for: such a refusal is judged by its epoch Reset,
        # or by a whole window.
        named = [v for v in (retry_after_seconds(headers), relative_reset(headers)) if v]
        epoch = epoch_reset(headers)
        with self._lock:
            identity = self._identity(label)
            refused = identity.refused
            if refused is not None and identity.limit is not None and sent_at >= refused.until:
                later = refused.epoch is None or (epoch is not None and epoch > refused.epoch)
                # Nothing named: a whole window before this request (its own send aside)
                # in which the run sent nothing on the key.
                quiet = refused.stated or (
                    sum(1 for t in identity.sent if sent_at - self.window <= t < sent_at) <= 1
                )
                since = sum(
                    1
                    for other_label, other in self._identities.items()
                    if other_label != "anonymous"
                    for t in other.sent
                    if refused.until <= t < sent_at
                )
                if later and quiet and since < identity.limit:
                    named_text = "the reset it named" if refused.stated else "a whole window"
                    return (
                        f"429 again on the {label} key {sent_at - refused.since:.0f}s after its "
                        f"first refusal, sent after {named_text} had passed: its window did "
                        "not reset"
                    )
            wait = max(named, default=0.0 if epoch is not None else self.window)
            if wait > self.window:
                return None  # another limit's (tokens/day): not this window's
            until = now + wait
            if refused is None:
                identity.refused = _Refusal(now, until, epoch, bool(named) or epoch is not None)
            else:
                refused.until = max(refused.until, until)
                if epoch is not None:
                    refused.epoch = max(refused.epoch or epoch, epoch)
            return None

    def wait_out_429(self, label: str, headers: Mapping[str, str]) -> None:
        """After a 429 the plan explains: wait for the reset the target named (Retry-After,
        Reset) or else the documented window, then count the window as observed."""
        wait = retry_after_seconds(headers)
        info = read_rate_headers(headers)
        if wait is None and info is not None and info.reset_seconds is not None:
            wait = info.reset_seconds
        if wait is None or wait > self.window:
            wait = self.window
        with self._lock:
            identity = self._identity(label)
            identity.blocked_until = max(identity.blocked_until, self._clock() + wait + 0.25)
        self.before(label, why="its window was spent before this run's requests (429)")
        with self._lock:
            identity.observed_from = min(identity.observed_from, self._clock() - self.window)


def about_tokens(text: str) -> bool:
    """A 429 body that speaks of tokens or a daily quota, not of requests per minute."""
    lowered = text.lower()
    return any(word in lowered for word in ("token", "quota", "per day", "daily"))
