"""rpm-burst: more requests per minute than the plan allows, on one key.

Users (one each): `polite` (main key, twice the limit, honours Retry-After), `abusive` (alt key,
three times the limit, ignores Retry-After; needs OP_ALT_API_KEY) and `bystander` (Pro key at
1 req/s; needs OP_PRO_API_KEY).
Windows are told apart as loadtests/windows.py says: by X-RateLimit-Remaining going up, or
without headers only by a count no limiter allows (more than twice the limit accepted within
one window length).
Expectations, per requests/min window seen from its start and filled to the limit: 429s start
exactly at the documented limit (the onset count is reported per window); every 429 carries
Retry-After and the error body; the polite client gets through after waiting Retry-After; the
abusive client stays refused until the window resets; other keys are unharmed. A run with no
window filled to the limit (too short, or the target was never pushed that far) is
inconclusive, not broken.
"""

from __future__ import annotations

import itertools
from typing import Any

from locust import task

from opconform.loadtests import windows
from opconform.loadtests.llm import (
    SHORT_PROMPT,
    LLMUser,
    Profile,
    Sample,
    Settings,
    expectation,
    group,
    no_failures,
    present,
    use_profile,
)


class BurstUser(LLMUser):
    abstract = True
    expects_429 = True
    rpm_share = 2.0

    @task
    def burst(self) -> None:
        self.paced("chat", prompt=SHORT_PROMPT, max_tokens=4, name=f"{self.group} chat")


class PoliteUser(BurstUser):
    fixed_count = 1
    group = "polite"
    key_label = "main"


class AbusiveUser(BurstUser):
    fixed_count = present("alt")
    group = "abusive"
    key_label = "alt"
    honours_retry_after = False
    rpm_share = 3.0


class BystanderUser(LLMUser):
    fixed_count = present("pro")
    group = "bystander"
    key_label = "pro"
    rate = 1.0

    @task
    def ask(self) -> None:
        self.paced("chat", prompt=SHORT_PROMPT, max_tokens=4, name="bystander chat")


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    results = []
    limit = settings.limit("rpm")
    for name in ("polite", "abusive"):
        members = group(samples, name)
        if not members:
            continue
        # Filled: seen from its start and pushed to the limit (a 429 came, or more than the
        # limit were accepted, which is a finding too).
        filled = [
            w
            for w in windows.rows(members)
            if w["fresh"] and (w["onset"] is not None or w["accepted"] > limit)
        ]
        wrong = [w for w in filled if w["onset"] != limit]
        # Without window headers, only a count no limiter allows is evidence.
        unenforced, accepted = windows.unlimited(members, limit, settings.window)
        if filled:
            detail = f"onset per window: {[w['onset'] for w in filled]}" + (
                f", accepted {[w['accepted'] for w in wrong]}" if wrong else ""
            )
        else:
            detail = accepted
        results.append(
            expectation(
                f"{name}: 429 starts at the documented limit of {limit}",
                not wrong and not unenforced,
                detail,
                needs="requests/min window seen from its start (X-RateLimit-Remaining) and "
                f"filled to the limit, or more than {windows.STRADDLE_FACTOR * limit} requests "
                f"accepted within {settings.window * windows.SPAN_MARGIN:.3g} s",
                evidence=bool(filled) or unenforced,
            )
        )
        limited = [s for s in members if s.status == 429]
        broken = [s for s in members if s.outcome == "broken_429"]
        results.append(
            expectation(
                f"{name}: every 429 has Retry-After and the error body",
                not broken,
                f"{len(broken)} of {len(limited)} without",
                needs="429 answers",
                evidence=bool(limited),
            )
        )
        unexpected = [s for s in members if s.outcome not in ("ok", "expected_429", "broken_429")]
        first = unexpected[0] if unexpected else None
        results.append(
            expectation(
                f"{name}: no other errors",
                not unexpected,
                f"{len(unexpected)} of {len(members)}"
                + (f": first {first.outcome} {first.detail}" if first else ""),
                needs="requests",
                evidence=bool(members),
            )
        )
    polite = group(samples, "polite")
    after_wait = [b for a, b in itertools.pairwise(polite) if a.status == 429 and b.retry_wait]
    recovered = [s for s in after_wait if s.status == 200]
    results.append(
        expectation(
            "polite: after waiting Retry-After the next request succeeds",
            len(recovered) == len(after_wait),
            f"{len(recovered)} of {len(after_wait)} waits were followed by a success",
            needs="429 followed by a wait and a next request",
            evidence=bool(after_wait),
        )
    )
    abusive = group(samples, "abusive")
    if abusive:
        limited_windows = [w for w in windows.rows(abusive) if w["onset"] is not None]
        leaks = [w for w in limited_windows if w["passed_after_onset"]]
        results.append(
            expectation(
                "abusive: keeps getting 429 until the window resets",
                not leaks,
                f"{len(leaks)} windows let requests through after the first 429",
                needs="window in which the abusive client was refused",
                evidence=bool(limited_windows),
            )
        )
    bystander = group(samples, "bystander")
    if bystander:
        results += no_failures(bystander, "bystander (Pro key)")
    return results


use_profile(
    Profile(
        "rpm-burst",
        duration="130s",
        users="per-key",
        expectations=expectations,
        slo_groups=("polite",),
        target_rps=lambda settings: 2.0 * settings.limit("rpm") / settings.window,
        extra=lambda samples, settings: {
            "windows": {name: windows.rows(group(samples, name)) for name in ("polite", "abusive")},
            "documented_limit": settings.limit("rpm"),
        },
        needs_limits=("rpm",),
    )
)
