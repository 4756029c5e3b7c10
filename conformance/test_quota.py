"""tokens/day on a Free key (opt-in: -m quota spends the key's whole daily budget)."""

from __future__ import annotations

import pytest

from opconform.client import ApiClient
from opconform.conformance import expect
from opconform.conformance.run import Check
from opconform.conformance.skips import disabled
from opconform.contract import WINDOW_SECONDS
from opconform.target import Target

pytestmark = pytest.mark.quota
requirement = pytest.mark.requirement

PROMPT_TOKENS = 20_000


@requirement("OP-RL-013")
def test_tokens_per_day_cutoff(api: ApiClient, model: str, target: Target, check: Check) -> None:
    limit = target.tokens_per_day
    if limit is None:
        disabled(f"the {target.plan} plan has no tokens/day limit")
    budget = limit + 2 * PROMPT_TOKENS
    if api.budget.limit - api.budget.spent < budget:
        disabled(f"needs --max-tokens-total of at least {budget + api.budget.spent}")
    body = expect.chat_request(model, "word " * PROMPT_TOKENS, max_tokens=8)
    used = 0
    for _ in range(limit // PROMPT_TOKENS + 3):
        exchange = api.chat(body, key="main", allow_429=True)
        if exchange.status == 429:
            expect.error_body(exchange)
            retry_after = exchange.header("retry-after") or ""
            if retry_after.isdigit() and int(retry_after) <= WINDOW_SECONDS and used < limit:
                # a requests/min window, not the daily budget: wait for the next one
                api.pacer.before("main", needed=2)
                continue
            assert used >= limit * 0.5, (
                f"cut off after {used} tokens, far below the documented "
                f"{limit:,} (was the key used earlier today?)"
            )
            if used < limit:
                check.warn(
                    f"cut off after {used:,} tokens, before the documented "
                    f"{limit:,}: the key may have been used earlier today"
                )
            return
        expect.status(exchange, 200)
        used += exchange.json()["usage"]["total_tokens"]
    pytest.fail(
        f"{used:,} tokens spent on a {target.plan} key without a 429; the plan allows "
        f"{limit:,} a day"
    )
