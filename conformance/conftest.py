"""Fixtures of the conformance checks (the plugin provides target, api and check)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from opconform.conformance.plan import MARKER, bulk_of, is_frugal, room
from opconform.conformance.prefetch import Jobs
from opconform.conformance.skips import blocked, disabled
from opconform.target import Target

if TYPE_CHECKING:  # as in the plugin: the client is imported when a run starts
    from opconform.client import ApiClient, Exchange
    from opconform.conformance.evidence import Recorder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: needs a window of the main key to itself (opconform.conformance.plan)",
    )


@pytest.fixture(scope="session")
def bulk_key(api: ApiClient) -> str:
    """The identity for checks that are not about one key's limits: Pro when given, so the main
    key's requests/min stays free for the checks that measure it."""
    return bulk_of(api)


@pytest.fixture(scope="session")
def frugal(api: ApiClient, bulk_key: str) -> bool:
    """The bulk identity's plan leaves little room
    (opconform.conformance.plan.FRUGAL_REQUESTS_PER_MIN):
    spend requests only on what is judged, so a run with one Free key fits in three of its
    windows (README: "One Free key")."""
    return is_frugal(api, bulk_key)


@pytest.fixture(scope="session")
def jobs(
    request: pytest.FixtureRequest, api: ApiClient, bulk_key: str, frugal: bool, evidence: Recorder
) -> Jobs:
    """The selection's jobs (opconform.conformance.prefetch), sent together when the bulk key has
    room: a
    frugal Free key sends each when its check takes it, one after the other."""

    def together() -> bool:
        return not frugal and room(api, bulk_key) > 1

    return Jobs(request, api, bulk_key, evidence, together=together)


@pytest.fixture(scope="session")
def listed_models(api: ApiClient, bulk_key: str, target: Target) -> list[str]:
    """The ids GET /models lists. A list that cannot be read blocks what stands on it (its own
    requirement, OP-MODELS-001, fails in its own check)."""
    exchange = api.request("GET", "/models", key=bulk_key)
    try:
        data = exchange.json()["data"]
        ids = [entry["id"] for entry in data if isinstance(entry, dict) and "id" in entry]
    except (ValueError, KeyError, TypeError):
        ids = []
    if not ids:
        hint = "" if target.models else "; give --models to check the rest without it"
        blocked("OP-MODELS-001", f"GET /models gave no model ids ({exchange.describe()}){hint}")
    return list(dict.fromkeys(ids))


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest, target: Target) -> list[str]:
    """The models the run checks: --models (then nothing needs GET /models), every listed one
    with --all-models, else the first --model-count of the list (skipping the restricted
    model, which the main key may lack)."""
    if target.models:
        return target.models
    listed: list[str] = request.getfixturevalue("listed_models")
    if target.all_models:
        return listed
    usable = [m for m in listed if m != target.restricted_model]
    return usable[: max(1, target.model_count)]


@pytest.fixture(scope="session")
def model(models: list[str]) -> str:
    return models[0]


@pytest.fixture
def attach(evidence: Recorder) -> Callable[[Exchange], None]:
    """attach(exchange): add an exchange made by a shared fixture to this check's evidence."""
    return evidence.attach


@pytest.fixture
def restricted(target: Target, api: ApiClient) -> str:
    if not api.has_key("restricted") or not target.restricted_model:
        disabled("needs --restricted-api-key and --restricted-model")
    assert target.restricted_model is not None
    return target.restricted_model
