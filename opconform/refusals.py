"""What a 429 the run did not ask for means: judged when it arrives, from the pacer's record of
what the run sent (opconform/ratelimit.py), before the evidence and the invariants see it.

Explained by the plan: the run waits for the reset and sends once more. Not explained (a limit
below the plan's, a window the run's keys share, a stated limit below the plan, a window that
did not reset when it said it would): the check that met it gets UnexpectedRateLimit. A reset
beyond the run's reach: LimitSpent.
"""

from __future__ import annotations

from opconform.exchange import Exchange
from opconform.rate_headers import read_rate_headers, retry_after_seconds
from opconform.ratelimit import Pacer, PacingStopped, about_tokens


class UnexpectedRateLimit(Exception):
    """A 429 in a check that is not about rate limits, that waiting for the window did not
    cure (or that is not the requests/min limit)."""

    def __init__(self, exchange: Exchange) -> None:
        why = exchange.limit_note or "the key's limits were hit by something other than this check"
        super().__init__(
            f"429 from {exchange.method} {exchange.path} (key {exchange.key_label}; "
            f"Retry-After {exchange.header('retry-after')!r}): {why}"
        )
        self.exchange = exchange


class LimitSpent(Exception):
    """A 429 for a limit the plan explains whose reset lies beyond the run (tokens/day, or a
    window the deadline does not leave time to wait for): not sent, and no failure."""


def is_unexplained(exchange: Exchange) -> bool:
    """The judgement says no waiting cures this 429."""
    return (
        exchange.below_plan
        or exchange.shared_limit
        or exchange.stated_below_plan
        or exchange.window_not_reset
    )


def judge_429(pacer: Pacer, label: str, exchange: Exchange) -> None:
    """Say whether the plan explains a 429: `limit_note` and the flags on the exchange."""
    info = read_rate_headers(exchange.headers)
    if _about_tokens(exchange):
        exchange.limit_note = "a tokens/day (quota) refusal"
        return
    if info is not None and info.remaining is not None and info.remaining > 0:
        exchange.limit_note = (
            f"not the requests/min limit ({info.convention} Remaining {info.remaining})"
        )
        return
    stated = pacer.stated_below_plan(label)
    if stated is not None:
        exchange.stated_below_plan = True
        exchange.limit_note = stated
        return
    not_reset = pacer.not_reset(label, exchange.headers, exchange.elapsed)
    if not_reset is not None:
        exchange.window_not_reset = True
        exchange.limit_note = not_reset
        return
    explained = pacer.explains_429(label)
    if explained is not None:
        exchange.limit_note = f"the plan explains it: {explained}"
        return
    shared = pacer.shared_window(label)
    if shared is not None:
        exchange.shared_limit = True
        exchange.limit_note = shared
        return
    exchange.below_plan = True
    exchange.limit_note = (
        f"429 after {pacer.recent(label) - 1} requests on the {label} key in a window "
        f"the run saw from its start; {pacer.describe(label)} allows "
        f"{pacer.limit_of(label)}"
    )


def wait_out(pacer: Pacer, label: str, exchange: Exchange) -> None:
    """Wait as a 429 the plan explains asks; LimitSpent when its reset is out of reach."""
    info = read_rate_headers(exchange.headers)
    remaining = info.remaining if info is not None else None
    if _about_tokens(exchange) or (remaining is not None and remaining > 0):
        wait = retry_after_seconds(exchange.headers)
        if _about_tokens(exchange) or (wait is not None and wait > pacer.window):
            raise LimitSpent(
                f"{exchange.describe()} for a limit other than requests/min "
                f"(Retry-After {exchange.header('retry-after')!r}): the run cannot wait "
                "for it"
            )
    try:
        pacer.wait_out_429(label, exchange.headers)
    except PacingStopped as exc:
        raise LimitSpent(str(exc)) from None


def _about_tokens(exchange: Exchange) -> bool:
    return about_tokens(exchange.body[:400].decode("utf-8", errors="replace"))
