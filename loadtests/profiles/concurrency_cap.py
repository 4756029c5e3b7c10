"""concurrency-cap: more open streams than the plan allows, on one key (run it in one process).

One user works in rounds, and plans them from what it measures:
1. probe: two streams asking for a long answer, read until `hold_seconds` (default 1): how long
   the target's streams really last, and how fast tokens come;
2. each round opens `cap` streams at once (half go away after the hold, a client
   disconnecting; half read to their end, sized from the probe to end about then), waits until
   each has sent its first line, then sends 2 more: the excess;
3. after the round a short settle (the server notices a disconnect when it next writes), then
   the next round, keeping the requests of any window under 80% of the requests/min limit.
load.json's extra records the probe, the plan and every round.

Expectations and the evidence each needs:
- the excess is rejected with 429: an excess request sent while `cap` streams were open;
- never more than the cap open at once: more than `cap` requests in flight at one moment;
- no 429 while fewer than cap-1 streams were open (one of tolerance for a close in flight);
- slots free after streams end and clients disconnect: a disconnect while the stream was still
  open, then a later round that opened `cap` streams at once;
- no broken streams; the requests/min limit stayed out of the way (else the run proves
  nothing).
A target whose answers end before the round can hold them gives "inconclusive", naming what was
missing, never "fail".
A 429 whose X-RateLimit-Remaining is 0 is the requests/min limit, reported apart.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import gevent
import gevent.event
import gevent.pool
from locust import task

from opconform.loadtests.llm import (
    RUN,
    SHORT_PROMPT,
    LLMUser,
    Profile,
    Sample,
    Settings,
    expectation,
    stop_run,
    use_profile,
)
from opconform.loadtests.state import sleep
from opconform.metrics import percentile

EDGE = 0.01  # seconds shaved off each stream's end: the server frees a slot as it sends [DONE]
LONG_TOKENS = 20_000  # the probe's output target: longer than any hold
EXCESS = 2


class CapUser(LLMUser):
    fixed_count = 1
    group = "main"
    expects_429 = True

    def on_start(self) -> None:
        super().on_start()
        self.cap = self.settings.limit("concurrent")
        self.budget = max(self.cap + EXCESS, int(0.8 * self.settings.limit("rpm")))
        self.sent: deque[float] = deque()
        self.hold = self.settings.option("hold_seconds", 1.0)
        self.round = 0
        self.finish_tokens = LONG_TOKENS
        self.settle = 0.2

    def _spend(self, requests: int) -> bool:
        """Wait until `requests` more fit under 80% of requests/min in any window."""
        window = self.settings.window
        while True:
            now = time.time()
            while self.sent and self.sent[0] <= now - window:
                self.sent.popleft()
            if len(self.sent) + requests <= self.budget:
                self.sent.extend([now] * requests)
                return True
            if RUN.stopping:
                return False
            sleep(min(1.0, self.sent[0] + window - now + 0.01))

    def _probe(self) -> None:
        group = gevent.pool.Group()
        probes = [
            group.spawn(self.stream, long=LONG_TOKENS, disconnect_after=self.hold, phase="probe")
            for _ in range(2)
            if self.within_ceilings()
        ]
        group.join()
        samples = [g.value for g in probes if isinstance(g.value, Sample)]
        ok = [s for s in samples if s.status == 200 and s.e2e]
        lasted = [s.e2e or 0.0 for s in ok]
        rates = [
            s.content_events / (s.e2e - s.ttft)
            for s in ok
            if s.ttft is not None and s.e2e and s.e2e > s.ttft and s.content_events > 1
        ]
        gap = max((g for s in ok for g in s.gaps), default=0.0)
        if rates:  # finishers sized to end about when the disconnecters go away
            self.finish_tokens = max(16, min(LONG_TOKENS, int(min(rates) * self.hold)))
        self.settle = min(2.0, max(0.2, 5 * gap))
        RUN.notes["probe"] = {
            "streams": len(samples),
            "lasted_s": lasted,
            "held_to_hold": sum(1 for s in ok if s.disconnected),
            "tokens_per_s": min(rates) if rates else None,
            "hold_s": self.hold,
            "finish_tokens": self.finish_tokens,
            "settle_s": self.settle,
        }

    @task
    def rounds(self) -> None:
        if self.round == 0:
            if not self._spend(2):
                return
            self._probe()
            RUN.notes["rounds"] = []
        while not RUN.stopping:
            if not self._spend(self.cap + EXCESS):
                return
            self.round += 1
            self._one_round(self.round)
            sleep(self.settle)
        gevent.sleep(0.2)

    def _one_round(self, number: int) -> None:
        opened = 0
        all_open = gevent.event.Event()

        def on_open() -> None:
            nonlocal opened
            opened += 1
            if opened >= self.cap:
                all_open.set()

        def once(callback: Any) -> Any:
            fired = False

            def call() -> None:
                nonlocal fired
                if not fired:
                    fired = True
                    callback()

            return call

        group = gevent.pool.Group()
        openers = []
        for index in range(self.cap):
            if not self.within_ceilings():
                stop_run()
                break
            leaves = index % 2 == 0
            openers.append(
                group.spawn(
                    self.stream,
                    long=LONG_TOKENS if leaves else self.finish_tokens,
                    disconnect_after=self.hold if leaves else None,
                    phase=f"round-{number}",
                    on_open=once(on_open),
                )
            )
        all_open.wait(timeout=max(1.0, self.hold))
        excess = [
            group.spawn(self.stream, prompt=SHORT_PROMPT, max_tokens=16, phase=f"excess-{number}")
            for _ in range(EXCESS)
            if self.within_ceilings()
        ]
        group.join(timeout=self.hold + self.network_timeout)
        row = {
            "round": number,
            "opened": sum(1 for g in openers if _status(g) == 200),
            "refused": sum(1 for g in openers if _status(g) == 429),
            "excess_refused": sum(1 for g in excess if _status(g) == 429),
            "disconnects": sum(
                1 for g in openers if isinstance(g.value, Sample) and g.value.disconnected
            ),
            "all_open_before_excess": opened >= self.cap,
        }
        RUN.notes["rounds"].append(row)


def _status(greenlet: Any) -> int | None:
    return greenlet.value.status if isinstance(greenlet.value, Sample) else None


def minute_limited(sample: Sample) -> bool:
    return sample.status == 429 and sample.ratelimit_remaining == 0


def edge(samples: list[Sample]) -> float:
    """How late the client may see a stream end after the server freed its slot: at least
    EDGE, more on a busy machine, where the client's own reads lag (its gap tail shows it)."""
    return max(EDGE, percentile([g for s in samples for g in s.gaps], 99) or 0.0)


def _held(samples: list[Sample], strict: bool = True) -> list[tuple[float, float]]:
    """When each accepted stream held a slot, as the client saw it. strict: from its first line
    to an edge before its end (never more than the server can have counted); loose: from its
    send to an edge after its end (never less)."""
    accepted = [s for s in samples if s.status == 200 and s.kind == "stream"]
    margin = edge(samples)
    if strict:
        return [(s.sent + (s.ttfb or 0.0), s.end - margin) for s in accepted]
    return [(s.sent, s.end + margin) for s in accepted]


def open_at(intervals: list[tuple[float, float]], moment: float) -> int:
    return sum(1 for start, end in intervals if start <= moment < end)


def open_throughout(intervals: list[tuple[float, float]], start: float, end: float) -> int:
    """Streams open during all of [start, end]: the fewest the server can have seen then."""
    return sum(1 for a, b in intervals if a <= start and b >= end)


def open_during(intervals: list[tuple[float, float]], start: float, end: float) -> int:
    """Streams open at any moment of [start, end]: the most the server can have seen then."""
    return sum(1 for a, b in intervals if a < end and b > start)


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    cap = settings.limit("concurrent")
    strict, loose = _held(samples), _held(samples, strict=False)
    in_flight = [(s.sent, s.end + EDGE) for s in samples if s.kind == "stream"]
    rejected = [s for s in samples if s.status == 429 and not minute_limited(s)]
    minute = [s for s in samples if minute_limited(s)]
    peak = max((open_at(strict, start) for start, _ in strict), default=0)
    attempted = max((open_at(in_flight, start) for start, _ in in_flight), default=0)
    excess = [s for s in samples if s.phase.startswith("excess")]
    # The server decided somewhere between a request's send and its answer: a verdict against
    # it holds only if it holds for every moment of that flight.
    at_cap = [s for s in excess if open_throughout(strict, s.sent, s.sent + (s.ttfb or 0.0)) >= cap]
    admitted = [s for s in at_cap if s.status == 200]
    early = [s for s in rejected if open_during(loose, s.sent, s.sent + (s.ttfb or 0.0)) < cap - 1]
    lasted = [s.e2e for s in samples if s.status == 200 and s.e2e and not s.disconnected]
    typical = percentile([x for x in lasted if x is not None], 50)
    lasting = f"the target's streams lasted {typical * 1000:.0f} ms at p50" if typical else ""
    rounds = sorted(
        {s.phase for s in samples if s.phase.startswith("round-")},
        key=lambda p: int(p.split("-")[1]),
    )
    disconnected = [s for s in samples if s.disconnected and s.phase.startswith("round-")]
    later = [
        r for r in rounds if disconnected and int(r.split("-")[1]) > _round(disconnected[0].phase)
    ]
    # A round after a disconnect must open `cap` streams again (a leaked slot leaves it
    # short); a requests/min refusal is the other limit, not a slot, and is reported apart.
    short = [
        r
        for r in later
        if sum(1 for s in samples if s.phase == r and (s.status == 200 or minute_limited(s))) < cap
    ]
    broken = [s for s in samples if s.outcome not in ("ok", "expected_429")]
    return [
        expectation(
            "the excess over the cap is rejected with 429",
            not admitted,
            f"{len(at_cap) - len(admitted)} of {len(at_cap)} excess requests sent while {cap} "
            f"streams were open got 429",
            needs=f"excess request sent while {cap} streams were open"
            + (f"; {lasting}" if lasting else ""),
            evidence=bool(at_cap),
        ),
        # Requests in flight are not evidence (they may have been refused, or failed): only a
        # request sent while `cap` accepted streams were open gave the server the chance.
        expectation(
            f"never more than {cap} streams open at once",
            peak <= cap,
            f"peak {peak} accepted streams open; {attempted} requests in flight at most",
            needs=f"request sent while {cap} accepted streams were open",
            evidence=bool(at_cap) or peak > cap,
        ),
        expectation(
            f"no 429 while fewer than {cap - 1} streams were open",
            not early,
            f"{len(early)} early of {len(rejected)} rejections"
            + (
                f", first with at most {open_during(loose, early[0].sent, early[0].end)} open"
                if early
                else ""
            ),
        ),
        expectation(
            "slots free after streams end and clients disconnect",
            not short,
            f"{len(disconnected)} disconnects; "
            + (
                "rounds after them opened "
                + ", ".join(
                    str(sum(1 for s in samples if s.phase == r and s.status == 200)) for r in later
                )
                + f" of {cap} streams"
                if later
                else "no round after one"
            ),
            needs="disconnect while the stream was still open, then another round"
            + (f"; {lasting}" if lasting else ""),
            evidence=bool(later),
        ),
        expectation(
            "no broken streams or other errors",
            not broken,
            f"{len(broken)}" + (f": {broken[0].outcome} {broken[0].detail}" if broken else ""),
            needs="requests",
            evidence=bool(samples),
        ),
        expectation(
            "the requests/min limit stayed out of the way",
            True,
            f"{len(minute)} 429s with Remaining 0",
            needs="run free of requests/min refusals",
            evidence=not minute,
        ),
    ]


def _round(phase: str) -> int:
    return int(phase.split("-")[1])


use_profile(
    Profile(
        "concurrency-cap",
        duration="20s",
        one_process=True,
        expectations=expectations,
        extra=lambda samples, settings: {
            "cap": settings.limit("concurrent"),
            "peak_open": max((open_at(_held(samples), s) for s, _ in _held(samples)), default=0),
        },
        needs_limits=("rpm", "concurrent"),
    )
)
