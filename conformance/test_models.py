"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

import functools
import secrets
from typing import Any

import pytest

from opconform.client import ApiClient, Exchange
from opconform.conformance import expect
from opconform.conformance.prefetch import BULK, Pending, job
from opconform.conformance.run import Check
from opconform.conformance.skips import blocked

requirement = pytest.mark.requirement


@pytest.fixture
def model_list(api: ApiClient, bulk_key: str) -> dict[str, Any]:
    """The list as far as it can be read: a missing endpoint or a body without a data array
    blocks these checks (OP-MODELS-001 fails for it); a list that breaks the schema in other
    ways (a missing `created`, say) is still judged on its count, providers and ids."""
    exchange = api.request("GET", "/models", key=bulk_key)
    try:
        body = exchange.json() if exchange.status == 200 else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        blocked("OP-MODELS-001", f"no model list to judge: {expect.preview(exchange)}")
    assert isinstance(body, dict)
    return body


@requirement("OP-MODELS-001")
def test_list_matches_schema(api: ApiClient, bulk_key: str) -> None:
    exchange = api.request("GET", "/models", key=bulk_key)
    expect.status(exchange, 200)
    body = expect.json_body(exchange)
    expect.matches(body, "model-list", "GET /models")


@requirement("OP-MODELS-008")
def test_list_has_over_50_models(model_list: dict[str, Any]) -> None:
    data = [m for m in model_list.get("data") or [] if isinstance(m, dict)]
    assert len(data) > 50, f"{len(data)} models listed; the reference promises over 50"


@requirement("OP-MODELS-007")
def test_list_spans_providers(model_list: dict[str, Any], check: Check) -> None:
    data = [m for m in model_list.get("data") or [] if isinstance(m, dict)]
    providers = sorted({str(m.get("owned_by")) for m in data})
    assert len(providers) > 1, (
        f"every listed model is owned by {providers[0] if providers else 'nobody'}: the list "
        "must include models from every supported provider"
    )
    if len(providers) < 9:
        check.warn(
            f"{len(providers)} providers listed ({', '.join(providers)}); the reference names 9"
        )


@requirement("OP-MODELS-003")
def test_model_ids_are_unique(model_list: dict[str, Any]) -> None:
    ids = [m.get("id") for m in model_list.get("data") or [] if isinstance(m, dict)]
    duplicates = sorted({str(i) for i in ids if ids.count(i) > 1})
    assert not duplicates, f"model ids listed more than once: {', '.join(duplicates)}"


@job(slots=3, sends={BULK: "models+1"})
def listed_model_answers(
    api: ApiClient, bulk_key: str, models: list[str], listed_models: list[str]
) -> list[tuple[str, Exchange]]:
    chosen = list(dict.fromkeys(models + listed_models[: len(models) + 1]))

    def ask(model_id: str) -> tuple[str, Exchange]:
        return model_id, api.chat(expect.chat_request(model_id, max_tokens=4), key=bulk_key)

    return api.gather([functools.partial(ask, m) for m in chosen], key=bulk_key)


@requirement("OP-MODELS-004")
def test_listed_models_answer_chat(listed_model_answers: Pending) -> None:
    failures = []
    for model_id, exchange in listed_model_answers.take():
        if exchange.status != 200:
            failures.append(f"{model_id}: {expect.preview(exchange, 120)}")
    assert not failures, "listed models that do not answer: " + "; ".join(failures)


@requirement("OP-MODELS-005")
def test_retrieve_model(api: ApiClient, bulk_key: str, model: str) -> None:
    exchange = api.request("GET", f"/models/{model}", key=bulk_key)
    expect.status(exchange, 200)
    body = expect.json_body(exchange)
    expect.matches(body, "model", f"GET /models/{model}")
    assert body["id"] == model, f"GET /models/{model} returned id {body['id']!r}"
    unknown = api.request(
        "GET", f"/models/opconform-no-such-model-{secrets.token_hex(4)}", key=bulk_key
    )
    expect.status(unknown, 404)
    expect.error_body(unknown)
