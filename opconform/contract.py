"""The facts of the contract that every command shares, declared once.

The plans and their documented limits, the identities a run may carry and the environment
variables that name them, the rate-limit header names, the duration grammar and the prompts the
suite and the load profiles send. The gateway, the suite and the load tester import these; none
of them repeats a figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opconform.exitcodes import UsageError

KEY_PREFIX = "op_sk_"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@dataclass(frozen=True)
class Plan:
    """A plan and its limits; None means "Unlimited" or, for Enterprise, "Custom" (the user
    states the figure, see `--enterprise-*`; the reference gateway configures its own)."""

    name: str
    requests_per_min: int | None
    tokens_per_day: int | None
    concurrent: int | None


# The reference's Rate Limits table.
PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan("free", requests_per_min=60, tokens_per_day=100_000, concurrent=5),
        Plan("pro", requests_per_min=600, tokens_per_day=None, concurrent=50),
        Plan("enterprise", requests_per_min=None, tokens_per_day=None, concurrent=None),
    )
}
PLAN_NAMES = tuple(PLANS)
WINDOW_SECONDS = 60.0  # "Requests / min"


@dataclass(frozen=True)
class Identity:
    """A key a run may hold: its label in evidence and the variable that carries it."""

    label: str
    env: str
    option: str  # attribute name of the option (flag: --api-key, ...)
    used_for: str


IDENTITIES: tuple[Identity, ...] = (
    Identity("main", "OP_API_KEY", "api_key", "auth and the plan's limits"),
    Identity("alt", "OP_ALT_API_KEY", "alt_api_key", "a second key of the same plan"),
    Identity("pro", "OP_PRO_API_KEY", "pro_api_key", "a Pro key for bulk checks"),
    Identity("restricted", "OP_RESTRICTED_API_KEY", "restricted_api_key", "a key denied one model"),
    Identity("enterprise", "OP_ENTERPRISE_API_KEY", "enterprise_api_key", "an Enterprise key"),
)
IDENTITY_BY_LABEL = {identity.label: identity for identity in IDENTITIES}
KEY_VARIABLES = {identity.label: identity.env for identity in IDENTITIES}

# Prompts that any model answers: a short one, and one whose answer is long (the mock counts;
# a real model writes at length), always with max_tokens to bound the answer.
SHORT_PROMPT = "Write a haiku about APIs."
# Longer than any small max_tokens, yet short enough that a target which ignores max_tokens
# still answers within the read timeout (a cut answer is judged, not a timeout).
COUNTING_PROMPT = "Count from 1 to 200, one number per line."
LONG_PROMPT = "Count from 1 to 20000, one number per line."  # holds a stream open


# ---------------------------------------------------------------------------- durations
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, what: str = "duration", default_unit: str | None = "s") -> float:
    """ "800ms" -> 0.8, "2m" -> 120.0, "1.5" -> 1.5 (seconds, or `default_unit`; with None a
    bare number is refused). UsageError names `what`."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"{what}: expected a duration like 800ms, 30s, 5m or 1h, not {text!r}")
    number, unit = match.group(1), match.group(2) or default_unit
    if unit is None:
        raise UsageError(f"{what}: {number} has no unit; write {number}ms or {number}s")
    return float(number) * _UNIT_SECONDS[unit]
