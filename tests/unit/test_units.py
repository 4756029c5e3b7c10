"""Units shared across opconform: redaction, config precedence, limits, mock generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from opconform.client import Budget, BudgetExhausted
from opconform.config import resolve
from opconform.exitcodes import UsageError
from opconform.gateway import mock
from opconform.gateway.limits import RateLimiter
from opconform.gateway.settings import DEFAULT_PLANS, ConfigError, load_config
from opconform.rate_headers import reset_in_seconds
from opconform.ratelimit import Pacer
from opconform.redact import Redactor
from opconform.target import Target, parse_slo


def test_redactor_hides_known_keys_their_suffix_and_anything_key_shaped() -> None:
    redactor = Redactor(["op_sk_test_free_main", "sk-other-secret-1"])
    text = "Bearer op_sk_test_free_main; test_free_main; sk-other-secret-1; op_sk_live_abc123"
    clean = redactor.text(text)
    assert "test_free_main" not in clean and "sk-other-secret-1" not in clean
    assert "op_sk_live_abc123" not in clean
    assert redactor.find_leaks(clean) == []
    assert redactor.find_leaks(text)


def test_config_precedence_cli_env_file(tmp_path: Path) -> None:
    file = tmp_path / "opconform.toml"
    file.write_text('base_url = "http://file/v1"\nplan = "pro"\nmodel_count = 4\n')
    values = resolve({"base_url": "http://cli/v1"}, env={"OP_PLAN": "free"}, config_file=file)
    assert values["base_url"] == "http://cli/v1"
    assert values["plan"] == "free"  # environment beats file
    assert values["model_count"] == 4  # file beats default


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="OP_PLAN"):
        resolve({}, env={"OP_PLAN": "gold"}, config_file=Path("/dev/null"))
    file = tmp_path / "bad.toml"
    file.write_text("colour = 1\n")
    with pytest.raises(UsageError, match="unknown setting"):
        resolve({}, env={}, config_file=file)
    with pytest.raises(UsageError, match="--api-key"):
        Target.from_values({"base_url": "http://x/v1"})
    with pytest.raises(UsageError, match="--latency-slo"):
        parse_slo(["ttft_p95=fast"])
    assert parse_slo(["ttft_p95=800ms", "ttfb_p50=1.5s"]) == {"ttft_p95": 0.8, "ttfb_p50": 1.5}


def test_limiter_window_remaining_reset_retry_after() -> None:
    now = [1000.25]
    limiter = RateLimiter(60, clock=lambda: now[0])
    free = DEFAULT_PLANS["free"]
    verdicts = [limiter.admit("k", free, takes_slot=False) for _ in range(60)]
    assert [v.remaining for v in verdicts[:3]] == [59, 58, 57] and verdicts[-1].remaining == 0
    assert {v.reset for v in verdicts} == {1060}
    refused = limiter.admit("k", free, takes_slot=False)
    assert not refused.allowed and refused.retry_after == 60  # ceil(1060 - 1000.25)
    assert limiter.admit("other", free, takes_slot=False).allowed  # per key
    now[0] = 1060.0
    assert limiter.admit("k", free, takes_slot=False).allowed


def test_limiter_concurrency_and_tokens_per_day() -> None:
    limiter = RateLimiter(60, clock=lambda: 5000.0)
    free = DEFAULT_PLANS["free"]
    for _ in range(5):
        assert limiter.admit("k", free, takes_slot=True).allowed
    assert limiter.admit("k", free, takes_slot=True).reason == "concurrent requests"
    limiter.release("k")
    assert limiter.admit("k", free, takes_slot=True).allowed
    limiter.record_tokens("j", 100_000)
    assert limiter.admit("j", free, takes_slot=False).reason == "tokens per day"


def test_mock_is_deterministic_and_counts() -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert mock.generate("m", messages, 0.7) == mock.generate("m", messages, 0.7)
    assert mock.generate("m", messages, 0.7) != mock.generate("other", messages, 0.7)
    counting = [{"role": "user", "content": "Count from 1 to 5"}]
    assert "".join(mock.generate("m", counting, None)) == "1\n2\n3\n4\n5"
    assert mock.prompt_tokens(messages) == mock.count_tokens(messages[0]["content"]) + 6


def test_gateway_config_file(tmp_path: Path) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(
        "[plans.enterprise]\nrequests_per_min = 5000\nconcurrent = 200\n"
        '[[keys]]\nkey = "op_sk_test_custom"\nplan = "enterprise"\nrole = "main"\n'
    )
    config = load_config(file)
    assert config.plans["enterprise"].requests_per_min == 5000
    assert list(config.keys) == ["op_sk_test_custom"]
    file.write_text('[[keys]]\nkey = "nope"\nplan = "free"\n')
    with pytest.raises(ConfigError, match="op_sk_"):
        load_config(file)


def test_reset_classification_budget_and_pacer() -> None:
    assert reset_in_seconds("1700000060", now=1700000000.0) == 60
    assert reset_in_seconds("42") == 42
    assert reset_in_seconds("soon") is None
    budget = Budget(100)
    budget.add(90)
    with pytest.raises(BudgetExhausted):
        budget.reserve(16)
    slept: list[float] = []
    pacer = Pacer(sleep=slept.append)
    pacer.observe("main", 200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "3"})
    pacer.before("main")
    assert slept and 2.5 < slept[0] <= 3.3


def test_example_gateway_config_loads() -> None:
    config = load_config(
        Path(__file__).resolve().parent.parent.parent / "gateway/example-config.toml"
    )
    assert config.plans["enterprise"].requests_per_min == 5000
    assert config.plans["free"].requests_per_min == 60
    restricted = config.key_for_role("restricted")
    assert restricted is not None and "claude-opus-4" in restricted.denied_models
