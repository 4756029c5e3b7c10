"""key-isolation: key A flooded past its limits while key B (and a Pro key) run steady.

Users (one each): `flood` (main key, five times its requests/min, ignores Retry-After),
`steady` (alt key, half its requests/min, streaming; needs OP_ALT_API_KEY) and `pro` (Pro key at
1 req/s; needs OP_PRO_API_KEY). Thresholds given with --slo apply to key B.
Expectations: A is limited (429s), judged once a window seen from its start accepted more than
the limit or more than twice the limit was accepted within one window length (before that the
run has no evidence either way); B and the Pro key see no 429 and no errors.
"""

from __future__ import annotations

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


class FloodUser(LLMUser):
    fixed_count = 1
    group = "flood"
    key_label = "main"
    expects_429 = True
    honours_retry_after = False
    # Over twice the limit within one window even in a 30 s run: evidence on any target, with or
    # without window headers (a fixed window may accept twice its limit across a reset).
    rpm_share = 5.0

    @task
    def flood(self) -> None:
        self.paced("chat", prompt=SHORT_PROMPT, max_tokens=4, name="flood chat")


class SteadyUser(LLMUser):
    fixed_count = present("alt")
    group = "steady"
    key_label = "alt"
    rpm_share = 0.5

    @task
    def ask(self) -> None:
        self.paced(name="steady stream")


class ProUser(LLMUser):
    fixed_count = present("pro")
    group = "pro"
    key_label = "pro"
    rate = 1.0

    @task
    def ask(self) -> None:
        self.paced(name="pro stream")


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    flood = group(samples, "flood")
    limit = settings.limit("rpm")
    limited = sum(1 for s in flood if s.status == 429)
    # A fixed window may accept twice its limit across a reset: evidence that key A should have
    # been refused is a window seen from its start and pushed past the limit, or more accepted
    # within one window length than any limiter allows (loadtests/windows.py).
    overfilled = [w for w in windows.rows(flood) if w["fresh"] and w["accepted"] > limit]
    unenforced, accepted = windows.unlimited(flood, limit, settings.window)
    results = [
        expectation(
            "key A is limited (429s)",
            limited > 0,
            f"{limited} of {len(flood)} got 429; "
            + (f"a window accepted {overfilled[0]['accepted']}" if overfilled else accepted),
            needs=f"window seen from its start (X-RateLimit-Remaining) that accepted more than "
            f"{limit}, or more than {windows.STRADDLE_FACTOR * limit} requests accepted within "
            f"{settings.window * windows.SPAN_MARGIN:.3g} s",
            evidence=limited > 0 or bool(overfilled) or unenforced,
        )
    ]
    steady = group(samples, "steady")
    results.append(
        expectation(
            "key B ran",
            bool(steady),
            needs="second key (OP_ALT_API_KEY)",
            evidence=bool(steady),
        )
    )
    results += no_failures(steady, "key B") if steady else []
    pro = group(samples, "pro")
    results += no_failures(pro, "Pro key") if pro else []
    return results


use_profile(
    Profile(
        "key-isolation",
        duration="30s",
        users="per-key",
        expectations=expectations,
        slo_groups=("steady",),
        target_rps=lambda settings: 0.5 * settings.limit("rpm") / settings.window,
        needs_limits=("rpm",),
    )
)
