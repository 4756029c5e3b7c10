"""The mock model catalogue: 50+ models from 9 providers, each with a latency profile."""

from __future__ import annotations

from dataclasses import dataclass

CREATED = 1700000000


@dataclass(frozen=True)
class Latency:
    """Ground truth for load tests: time to first token, time per output token, uniform jitter."""

    ttft_ms: float
    tpot_ms: float
    jitter_ms: float = 0.0


@dataclass(frozen=True)
class MockModel:
    id: str
    owned_by: str
    latency: Latency
    max_output_tokens: int = 4096
    # Special test models (not listed): "upstream_error" -> 502, "unavailable" -> 503,
    # "midstream_error" -> a stream that fails part-way.
    behaviour: str = "normal"
    listed: bool = True


# Latencies are scaled down from real providers (roughly 1/20) so that conformance runs are fast;
# `opconform serve --ttft-ms/--tpot-ms/--jitter-ms` overrides them for load-test ground truth.
_FAST = Latency(ttft_ms=4, tpot_ms=0.5)
_MID = Latency(ttft_ms=8, tpot_ms=1.0)
_SLOW = Latency(ttft_ms=15, tpot_ms=2.0)

_PROVIDERS: dict[str, list[tuple[str, Latency]]] = {
    "openai": [
        ("gpt-4o", _MID),
        ("gpt-4o-mini", _FAST),
        ("gpt-4.1", _MID),
        ("gpt-4.1-mini", _FAST),
        ("gpt-4.1-nano", _FAST),
        ("o3", _SLOW),
        ("o3-mini", _MID),
        ("o4-mini", _MID),
        ("gpt-4-turbo", _MID),
    ],
    "anthropic": [
        ("claude-sonnet-4", _MID),
        ("claude-opus-4", _SLOW),
        ("claude-3-7-sonnet", _MID),
        ("claude-3-5-sonnet", _MID),
        ("claude-3-5-haiku", _FAST),
        ("claude-3-haiku", _FAST),
    ],
    "google": [
        ("gemini-2.5-pro", _SLOW),
        ("gemini-2.5-flash", _FAST),
        ("gemini-2.0-flash", _FAST),
        ("gemini-2.0-flash-lite", _FAST),
        ("gemini-1.5-pro", _MID),
        ("gemini-1.5-flash", _FAST),
    ],
    "meta": [
        ("llama-4-maverick", _MID),
        ("llama-4-scout", _FAST),
        ("llama-3.3-70b-instruct", _MID),
        ("llama-3.1-405b-instruct", _SLOW),
        ("llama-3.1-8b-instruct", _FAST),
        ("llama-3.2-3b-instruct", _FAST),
    ],
    "mistral": [
        ("mistral-large", _MID),
        ("mistral-medium", _MID),
        ("mistral-small", _FAST),
        ("codestral", _FAST),
        ("ministral-8b", _FAST),
        ("pixtral-large", _MID),
    ],
    "cohere": [
        ("command-a", _MID),
        ("command-r-plus", _MID),
        ("command-r", _FAST),
        ("command-r7b", _FAST),
    ],
    "deepseek": [
        ("deepseek-v3", _MID),
        ("deepseek-r1", _SLOW),
        ("deepseek-coder-v2", _MID),
        ("deepseek-r1-distill-llama-70b", _MID),
    ],
    "xai": [
        ("grok-3", _MID),
        ("grok-3-mini", _FAST),
        ("grok-4", _SLOW),
        ("grok-2", _MID),
    ],
    "alibaba": [
        ("qwen3-235b-a22b", _SLOW),
        ("qwen3-32b", _MID),
        ("qwen-2.5-72b-instruct", _MID),
        ("qwen-2.5-coder-32b", _MID),
        ("qwen-max", _MID),
        ("qwq-32b", _SLOW),
    ],
}

# Reachable by id, never listed: listed models must all be usable (OP-MODELS-004).
TEST_MODELS = (
    MockModel(
        "op-test-upstream-error", "originalpoint", _FAST, behaviour="upstream_error", listed=False
    ),
    MockModel("op-test-unavailable", "originalpoint", _FAST, behaviour="unavailable", listed=False),
    MockModel(
        "op-test-midstream-error", "originalpoint", _FAST, behaviour="midstream_error", listed=False
    ),
)


def default_models() -> list[MockModel]:
    models = [
        MockModel(model_id, provider, latency)
        for provider, entries in _PROVIDERS.items()
        for model_id, latency in entries
    ]
    return models + list(TEST_MODELS)


def model_object(model: MockModel) -> dict[str, object]:
    return {"id": model.id, "object": "model", "created": CREATED, "owned_by": model.owned_by}
