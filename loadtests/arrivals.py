"""When an open-loop client sends: constant or Poisson arrivals at a rate, independent of how
long the answers take (a closed loop, where each user waits for its answer, lets a slow target
slow the load down and hides queueing). Pure Python, tested statistically on its own."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

ARRIVALS = ("closed", "constant", "poisson")


def gaps(kind: str, rate: float, rng: random.Random) -> Iterator[float]:
    """Inter-arrival times (s) at `rate` per second: equal, or exponential (Poisson)."""
    if rate <= 0:
        raise ValueError("the arrival rate must be positive")
    while True:
        yield rng.expovariate(rate) if kind == "poisson" else 1.0 / rate


def schedule(
    kind: str, rate: float, start: float, rng: random.Random, phase: float = 0.0
) -> Iterator[float]:
    """Absolute send times after `start`. `phase` (0..1) shifts a constant schedule, so several
    generators at the same rate interleave instead of firing together; a Poisson schedule is
    spread already (it starts with a random gap)."""
    if kind == "constant":
        moment = start + phase / rate
        for gap in gaps(kind, rate, rng):
            yield moment
            moment += gap
    else:
        moment = start
        for gap in gaps(kind, rate, rng):
            moment += gap
            yield moment


def paused(
    moments: Iterator[float], blocked_until: Callable[[], float]
) -> Iterator[tuple[float, float]]:
    """An arrival process that pauses while Retry-After holds, then resumes: each send time,
    with how long it waited. The arrivals after a pause keep their spacing (shifted by the
    wait) instead of all leaving when the wait ends: such a burst would only be refused again,
    and it is no client's arrival process. `blocked_until()` is read as each arrival is planned."""
    shift = 0.0
    for planned in moments:
        moment = planned + shift
        blocked = blocked_until()
        waited = 0.0
        if blocked > moment:
            waited = blocked - moment
            shift += waited
            moment = blocked
        yield moment, waited


class ClosedLoopPacing:
    """A closed-loop user's send times at a rate (Locust's constant_pacing, with a phase): the
    first at its `phase` (0..1) of the interval, then one interval after the one before. A user
    that falls behind because its own last answer took longer than the interval restarts from
    now: in a closed loop that is the target's pace, not the generator's delay."""

    def __init__(self, phase: float = 0.0) -> None:
        self.phase = phase
        self.next_at: float | None = None

    def next(self, rate: float, now: float) -> float:
        """When to send next at `rate` per second (wall clock); counts that send as planned."""
        if self.next_at is None:
            self.next_at = now + self.phase / rate
        elif self.next_at < now:
            self.next_at = now
        scheduled = self.next_at
        self.next_at = scheduled + 1.0 / rate
        return scheduled

    def restart(self) -> None:
        """After a wait of the user's own (Retry-After): the next send is at once."""
        self.next_at = None


def open_arrivals(
    kind: str,
    rate: float,
    start: float,
    rng: random.Random,
    phase: float = 0.0,
    blocked_until: Callable[[], float] | None = None,
) -> Iterator[tuple[float, float]]:
    """An open-loop process's send times, with how long each waited: `schedule`'s, paused as
    Retry-After says (`blocked_until`) when the client honours it."""
    moments = schedule(kind, rate, start, rng, phase)
    if blocked_until is None:
        return ((moment, 0.0) for moment in moments)
    return paused(moments, blocked_until)
