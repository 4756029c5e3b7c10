"""ramp: step concurrency up until a latency or error threshold breaks; reports the capacity.

A LoadTestShape adds `step_users` closed-loop streaming users every `step_seconds` up to
`max_users` (profile options). After each step it judges that step's samples against
ttft_p95 and error_rate from --slo (defaults 1s and 0.01); the first step that breaks ends the
run, and the step before it is the capacity. Use a key whose plan limits are far above the load
(OP_API_KEY with --op-plan enterprise, as `opconform load` does against the embedded gateway).
"""

from __future__ import annotations

import time
from typing import Any

from locust import LoadTestShape, task

from opconform.loadtests.llm import (
    RUN,
    LLMUser,
    Profile,
    Sample,
    Settings,
    expectation,
    use_profile,
)
from opconform.metrics import summarise

STEPS: list[dict[str, Any]] = []


class RampUser(LLMUser):
    group = "main"

    @task
    def ask(self) -> None:
        if self.within_ceilings():
            self.stream()


def _thresholds(settings: Settings) -> tuple[float, float]:
    return settings.slo.get("ttft_p95", 1.0), settings.slo.get("error_rate", 0.01)


class RampShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.judged = 0
        self.broken = False
        self.step_started = time.time()

    def tick(self) -> tuple[int, float] | None:
        settings = RUN.settings
        if settings is None:
            return (1, 1.0)
        step_users = int(settings.option("step_users", 2))
        step_seconds = settings.option("step_seconds", 5)
        max_users = int(settings.option("max_users", 40))
        step = int(self.get_run_time() // step_seconds)
        if step > self.judged:
            self._judge(settings, step_users * self.judged + step_users)
            self.judged = step
            self.step_started = time.time()
        if self.broken or step_users * (step + 1) > max_users:
            return None
        return (step_users * (step + 1), float(step_users))

    def _judge(self, settings: Settings, users: int) -> None:
        window = [s for s in RUN.samples if s.sent >= self.step_started]
        summary = summarise(window)
        ttft_limit, error_limit = _thresholds(settings)
        ttft = (summary.get("ttft") or {}).get("p95")
        broken = bool(window) and (
            summary["error_rate"] > error_limit or (ttft is not None and ttft > ttft_limit)
        )
        STEPS.append(
            {
                "users": users,
                "requests": len(window),
                "achieved_rps": summary.get("achieved_rps"),
                "ttft_p95": ttft,
                "error_rate": summary.get("error_rate"),
                "broken": broken,
            }
        )
        self.broken = broken


def capacity(samples: list[Sample], settings: Settings) -> dict[str, Any]:
    good = [s for s in STEPS if not s["broken"]]
    return {
        "steps": STEPS,
        "capacity": good[-1] if good else None,
        "broke_at": next((s for s in STEPS if s["broken"]), None),
        "thresholds": dict(zip(("ttft_p95", "error_rate"), _thresholds(settings), strict=True)),
    }


use_profile(
    Profile(
        "ramp",
        duration="60s",
        capacity=True,
        expectations=lambda samples, settings: [
            expectation(
                "at least one step was measured",
                bool(STEPS),
                f"{len(STEPS)} steps",
                needs="step long enough to measure",
                evidence=bool(STEPS),
            )
        ],
        extra=capacity,
        judges_slo=False,
    )
)
