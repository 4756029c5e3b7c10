"""steady: load inside the plan's limits; measures latency.

Closed loop by default: 80% of the main key's requests/min (at most 5 req/s per user), spread
over the users, each starting at its own phase. With `--arrival constant|poisson --rate R`
arrivals are open loop at R requests/s, whatever the answers take.
Profile options: rate=REQ_PER_S (total, closed loop).
Expectations: no 429, no errors or broken streams, rate-limit headers on every response. With
--honour-retry-after the client waits as Retry-After says, a correct 429 is no failure, and the
report gives goodput (requests/s that met --slo) apart from the 429 rate.
"""

from __future__ import annotations

from typing import Any

from locust import task

from opconform.loadtests.llm import (
    LLMUser,
    Profile,
    Sample,
    Settings,
    group,
    no_failures,
    use_profile,
)


def offered(settings: Settings) -> float:
    if settings.arrival != "closed" and settings.rate:
        return settings.rate
    given = settings.option("rate", 0)
    if given:
        return given
    return min(0.8 * settings.limit("rpm") / settings.window, 5.0 * settings.users)


class SteadyUser(LLMUser):
    group = "main"
    honours_retry_after = False  # inside the limits a 429 is a finding, not a signal

    def on_start(self) -> None:
        super().on_start()
        self.expects_429 = bool(self.settings.honour_retry_after)
        self.rate = offered(self.settings) / self.settings.users

    @task
    def ask(self) -> None:
        if self.settings.arrival != "closed":
            assert self.rate is not None
            self.open_loop(self.rate)
        else:
            self.paced()


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    main = group(samples, "main")
    results = no_failures(main, "main key")
    if settings.honour_retry_after:  # over quota on purpose: 429s are the quota at work
        results = [r for r in results if not r["name"].endswith("no 429")]
    return results


use_profile(
    Profile(
        "steady",
        duration="20s",
        needs_limits=("rpm",),
        rate_replaces_rpm=True,
        open_loop="rate",
        users="closed-loop",
        expectations=expectations,
        target_rps=offered,
    )
)
