"""quota (opt-in): burns a key's tokens/day and reports where the cutoff came.

One user sends completions with a ~20,000-token prompt until it is refused with a Retry-After
longer than the requests/min window (the daily budget, not the minute). It spends the key's whole
day: use a key you can spare. Profile options: prompt_words=N (default 20000).
Expectations: a cutoff happened, no earlier than the plan's documented tokens/day (tokens counted
from usage, so a key used earlier today is cut off early and the detail says so) and no later
than one request past it. A run that ended before spending the documented budget is
inconclusive.
"""

from __future__ import annotations

from typing import Any

from locust import task

from opconform.contract import PLANS, WINDOW_SECONDS
from opconform.loadtests.llm import (
    LLMUser,
    Profile,
    Sample,
    Settings,
    expectation,
    group,
    stop_run,
    use_profile,
)
from opconform.rate_headers import retry_after_seconds


def documented(settings: Settings) -> int | None:
    return PLANS[settings.plan].tokens_per_day


class QuotaUser(LLMUser):
    fixed_count = 1
    group = "main"
    expects_429 = True

    @task
    def burn(self) -> None:
        if not self.within_ceilings():
            return
        words = int(self.settings.option("prompt_words", 20_000))
        sample = self.chat(prompt="word " * words, max_tokens=8)
        if sample.status == 429:
            retry = retry_after_seconds({"retry-after": sample.retry_after}) or 0
            if retry > self.settings.window:  # the daily budget, not the minute: done
                stop_run()
                return
            self.after_429(sample)


def cutoff(samples: list[Sample], window: float) -> dict[str, Any]:
    spent = 0
    for sample in samples:
        if sample.status == 200:
            spent += sample.total_tokens
        elif sample.status == 429 and (
            retry_after_seconds({"retry-after": sample.retry_after}) or 0
        ) > max(window, WINDOW_SECONDS):
            return {"cut_off": True, "tokens_before_cutoff": spent}
    return {"cut_off": False, "tokens_spent": spent}


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    main = group(samples, "main")
    budget = documented(settings)
    if budget is None:
        return [
            expectation(
                "tokens/day cutoff",
                False,
                f"the {settings.plan} plan has no documented tokens/day",
                needs="plan with a documented tokens/day",
                evidence=False,
            )
        ]
    result = cutoff(main, settings.window)
    largest = max((s.total_tokens for s in main), default=0)
    if not result["cut_off"]:
        spent = result["tokens_spent"]
        return [
            expectation(
                "tokens/day cutoff",
                False,
                f"{spent:,} tokens spent without a cutoff (documented {budget:,})",
                needs=f"run that spent more than the documented {budget:,} tokens",
                evidence=spent > budget + largest,
            )
        ]
    spent = result["tokens_before_cutoff"]
    return [
        expectation(
            "tokens/day cutoff not later than documented",
            spent <= budget + largest,
            f"cut off after {spent:,} tokens (documented {budget:,})",
        ),
        expectation(
            "tokens/day cutoff not earlier than documented",
            spent >= budget,
            f"cut off after {spent:,} tokens: was the key used earlier today?",
        ),
    ]


use_profile(
    Profile(
        "quota",
        duration="180s",
        expectations=expectations,
        extra=lambda samples, settings: {
            **cutoff(group(samples, "main"), settings.window),
            "documented": documented(settings),
        },
    )
)
