"""One configuration path (opconform/config.py): `run`, `load` and `serve` read their options
through the same `resolve` (command line, then environment, then their section of
opconform.toml, then the one declared default), and bad values are usage errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opconform.config import OPTIONS, resolve
from opconform.exitcodes import UsageError
from opconform.gateway.options import SERVE_OPTIONS, SERVE_SECTION
from opconform.loadtests.options import LOAD_OPTIONS, document_from_environment, resolve_load
from opconform.target import Target, parse_slo


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


def test_requirement_ids_and_areas_in_any_case() -> None:
    from opconform.config import resolve

    values = resolve({"requirement": ["op-stream-007,Op-Auth-001"], "area": ["Auth"]}, env={})
    assert values["requirement"] == ["OP-STREAM-007", "OP-AUTH-001"]
    assert values["area"] == ["auth"]


def test_report_dir_reads_op_report_dir_like_load() -> None:
    from opconform.config import resolve, variable

    assert variable("report_dir") == "OP_REPORT_DIR"
    assert resolve({}, env={"OP_REPORT_DIR": "out/run"})["report_dir"] == "out/run"
    assert resolve({"report_dir": "cli"}, env={"OP_REPORT_DIR": "env"})["report_dir"] == "cli"


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


SETTINGS = """
plan = "pro"
model_count = 3

[load]
model = "from-file"
max_tokens = 32
profile_option = ["hold_seconds=2"]

[serve]
port = 9001
fault = ["stream-no-done", "429-no-retry-after"]
"""


def test_each_command_reads_its_own_section(tmp_path: Path) -> None:
    file = tmp_path / "opconform.toml"
    file.write_text(SETTINGS)
    run = resolve({}, env={}, config_file=file)
    assert (run["plan"], run["model_count"]) == ("pro", 3)
    shared, load = resolve_load({}, env={}, config_file=file)
    assert shared["plan"] == "pro" and load["model"] == "from-file"
    assert load["profile_option"] == ["hold_seconds=2"]
    assert load["processes"] == 1  # not in the file: the table's default
    serve = resolve({}, env={}, config_file=file, options=SERVE_OPTIONS, section=SERVE_SECTION)
    assert serve["port"] == 9001 and serve["fault"] == ["stream-no-done", "429-no-retry-after"]


def test_precedence_is_the_same_for_every_command(tmp_path: Path) -> None:
    file = tmp_path / "opconform.toml"
    file.write_text(SETTINGS)
    _, load = resolve_load({}, env={"OP_LOAD_MODEL": "from-env"}, config_file=file)
    assert load["model"] == "from-env"
    _, load = resolve_load({"model": "from-cli"}, env={"OP_LOAD_MODEL": "x"}, config_file=file)
    assert load["model"] == "from-cli"
    serve = resolve(
        {"fault": ["a,b", "c"]},
        env={"OP_SERVE_FAULT": "d"},
        config_file=file,
        options=SERVE_OPTIONS,
        section=SERVE_SECTION,
    )
    assert serve["fault"] == ["a", "b", "c"]  # repeatable and comma-separated at once
