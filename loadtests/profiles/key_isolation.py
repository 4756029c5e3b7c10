"""key-isolation: key A flooded past its limits while key B (and a Pro key) run steady.

Users (one each): `flood` (main key, three times its requests/min, ignores Retry-After),
`steady` (alt key, half its requests/min, streaming; needs OP_ALT_API_KEY) and `pro` (Pro key at
1 req/s; needs OP_PRO_API_KEY). Thresholds given with --slo apply to key B.
Expectations: A is limited (429s) once it sent more than its limit within one window (before
that the run has no evidence either way); B and the Pro key see no 429 and no errors.
"""

from __future__ import annotations

from typing import Any

from locust import task

from loadtests.llm import (
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
    rpm_share = 3.0

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


def busiest_window(samples: list[Sample], window: float) -> int:
    """The most requests sent within any `window` seconds."""
    sent = sorted(s.sent for s in samples)
    best, first = 0, 0
    for last, moment in enumerate(sent):
        while moment - sent[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    flood = group(samples, "flood")
    limit = settings.limit("rpm")
    busiest = busiest_window(flood, settings.window)
    limited = sum(1 for s in flood if s.status == 429)
    results = [
        expectation(
            "key A is limited (429s)",
            limited > 0,
            f"{limited} of {len(flood)}; at most {busiest} sent within {settings.window:g} s",
            needs=f"window in which key A sent more than its limit of {limit}",
            evidence=busiest > limit or limited > 0,
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
        expectations=expectations,
        slo_groups=("steady",),
        target_rps=lambda settings: 0.5 * settings.limit("rpm") / settings.window,
        needs_limits=("rpm",),
    )
)
