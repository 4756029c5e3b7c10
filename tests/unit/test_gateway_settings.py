"""The reference gateway's configuration file (gateway/settings.py): plans and keys, the
example shipped with it, and a key that is not a test key refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from opconform.gateway.settings import ConfigError, load_config


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


def test_example_gateway_config_loads() -> None:
    config = load_config(
        Path(__file__).resolve().parent.parent.parent / "gateway/example-config.toml"
    )
    assert config.plans["enterprise"].requests_per_min == 5000
    assert config.plans["free"].requests_per_min == 60
    restricted = config.key_for_role("restricted")
    assert restricted is not None and "claude-opus-4" in restricted.denied_models
