"""The rate-limit header conventions a target may speak, read into one `RateInfo`: the
contract's `X-RateLimit-Limit/-Remaining/-Reset`, OpenAI's per-resource names (reset as a duration
such as "6m0s"), the IETF httpapi draft's structured fields, and `Retry-After` (seconds or an HTTP
date) or `retry-after-ms` on a 429. The pacer (ratelimit.py) and the checks read them here.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opconform.contract import RATE_HEADERS

CONTRACT = "X-RateLimit-*"
OPENAI = "OpenAI's x-ratelimit-*-requests"
IETF = "the IETF draft's RateLimit/RateLimit-Policy"
OPENAI_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


@dataclass(frozen=True)
class RateInfo:
    """What a response says about its key's request limit, in whichever convention."""

    convention: str  # CONTRACT, OPENAI or IETF
    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None  # from the moment the response was read

    def mapped(self) -> str:
        """What the contract's headers would have said."""
        parts = [
            f"X-RateLimit-Limit {self.limit}" if self.limit is not None else None,
            f"X-RateLimit-Remaining {self.remaining}" if self.remaining is not None else None,
            f"X-RateLimit-Reset in {self.reset_seconds:g}s"
            if self.reset_seconds is not None
            else None,
        ]
        return ", ".join(part for part in parts if part) or "nothing usable"


EPOCH_AFTER = 1e9  # a Reset above this is a Unix time (2001 on), below it seconds from now


def reset_in_seconds(value: str, now: float | None = None) -> float | None:
    """X-RateLimit-Reset as seconds from now: epoch seconds (GitHub's convention) or a delta
    (early IETF drafts). None if it is neither a number nor plausible."""
    try:
        number = float(value)
    except ValueError:
        return None
    now = time.time() if now is None else now
    if number > EPOCH_AFTER:
        return max(0.0, number - now)
    return max(0.0, number)


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_GO_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(value: str) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "12ms", "1h2m3.5s"); a bare number is seconds."""
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def _integer(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() else None


def _structured_params(value: str) -> list[dict[str, str]]:
    """An IETF structured-field list ('"permin";q=60;w=60, "day";q=1000') as parameter maps."""
    items = []
    for member in value.split(","):
        params = {}
        for part in member.split(";")[1:]:
            name, _, raw = part.strip().partition("=")
            params[name.strip().lower()] = raw.strip().strip('"')
        items.append(params)
    return items


def read_rate_headers(headers: Mapping[str, str], now: float | None = None) -> RateInfo | None:
    """The first convention present, in the contract's order of preference. Header names must
    be lower case (the client stores them so)."""
    if any(name in headers for name in RATE_HEADERS):
        reset = headers.get("x-ratelimit-reset")
        return RateInfo(
            CONTRACT,
            _integer(headers.get("x-ratelimit-limit")),
            _integer(headers.get("x-ratelimit-remaining")),
            reset_in_seconds(reset, now) if reset else None,
        )
    if any(name in headers for name in OPENAI_HEADERS):
        reset = headers.get("x-ratelimit-reset-requests")
        return RateInfo(
            OPENAI,
            _integer(headers.get("x-ratelimit-limit-requests")),
            _integer(headers.get("x-ratelimit-remaining-requests")),
            duration_seconds(reset) if reset else None,
        )
    state = headers.get("ratelimit")
    if state is not None or "ratelimit-policy" in headers:
        policies = _structured_params(headers.get("ratelimit-policy", ""))
        current = _structured_params(state or "")
        quota = _integer(policies[0].get("q")) if policies else None
        remaining = _integer(current[0].get("r")) if current else None
        until = _integer(current[0].get("t")) if current else None
        return RateInfo(IETF, quota, remaining, float(until) if until is not None else None)
    return None


def retry_after_seconds(headers: Mapping[str, Any], now: float | None = None) -> float | None:
    """The wait a 429 asks for, as the SDKs read it: `retry-after-ms`, then `Retry-After` in
    seconds (decimals allowed) or as an HTTP date. None when absent or unreadable. The suite's
    client and the load tester both read it here."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def other_convention(headers: Mapping[str, str]) -> str | None:
    """For a check of the contract's headers that failed: the convention the target speaks
    instead, and what it would map to; None when it sends none."""
    info = read_rate_headers(headers)
    if info is None or info.convention == CONTRACT:
        return None
    return f"found {info.convention} instead ({info.mapped()})"


def epoch_reset(headers: Mapping[str, str]) -> float | None:
    """The contract's X-RateLimit-Reset when it is a Unix time (GitHub's convention)."""
    try:
        value = float(headers.get("x-ratelimit-reset") or "")
    except ValueError:
        return None
    return value if value > EPOCH_AFTER else None


def relative_reset(headers: Mapping[str, str]) -> float | None:
    """A reset stated as seconds from now (a delta Reset, OpenAI's durations, the IETF draft's
    t=): no clock of the target's in it."""
    if epoch_reset(headers) is not None:
        return None
    info = read_rate_headers(headers)
    return info.reset_seconds if info is not None else None
