"""steady: load inside the plan's limits; measures latency.

Rate: 80% of the main key's requests/min (at most 5 req/s per user), spread over the users;
users should stay below the plan's concurrency cap (`opconform load` picks them).
Profile options: rate=REQ_PER_S (total).
Expectations: no 429, no errors or broken streams, rate-limit headers on every response.
"""

from __future__ import annotations

from locust import task

from loadtests.llm import LLMUser, Profile, Settings, group, no_failures, option, use_profile


def offered(settings: Settings) -> float:
    default = min(0.8 * settings.rpm / settings.window, 5.0 * settings.users)
    return option(settings, "rate", default)


class SteadyUser(LLMUser):
    group = "main"

    def on_start(self) -> None:
        super().on_start()
        self.rate = offered(self.settings) / self.settings.users

    @task
    def ask(self) -> None:
        self.paced()


use_profile(
    Profile(
        "steady",
        expectations=lambda samples, settings: no_failures(group(samples, "main"), "main key"),
        slo_groups=("main",),
        offered_rps=offered,
    )
)
