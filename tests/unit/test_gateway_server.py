"""What `opconform serve --print-env` exports (gateway/server.py)."""

from __future__ import annotations


def test_print_env_exports_only_what_a_command_reads() -> None:
    from opconform.config import OPTIONS
    from opconform.gateway.server import env_lines

    read = {option.env for option in OPTIONS}
    env = {"OP_BASE_URL": "http://x/v1", "OP_ENTERPRISE_API_KEY": "k", "OP_DETERMINISTIC": "1"}
    lines = env_lines(env)
    exported = [line.removeprefix("export ").split("=")[0] for line in lines if "export" in line]
    assert set(exported) <= read and "OP_ENTERPRISE_API_KEY" not in exported
    assert lines[-1] == "export OP_DETERMINISTIC=1"  # still last: the embedded gateway reads to it
    assert "# OP_ENTERPRISE_API_KEY=k" in lines
