"""concurrency-cap: more open streams than the plan allows, on one key (run it in one process).

Users: as many as `opconform load` starts (the plan's cap plus 2). Each holds long streams in a
loop, alternately going away after `hold_seconds` (a client disconnecting) and reading a short
stream to its end, paced to stay under the requests/min limit: on the Free plan (60/min, cap 5)
a stream must stay open for several seconds before the cap can be reached, so runs take 30 s or
more. Profile options: hold_seconds=S (default: what the plan's rates need).
A 429 whose X-RateLimit-Remaining is 0 is the requests/min limit, reported apart.
Expectations: the excess is rejected with 429; never more than the cap open at once; no 429
while fewer than cap-1 streams were open (one of tolerance for the server noticing a close);
slots free again after streams end and clients disconnect.
"""

from __future__ import annotations

from typing import Any

from locust import task

from loadtests.llm import LONG_PROMPT, LLMUser, Profile, Settings, expectation, option, use_profile
from loadtests.metrics import Sample

EDGE = 0.01  # seconds shaved off each stream's end: the server frees a slot as it sends [DONE]


class HolderUser(LLMUser):
    group = "main"
    expects_429 = True

    def on_start(self) -> None:
        super().on_start()
        self.turn = 0
        per_second = 0.8 * self.settings.rpm / self.settings.window  # stay under requests/min
        self.rate = per_second / self.settings.users
        # Long enough that the users' streams overlap past the cap at that pace.
        self.hold_seconds = option(
            self.settings, "hold_seconds", max(1.0, 2.0 * self.settings.users / per_second)
        )

    @task
    def hold(self) -> None:
        self.turn += 1
        if self.turn % 2:
            sample = self.paced(
                prompt=LONG_PROMPT, max_tokens=20_000, disconnect_after=self.hold_seconds
            )
        else:
            sample = self.paced(max_tokens=16)
        if sample is not None and sample.status == 429 and sample.ratelimit_remaining == 0:
            self.after_429(sample)


def _accepted(samples: list[Sample], strict: bool = True) -> list[tuple[float, float]]:
    """When each accepted stream held a slot, as the client saw it. strict: from its headers to
    just before its end (never more than the server can have counted); loose: from its send to
    just after its end (never less)."""
    if strict:
        return [
            (s.sent + (s.ttfb or 0.0), s.end - EDGE)
            for s in samples
            if s.status == 200 and s.kind == "stream"
        ]
    return [(s.sent, s.end + EDGE) for s in samples if s.status == 200 and s.kind == "stream"]


def open_at(intervals: list[tuple[float, float]], moment: float) -> int:
    return sum(1 for start, end in intervals if start <= moment < end)


def minute_limited(sample: Sample) -> bool:
    return sample.status == 429 and sample.ratelimit_remaining == 0


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    cap = settings.concurrent
    intervals = _accepted(samples)
    rejected = [s for s in samples if s.status == 429 and not minute_limited(s)]
    minute = [s for s in samples if minute_limited(s)]
    peak = max((open_at(intervals, start) for start, _ in intervals), default=0)
    loose = _accepted(samples, strict=False)
    early = [s for s in rejected if open_at(loose, s.sent + (s.ttfb or 0.0)) < cap - 1]
    disconnects = [s for s in samples if "disconnected" in s.detail]
    after = [s for s in samples if s.status == 200 and disconnects and s.sent > disconnects[0].end]
    broken = [s for s in samples if s.outcome not in ("ok", "expected_429")]
    return [
        expectation(
            "the excess over the cap is rejected with 429",
            bool(rejected),
            f"{len(rejected)} rejected of {len(samples)}",
        ),
        expectation(f"never more than {cap} streams open at once", peak <= cap, f"peak {peak}"),
        expectation(
            f"no 429 while fewer than {cap - 1} streams were open",
            not early,
            f"{len(early)} early rejections"
            + (f", first with {open_at(loose, early[0].sent)} open" if early else ""),
        ),
        expectation(
            "slots free after streams end and clients disconnect",
            len(intervals) > cap and bool(after),
            f"{len(intervals)} streams accepted, {len(after)} after the first disconnect",
        ),
        expectation(
            "no broken streams or other errors",
            not broken,
            f"{len(broken)}" + (f": {broken[0].outcome} {broken[0].detail}" if broken else ""),
        ),
        expectation(
            "the requests/min limit stayed out of the way",
            not minute,
            f"{len(minute)} 429s with Remaining 0",
        ),
    ]


use_profile(
    Profile(
        "concurrency-cap",
        expectations=expectations,
        slo_groups=("main",),
        extra=lambda samples, settings: {
            "cap": settings.concurrent,
            "peak_open": max(
                (open_at(_accepted(samples), s) for s, _ in _accepted(samples)), default=0
            ),
        },
    )
)
