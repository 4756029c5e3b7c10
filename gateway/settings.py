"""Gateway configuration: plans, keys, models, latency, faults. Built-in defaults or a TOML file."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from opconform.config import read_toml
from opconform.contract import KEY_PREFIX, PLANS, WINDOW_SECONDS, Plan
from opconform.gateway.catalogue import Latency, MockModel, default_models


class ConfigError(ValueError):
    """A gateway configuration that cannot be used; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    secret: str
    plan: Plan
    # Which OP_* variable `--print-env` names it with: main, alt, pro, enterprise, restricted.
    role: str = ""
    denied_models: frozenset[str] = frozenset()


# The documented plans; every plan here states requests/min and concurrency (the limiter counts
# against them). Enterprise is "Custom": defaults high enough that a load test of the gateway
# itself never meets them.
DEFAULT_PLANS = {
    **PLANS,
    "enterprise": replace(PLANS["enterprise"], requests_per_min=1_000_000, concurrent=10_000),
}
# Unauthenticated answers count against a per-client bucket of the Free plan's size, so that a
# 401 carries X-RateLimit-* headers like every other answer.
ANONYMOUS_PLAN = replace(PLANS["free"], name="anonymous", tokens_per_day=None)
RESTRICTED_MODEL = "claude-opus-4"

# Test keys: they say so in their name, and they only ever open this mock gateway.
DEFAULT_KEYS = (
    ("op_sk_test_free_main", "free", "main", ()),
    ("op_sk_test_free_alt", "free", "alt", ()),
    ("op_sk_test_pro", "pro", "pro", ()),
    ("op_sk_test_enterprise", "enterprise", "enterprise", ()),
    ("op_sk_test_restricted", "free", "restricted", (RESTRICTED_MODEL,)),
)


@dataclass(frozen=True)
class GatewayConfig:
    plans: dict[str, Plan]
    keys: dict[str, ApiKey]
    models: dict[str, MockModel]
    restricted_model: str = RESTRICTED_MODEL
    # Test-only: a shorter requests/min window makes "wait Retry-After, then succeed" quick in
    # the project's own tests. Deployments use 60 s, as documented.
    window_seconds: int = int(WINDOW_SECONDS)
    faults: frozenset[str] = field(default_factory=frozenset)
    # Load-test ground truth: a JSON line per streamed event, timed as it is sent (timing.py).
    timing_log: Path | None = None
    # Every answer at most this many tokens, whatever the prompt: a short, fast target.
    answer_tokens: int | None = None

    def key_for_role(self, role: str) -> ApiKey | None:
        return next((k for k in self.keys.values() if k.role == role), None)

    def with_latency(self, latency: Latency) -> GatewayConfig:
        models = {mid: replace(m, latency=latency) for mid, m in self.models.items()}
        return replace(self, models=models)


def _plan_from_table(name: str, table: dict[str, Any], base: Plan | None) -> Plan:
    def limit(field_name: str, default: int | None) -> int | None:
        if field_name not in table:
            return default
        value = table[field_name]
        if value == "unlimited":
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(
                f"plans.{name}.{field_name} must be a positive integer or "
                f'"unlimited", not {value!r}'
            )
        return value

    rpm = limit("requests_per_min", base.requests_per_min if base else None)
    concurrent = limit("concurrent", base.concurrent if base else None)
    if rpm is None or concurrent is None:
        raise ConfigError(f"plans.{name} needs integer requests_per_min and concurrent")
    tokens = limit("tokens_per_day", base.tokens_per_day if base else None)
    return Plan(name, requests_per_min=rpm, tokens_per_day=tokens, concurrent=concurrent)


def default_config() -> GatewayConfig:
    plans = dict(DEFAULT_PLANS)
    keys = {
        secret: ApiKey(secret, plans[plan], role, frozenset(denied))
        for secret, plan, role, denied in DEFAULT_KEYS
    }
    models = {m.id: m for m in default_models()}
    return GatewayConfig(plans=plans, keys=keys, models=models)


def load_config(path: Path | None) -> GatewayConfig:
    """The built-in config, or the one in a TOML file (see gateway/example-config.toml)."""
    config = default_config()
    if path is None:
        return config
    data = read_toml(path, "gateway config")

    plans = dict(config.plans)
    for name, table in (data.get("plans") or {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"plans.{name} must be a table")
        plans[name] = _plan_from_table(name, table, plans.get(name))

    keys = config.keys
    if "keys" in data:
        keys = {}
        for index, entry in enumerate(data["keys"]):
            secret, plan_name = entry.get("key"), entry.get("plan")
            if not isinstance(secret, str) or not secret.startswith(KEY_PREFIX):
                raise ConfigError(f"keys[{index}].key must be a string starting with op_sk_")
            if plan_name not in plans:
                raise ConfigError(
                    f"keys[{index}].plan {plan_name!r} is not a plan ({', '.join(sorted(plans))})"
                )
            keys[secret] = ApiKey(
                secret,
                plans[plan_name],
                str(entry.get("role", "")),
                frozenset(entry.get("deny_models", ())),
            )
    restricted = data.get("restricted_model", config.restricted_model)
    window = data.get("window_seconds", config.window_seconds)
    if not isinstance(window, int) or window < 1:
        raise ConfigError("window_seconds must be a positive integer")
    return replace(
        config, plans=plans, keys=keys, restricted_model=restricted, window_seconds=window
    )
