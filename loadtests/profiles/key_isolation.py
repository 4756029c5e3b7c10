"""key-isolation: key A flooded past its limits while key B (and a Pro key) run steady.

Users (one each): `flood` (main key, three times its requests/min, ignores Retry-After),
`steady` (alt key, half its requests/min, streaming; needs OP_ALT_API_KEY) and `pro` (Pro key at
1 req/s; needs OP_PRO_API_KEY). Thresholds given with --slo apply to key B.
Expectations: A is limited (429s); B and the Pro key see no 429 and no errors.
"""

from __future__ import annotations

from typing import Any

from locust import task

from loadtests.llm import (
    LLMUser,
    Profile,
    Settings,
    expectation,
    group,
    no_failures,
    present,
    use_profile,
)
from loadtests.metrics import Sample


class FloodUser(LLMUser):
    fixed_count = 1
    group = "flood"
    key_label = "main"
    expects_429 = True
    honours_retry_after = False
    rpm_share = 3.0

    @task
    def flood(self) -> None:
        self.paced("chat", max_tokens=4, name="flood chat")


class SteadyUser(LLMUser):
    fixed_count = present("OP_ALT_API_KEY")
    group = "steady"
    key_label = "alt"
    rpm_share = 0.5

    @task
    def ask(self) -> None:
        self.paced(name="steady stream")


class ProUser(LLMUser):
    fixed_count = present("OP_PRO_API_KEY")
    group = "pro"
    key_label = "pro"
    rate = 1.0

    @task
    def ask(self) -> None:
        self.paced(name="pro stream")


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    flood = group(samples, "flood")
    results = [
        expectation(
            "key A is limited (429s)",
            any(s.status == 429 for s in flood),
            f"{sum(1 for s in flood if s.status == 429)} of {len(flood)}",
        )
    ]
    steady = group(samples, "steady")
    results.append(expectation("key B ran (needs OP_ALT_API_KEY)", bool(steady)))
    results += no_failures(steady, "key B") if steady else []
    pro = group(samples, "pro")
    results += no_failures(pro, "Pro key") if pro else []
    return results


use_profile(
    Profile(
        "key-isolation",
        expectations=expectations,
        slo_groups=("steady",),
        offered_rps=lambda settings: 0.5 * settings.rpm / settings.window,
    )
)
