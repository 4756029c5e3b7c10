"""rpm-burst: more requests per minute than the plan allows, on one key.

Users (one each): `polite` (main key, twice the limit, honours Retry-After), `abusive` (alt key,
three times the limit, ignores Retry-After; needs OP_ALT_API_KEY) and `bystander` (Pro key at
1 req/s; needs OP_PRO_API_KEY).
Expectations, per requests/min window that began fresh: 429s start exactly at the documented
limit (the onset count is reported per window); every 429 carries Retry-After and the error body;
the polite client gets through after waiting Retry-After; the abusive client stays refused until
the window resets; other keys are unharmed.
"""

from __future__ import annotations

import itertools
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


class BurstUser(LLMUser):
    abstract = True
    expects_429 = True
    rpm_share = 2.0

    @task
    def burst(self) -> None:
        sample = self.paced("chat", max_tokens=4, name=f"{self.group} chat")
        if sample is not None and sample.status == 429:
            self.after_429(sample)


class PoliteUser(BurstUser):
    fixed_count = 1
    group = "polite"
    key_label = "main"


class AbusiveUser(BurstUser):
    fixed_count = present("OP_ALT_API_KEY")
    group = "abusive"
    key_label = "alt"
    honours_retry_after = False
    rpm_share = 3.0


class BystanderUser(LLMUser):
    fixed_count = present("OP_PRO_API_KEY")
    group = "bystander"
    key_label = "pro"
    rate = 1.0

    @task
    def ask(self) -> None:
        self.paced("chat", max_tokens=4, name="bystander chat")


def windows(samples: list[Sample]) -> list[dict[str, Any]]:
    """Per requests/min window (by its Reset): how many requests passed before the first 429,
    and whether the window was seen from its start (its first answer had Remaining = Limit-1)."""
    by_reset: dict[int, list[Sample]] = {}
    for sample in samples:
        if sample.ratelimit_reset is not None:
            by_reset.setdefault(sample.ratelimit_reset, []).append(sample)
    rows = []
    for reset, members in sorted(by_reset.items()):
        first = members[0]
        fresh = (
            first.status == 200
            and first.ratelimit_limit is not None
            and first.ratelimit_remaining == first.ratelimit_limit - 1
        )
        statuses = [s.status for s in members]
        onset = statuses.index(429) if 429 in statuses else None
        passed_after = sum(1 for s in statuses[onset:] if s == 200) if onset is not None else 0
        rows.append(
            {
                "reset": reset,
                "fresh": fresh,
                "requests": len(members),
                "onset": onset,
                "limit": first.ratelimit_limit,
                "passed_after_onset": passed_after,
            }
        )
    return rows


def expectations(samples: list[Sample], settings: Settings) -> list[dict[str, Any]]:
    results = []
    for name in ("polite", "abusive"):
        members = group(samples, name)
        if not members:
            continue
        judged = [w for w in windows(members) if w["fresh"] and w["onset"] is not None]
        wrong = [w for w in judged if w["onset"] != settings.rpm]
        results.append(
            expectation(
                f"{name}: 429 starts at the documented limit of {settings.rpm}",
                bool(judged) and not wrong,
                f"onset per window: {[w['onset'] for w in judged]}"
                if judged
                else "no window was seen from start to 429: run longer",
            )
        )
        broken = [s for s in members if s.outcome == "broken_429"]
        results.append(
            expectation(
                f"{name}: every 429 has Retry-After and the error body",
                not broken,
                f"{len(broken)} without",
            )
        )
        unexpected = [s for s in members if s.outcome not in ("ok", "expected_429", "broken_429")]
        results.append(
            expectation(
                f"{name}: no other errors",
                not unexpected,
                f"{len(unexpected)}" + (f": {unexpected[0].detail}" if unexpected else ""),
            )
        )
    polite = group(samples, "polite")
    after_wait = [b for a, b in itertools.pairwise(polite) if a.status == 429]
    recovered = [s for s in after_wait if s.status == 200]
    results.append(
        expectation(
            "polite: after waiting Retry-After the next request succeeds",
            bool(after_wait) and len(recovered) == len(after_wait),
            f"{len(recovered)} of {len(after_wait)} waits were followed by a success",
        )
    )
    abusive = group(samples, "abusive")
    if abusive:
        leaks = [w for w in windows(abusive) if w["passed_after_onset"]]
        results.append(
            expectation(
                "abusive: keeps getting 429 until the window resets",
                not leaks,
                f"{len(leaks)} windows let requests through after the first 429",
            )
        )
    bystander = group(samples, "bystander")
    if bystander:
        results += no_failures(bystander, "bystander (Pro key)")
    return results


use_profile(
    Profile(
        "rpm-burst",
        expectations=expectations,
        slo_groups=("polite",),
        offered_rps=lambda settings: 2.0 * settings.rpm / settings.window,
        extra=lambda samples, settings: {
            "windows": {name: windows(group(samples, name)) for name in ("polite", "abusive")},
            "documented_limit": settings.rpm,
        },
    )
)
