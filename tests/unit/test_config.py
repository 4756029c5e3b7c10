"""The cases of tests/integration/test_config.py that start no process or server.

One configuration path: `run`, `load` and `serve` read their options through the same
`resolve` (command line, then environment, then their section of opconform.toml, then the one
declared default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opconform.config import OPTIONS, resolve
from opconform.exitcodes import UsageError
from opconform.gateway.options import SERVE_OPTIONS
from opconform.loadtests.options import LOAD_OPTIONS, document_from_environment, resolve_load


def test_an_unknown_setting_names_its_section(tmp_path: Path) -> None:
    file = tmp_path / "opconform.toml"
    file.write_text('[load]\nmodle = "typo"\n')
    with pytest.raises(UsageError, match=r"\[load\]: unknown setting\(s\) modle"):
        resolve_load({}, env={}, config_file=file)
    resolve({}, env={}, config_file=file)  # the run's own table is not bothered by [load]


def test_every_variable_is_declared_once() -> None:
    variables = [o.env for o in (*OPTIONS, *LOAD_OPTIONS, *SERVE_OPTIONS) if o.env]
    assert len(variables) == len(set(variables))


def test_a_hand_run_locust_resolves_the_same_defaults() -> None:
    """Without `opconform load`, a Locust process builds its document from the same tables."""
    document = document_from_environment({})
    for option in LOAD_OPTIONS:
        assert document[option.name] == option.default, option.name
    assert (document["plan"], document["rpm"], document["concurrent"]) == ("free", 60, 5)
    pro = document_from_environment({"OP_PLAN": "pro", "OP_LOAD_MAX_TOKENS": "16"})
    assert (pro["rpm"], pro["max_tokens"]) == (600, 16)


def test_an_embedded_gateway_fills_only_the_options_that_describe_the_target() -> None:
    from opconform.config import OPTIONS, SCOPES
    from opconform.conformance.settings import RunSettings

    assert {option.scope for option in OPTIONS} == set(SCOPES)
    user = {"plan": "pro", "samples": 3, "request_timeout": 7.0, "insecure": True}
    settings = RunSettings.resolve(user, Path(os.devnull), env={})
    assert settings.embedded and settings.target is None
    gateway = {"OP_BASE_URL": "http://127.0.0.1:1/v1", "OP_API_KEY": "sk-gw", "OP_PLAN": "free"}
    target = settings.embedded_target(gateway)
    # The gateway's URL, key and plan; the run's and the transport's options as the user gave.
    assert (target.base_url, target.keys["main"], target.plan) == (
        "http://127.0.0.1:1/v1",
        "sk-gw",
        "free",
    )
    assert (target.samples, target.timeouts.request, target.transport.insecure) == (3, 7.0, True)
    assert target.embedded


def test_load_shares_the_target_and_the_transport_but_not_what_only_checks_use() -> None:
    from opconform.config import OPTION_BY_NAME
    from opconform.loadtests.options import SHARED

    scopes = {OPTION_BY_NAME[name].scope for name in SHARED}
    assert scopes == {"target", "run", "transport"}
    assert "gateway_args" in SHARED and "samples" not in SHARED
    assert "restricted_api_key" not in SHARED and "api_key" in SHARED
