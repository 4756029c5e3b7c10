"""One configuration path: `run`, `load` and `serve` read their options through the same
`resolve` (command line, then environment, then their section of opconform.toml, then the one
declared default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.conftest import opconform_cli


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
