"""Requests/min windows seen from the client, for the profiles that judge the limit.

The contract says "requests / min" and no more: a fixed window and a sliding one both keep it.
What the client can be sure of:
- with X-RateLimit-Remaining, each window is seen apart (Remaining goes up when one starts), so
  a window seen from its start and pushed past the limit is evidence;
- without headers, only a count no limiter could allow: a fixed window accepts at most twice its
  limit within any window-length span (the end of one window and the start of the next), so
  more than that, accepted within one span, means nothing was limiting.
Pure functions over samples: no Locust here.
"""

from __future__ import annotations

from typing import Any

from opconform.metrics import Sample

# A fixed window admits up to `limit` at the end of one window and `limit` at the start of the
# next, within one window-length span (a token bucket of `limit` refilled per window, the same):
# more than this many times the limit proves no limiter.
STRADDLE_FACTOR = 2
# A span a little shorter than the window cannot touch a third fixed window, even where the
# server's clock and ours disagree a little.
SPAN_MARGIN = 0.98


def _opens(sample: Sample, previous: int) -> bool:
    """An accepted request that states it is its window's first (Remaining = Limit - 1) opens a
    window even where Remaining did not go up: a window whose only request came just before its
    end (a limiter whose windows follow the clock, not the key's first request) reads Limit - 1
    as well, and the next window's first would otherwise be counted in it."""
    limit = sample.ratelimit_limit
    return (
        sample.status == 200
        and limit is not None
        and previous == limit - 1 == sample.ratelimit_remaining
    )


def split(samples: list[Sample]) -> list[list[Sample]]:
    """One client's requests (in send order) cut into requests/min windows: where
    X-RateLimit-Remaining goes up (or an accepted request states it is a window's first),
    whatever convention X-RateLimit-Reset follows (epoch seconds or seconds to go); Reset groups
    them only when Remaining is absent."""
    if any(s.ratelimit_remaining is not None for s in samples):
        windows: list[list[Sample]] = []
        previous: int | None = None
        for sample in samples:
            remaining = sample.ratelimit_remaining
            if remaining is None:
                if windows:
                    windows[-1].append(sample)
                continue
            if previous is None or remaining > previous or _opens(sample, previous):
                windows.append([])
            windows[-1].append(sample)
            previous = remaining
        return windows
    by_reset: dict[int, list[Sample]] = {}
    for sample in samples:
        if sample.ratelimit_reset is not None:
            by_reset.setdefault(sample.ratelimit_reset, []).append(sample)
    return [by_reset[k] for k in sorted(by_reset)]


def rows(samples: list[Sample]) -> list[dict[str, Any]]:
    """Per window: how many requests passed before the first 429, and whether the window was
    seen from its start (its first answer had Remaining = Limit - 1)."""
    found = []
    for members in split(samples):
        first = members[0]
        fresh = (
            first.status == 200
            and first.ratelimit_limit is not None
            and first.ratelimit_remaining == first.ratelimit_limit - 1
        )
        statuses = [s.status for s in members]
        onset = statuses.index(429) if 429 in statuses else None
        passed_after = sum(1 for s in statuses[onset:] if s == 200) if onset is not None else 0
        found.append(
            {
                "reset": first.ratelimit_reset,
                "fresh": fresh,
                "requests": len(members),
                "accepted": statuses.count(200),
                "onset": onset,
                "limit": first.ratelimit_limit,
                "passed_after_onset": passed_after,
            }
        )
    return found


def busiest_accepted(samples: list[Sample], span: float) -> int:
    """The most accepted requests (200) whose whole flight, from send to answer, lies within
    one `span`: the server took each in that span, whatever the network's delays."""
    flights = sorted(
        (s.sent, s.sent + (s.ttfb or s.e2e or 0.0)) for s in samples if s.status == 200
    )
    best = 0
    for index, (start, _) in enumerate(flights):
        inside = sum(1 for sent, answered in flights[index:] if answered <= start + span)
        best = max(best, inside)
        if len(flights) - index <= best:
            break
    return best


def unlimited(samples: list[Sample], limit: int, span: float) -> tuple[bool, str]:
    """Whether the answers prove that nothing limited these requests to `limit` per `span`:
    more than STRADDLE_FACTOR times the limit accepted within one span. With the detail."""
    counted = span * SPAN_MARGIN
    accepted = busiest_accepted(samples, counted)
    proven = accepted > STRADDLE_FACTOR * limit
    return proven, f"{accepted} accepted within {counted:.3g} s (a limiter of {limit} per " + (
        f"{span:g} s allows at most {STRADDLE_FACTOR * limit} across a window boundary)"
    )
