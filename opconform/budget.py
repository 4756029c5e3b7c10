"""--max-tokens-total: what a request may spend, and what the run has spent, from `usage`."""

from __future__ import annotations

from typing import Any

from opconform.exchange import Exchange


class BudgetExhausted(Exception):
    """The run's --max-tokens-total would be exceeded by another completion."""


class Budget:
    """Tokens spent so far, from usage, across the whole run."""

    def __init__(self, max_tokens_total: int) -> None:
        self.limit = max_tokens_total
        self.spent = 0

    def reserve(self, max_tokens: int) -> None:
        if self.spent + max_tokens > self.limit:
            raise BudgetExhausted(
                f"token budget spent: {self.spent} of --max-tokens-total {self.limit}"
            )

    def add(self, tokens: int) -> None:
        self.spent += tokens

    def account(self, exchange: Exchange) -> None:
        """Add what a finished exchange spent (nothing for a refusal)."""
        self.add(tokens_spent(exchange))


def max_tokens_of(body: Any) -> int:
    """What a request may spend: its max_tokens when that is a sane number (bodies of the
    validation checks may carry anything there)."""
    value = body.get("max_tokens") if isinstance(body, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**7:
        return value
    return 16


def tokens_spent(exchange: Exchange) -> int:
    """usage.total_tokens of a 200 answer; a stream without a usage chunk counts its events
    (approximately one token each); 0 when nothing says."""
    if exchange.status != 200:
        return 0
    usage = None
    if exchange.events is not None:
        for payload in exchange.json_events(skip_broken=True):
            if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                usage = payload["usage"]
        if usage is None:
            return len(exchange.events)
    elif exchange.content_type == "application/json":
        try:
            payload = exchange.json()
        except ValueError:
            return 0
        usage = payload.get("usage") if isinstance(payload, dict) else None
    if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
        return int(usage["total_tokens"])
    return 0
