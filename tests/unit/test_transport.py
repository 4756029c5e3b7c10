"""Extra headers (opconform/transport.py): parsed, read from the environment one per line, and
the credential-like ones kept secret. (TLS and proxies on a whole run:
tests/integration/test_transport.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from opconform.exitcodes import UsageError
from opconform.transport import TransportSettings, is_secret_name, parse_header


# ---------------------------------------------------------------------------- options
def test_headers_parse_and_credential_names_are_secret() -> None:
    assert parse_header("X-Access:  a, b; c=d ", "--header") == ("x-access", "a, b; c=d")
    assert is_secret_name("CF-Access-Client-Secret") and is_secret_name("Cookie")
    assert is_secret_name("X-Auth-Token") and not is_secret_name("X-Opconform-Test")
    settings = TransportSettings.from_values(
        {"header": ["X-Plain: one", "X-Api-Key: two"], "secret_header": ["X-Tenant: three"]},
        env={},
    )
    assert dict(settings.headers) == {"x-plain": "one", "x-api-key": "two", "x-tenant": "three"}
    assert sorted(settings.secret_values()) == ["three", "two"]
    assert settings.describe()["headers"]["x-tenant"] == "[REDACTED]"
    for bad in ("no colon", ": empty name", "Bad Name: x", "Authorization: Bearer x"):
        with pytest.raises(UsageError):
            parse_header(bad, "--header")


def test_header_lines_come_from_env_one_per_line(tmp_path: Path) -> None:
    from opconform.config import resolve

    values = resolve({}, env={"OP_HEADERS": "X-A: 1; 2\nX-B: 3, 4\n"}, config_file=None)
    assert values["header"] == ["X-A: 1; 2", "X-B: 3, 4"]
    config = tmp_path / "opconform.toml"
    config.write_text('header = ["X-C: 5"]\n', encoding="utf-8")
    assert resolve({}, env={}, config_file=config)["header"] == ["X-C: 5"]
