"""One configuration path: `run`, `load` and `serve` read their options through the same
`resolve` (command line, then environment, then their section of opconform.toml, then the one
declared default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opconform.config import resolve
from opconform.gateway.embedded import EmbeddedGateway
from opconform.gateway.options import SERVE_OPTIONS, SERVE_SECTION
from opconform.loadtests.options import resolve_load
from tests.conftest import opconform_cli

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


def test_serve_reads_its_section_of_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "opconform.toml").write_text('[serve]\nport = "http"\n')
    done = opconform_cli("serve", cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "opconform.toml: port: expected a number" in done.stderr


def test_the_embedded_gateway_ignores_a_users_serve_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`opconform serve` settings are for the gateway a user runs; the embedded target is
    configured by --gateway-args alone."""
    monkeypatch.setenv("OP_SERVE_FAULT", "no-such-fault")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "opconform.toml").write_text('[serve]\nfault = ["no-such-fault"]\n')
    with EmbeddedGateway(["--answer-tokens", "4"]) as gateway:
        assert gateway.base_url.startswith("http://127.0.0.1:")
    assert os.environ["OP_SERVE_FAULT"] == "no-such-fault"


def test_load_reads_its_section_of_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "opconform.toml").write_text('[load]\nduration = "forever"\n')
    done = opconform_cli("load", "steady", cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "opconform.toml: duration" in done.stderr and "Traceback" not in done.stderr


def test_repeated_list_options_reach_the_suite_item_by_item(tmp_path: Path) -> None:
    done = opconform_cli(
        "run", "--area", "models,auth", "--area", "nonsense", "--report-dir", str(tmp_path / "r")
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown area(s) nonsense;" in done.stderr, done.stderr
