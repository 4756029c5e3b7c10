"""quota (opt-in): burns a Free key's tokens/day and reports where the cutoff came.

One user sends completions with a ~20,000-token prompt until it is refused with a Retry-After
longer than the requests/min window (the daily budget, not the minute). It spends the key's whole
day: use a key you can spare. Profile options: prompt_words=N (default 20000).
Expectations: a cutoff happened, no earlier than the documented 100,000 tokens (tokens counted
from usage, so a key used earlier today is cut off early and the detail says so) and no later
than one request past it.
"""

from __future__ import annotations

from typing import Any

from locust import task

from loadtests.llm import LLMUser, Profile, Settings, expectation, group, option, use_profile
from loadtests.metrics import Sample

DOCUMENTED_TOKENS_PER_DAY = 100_000


class QuotaUser(LLMUser):
    fixed_count = 1
    group = "main"
    expects_429 = True

    @task
    def burn(self) -> None:
        if not self.within_ceilings():
            return
        words = int(option(self.settings, "prompt_words", 20_000))
        sample = self.chat(prompt="word " * words, max_tokens=8)
        if sample.status == 429:
            retry_after = sample.retry_after or ""
            retry = int(retry_after) if retry_after.isdigit() else 0
            if retry > self.settings.window:  # the daily budget, not the minute: done
                self.stop_run()
                return
            self.after_429(sample)


def cutoff(samples: list[Sample]) -> dict[str, Any]:
    spent = 0
    for sample in samples:
        if sample.status == 200:
            spent += sample.total_tokens
        elif (
            sample.status == 429
            and (sample.retry_after or "0").isdigit()
            and int(sample.retry_after or 0) > 60
        ):
            return {"cut_off": True, "tokens_before_cutoff": spent}
    return {"cut_off": False, "tokens_spent": spent}


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    main = group(samples, "main")
    result = cutoff(main)
    largest = max((s.total_tokens for s in main), default=0)
    if not result["cut_off"]:
        return [
            expectation(
                "tokens/day cutoff",
                False,
                f"{result['tokens_spent']:,} tokens spent without a cutoff",
            )
        ]
    spent = result["tokens_before_cutoff"]
    return [
        expectation(
            "tokens/day cutoff not later than documented",
            spent <= DOCUMENTED_TOKENS_PER_DAY + largest,
            f"cut off after {spent:,} tokens (documented {DOCUMENTED_TOKENS_PER_DAY:,})",
        ),
        expectation(
            "tokens/day cutoff not earlier than documented",
            spent >= DOCUMENTED_TOKENS_PER_DAY,
            f"cut off after {spent:,} tokens: was the key used earlier today?",
        ),
    ]


use_profile(
    Profile(
        "quota",
        expectations=expectations,
        slo_groups=("main",),
        extra=lambda samples, settings: {
            **cutoff(group(samples, "main")),
            "documented": DOCUMENTED_TOKENS_PER_DAY,
        },
    )
)
