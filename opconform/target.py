"""The resolved target of a run: where it is, as whom, what to check, how long to wait. Built
from the run's resolved options (opconform.config.resolve) by `Target.from_values`, once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opconform import slo as slo_grammar
from opconform.config import OPTION_BY_NAME, stated_limits
from opconform.contract import IDENTITY_BY_LABEL, WINDOW_SECONDS
from opconform.exitcodes import UsageError
from opconform.timeouts import Timeouts
from opconform.transport import TransportSettings


def parse_slo(items: list[str] | None) -> dict[str, float]:
    """ "ttft_p95=800ms" -> {"ttft_p95": 0.8} (seconds); the grammar is opconform.slo's."""
    return slo_grammar.parse_slo(items, what="--latency-slo")


def _positive(values: Mapping[str, Any], name: str) -> Any:
    """An option's resolved value, else its one declared default; zero is refused here rather
    than silently replaced (a `--model-count 0` must not become 2)."""
    value = values.get(name)
    if value is None:
        value = OPTION_BY_NAME[name].default
    if not value:
        raise UsageError(f"{OPTION_BY_NAME[name].flag} must be more than zero")
    return value


def timeouts_of(values: Mapping[str, Any]) -> Timeouts:
    """The deadlines the resolved options state: the one reading of --connect-timeout,
    --read-timeout and --request-timeout, for a run's Target and for each load process (an
    option left out keeps its default; zero is refused)."""
    return Timeouts(
        connect=_positive(values, "connect_timeout"),
        read=_positive(values, "read_timeout"),
        request=_positive(values, "request_timeout"),
    )


@dataclass(frozen=True)
class Target:
    """A resolved target: where, as whom, what to check, how long to wait."""

    base_url: str
    keys: dict[str, str | None]  # main, alt, pro, restricted
    plan: str
    requests_per_min: int | None
    tokens_per_day: int | None
    concurrent: int | None
    restricted_model: str | None
    models: list[str] | None
    model_count: int
    all_models: bool
    max_tokens_total: int
    deterministic: bool
    upstream_error_model: str | None
    unavailable_model: str | None
    midstream_error_model: str | None
    timeouts: Timeouts  # every client of the run takes its deadlines from this one object
    deadline: float
    samples: int
    window_seconds: float = WINDOW_SECONDS
    latency_slo: dict[str, float] = field(default_factory=dict)
    embedded: bool = False
    transport: TransportSettings = field(default_factory=TransportSettings)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, embedded: bool = False) -> Target:
        base_url = values.get("base_url")
        if not base_url:
            raise UsageError(
                "no target: give --base-url (or OP_BASE_URL), or run without it "
                "to use the embedded gateway"
            )
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise UsageError(f"--base-url must be an http(s) URL, not {base_url!r}")
        if not values.get("api_key"):
            raise UsageError("--api-key (or OP_API_KEY) is required for a remote target")
        transport = TransportSettings.from_values(values)
        if embedded:  # opconform's own loopback gateway: never through a user's proxy
            transport = transport.without_env_proxies()
        plan = values.get("plan") or "free"
        limits = stated_limits(values)
        return cls(
            base_url=base_url.rstrip("/"),
            keys={
                label: values.get(IDENTITY_BY_LABEL[label].option)
                for label in ("main", "alt", "pro", "restricted")
            },
            plan=plan,
            requests_per_min=limits.requests_per_min,
            tokens_per_day=limits.tokens_per_day,
            concurrent=limits.concurrent,
            restricted_model=values.get("restricted_model"),
            models=values.get("models") or None,
            model_count=_positive(values, "model_count"),
            all_models=bool(values.get("all_models")),
            max_tokens_total=_positive(values, "max_tokens_total"),
            deterministic=bool(values.get("deterministic")),
            upstream_error_model=values.get("upstream_error_model"),
            unavailable_model=values.get("unavailable_model"),
            midstream_error_model=values.get("midstream_error_model"),
            timeouts=timeouts_of(values),
            latency_slo=parse_slo(values.get("latency_slo")),
            deadline=_positive(values, "deadline"),
            samples=_positive(values, "samples"),
            window_seconds=_positive(values, "window_seconds"),
            embedded=embedded,
            transport=transport,
        )

    def secrets(self) -> list[str]:
        """Every value a report must never show: keys and secret header values."""
        return [key for key in self.keys.values() if key] + self.transport.secret_values()

    def describe(self) -> dict[str, Any]:
        """What a report may say about the target: never a key, only which identities exist."""
        return {
            "base_url": self.base_url,
            "embedded": self.embedded,
            "plan": self.plan,
            "identities": sorted(label for label, key in self.keys.items() if key),
            "requests_per_min": self.requests_per_min,
            "concurrent": self.concurrent,
            "tokens_per_day": self.tokens_per_day,
            "transport": self.transport.describe(),
        }
