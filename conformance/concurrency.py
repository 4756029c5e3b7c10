"""What one measurement of the concurrency cap (OP-RL-010) shows: a pure decision on its data.

The check holds the plan's cap of streams on the main key and sends one more request. Only the
server knows how many of the key's requests it counts as open, and that count is confounded by
what the run did before: a slot the server kept after a failed request turns the extra request
away too early, and a slot it gave back twice lets it through (LiteLLM gives back three for a
streamed request that fails after its retries: a 6th request served with 5 streams open, on a
cap that holds on a quiet key). So a served extra request is a FAIL only on a key whose recent
answers were not errors; otherwise the check measures once more after a window in which the run
left the key alone, and a server that keeps nothing longer than a window is then judged clean.
A refusal is the cap's only when it is not another limit's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from opconform.rate_headers import read_rate_headers
from opconform.ratelimit import about_tokens

Decision = Literal["pass", "fail", "again", "inconclusive"]


@dataclass(frozen=True)
class Measurement:
    cap: int
    plan: str
    still_open: bool  # every held stream was open until the extra request had its answer
    status: int | None  # the extra request's
    headers: Mapping[str, str]
    answer: str  # the extra request's status and body start, as the report quotes it
    # Why the server's count of the key's open requests may be off (Pacer.troubled), as it
    # stood before the streams were opened; None: the key's recent answers were no errors.
    troubled: str | None
    again: bool = False  # the measurement after a quiet window: no third one


def judge(m: Measurement) -> tuple[Decision, str]:
    """The decision and why: "again" asks for a new measurement after a quiet window."""
    if not m.still_open:
        return "inconclusive", (
            "the held streams ended on their own before the extra request was answered (the "
            "target's answers are short): no evidence about the cap either way"
        )
    if m.status == 429:
        other = _other_limit(m)
        if other is not None:
            return "inconclusive", (
                f"with {m.cap} streams open the next request got 429, but {other}: no evidence "
                "about the cap either way"
            )
        return "pass", f"with {m.cap} streams open the next request got 429"
    served = (
        f"with {m.cap} streams open (the {m.plan} plan's cap) the next request got {m.answer}, "
        "not 429"
    )
    if m.troubled is None:
        return "fail", served
    if not m.again:
        return "again", f"{served}; {m.troubled}: measuring again after a quiet window"
    return "inconclusive", (
        f"{served}, after a quiet window too, yet {m.troubled}: the server's count of open "
        "requests may still be off"
    )


def _other_limit(m: Measurement) -> str | None:
    """The 429 says it refused for another limit than the cap, else None."""
    info = read_rate_headers(m.headers)
    if info is not None and info.remaining == 0:
        return f"its {info.convention} Remaining is 0 (the requests/min window is spent)"
    if about_tokens(m.answer):
        return "its body speaks of a token quota"
    return None
