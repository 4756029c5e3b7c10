"""The command line never answers bad input with a traceback, and no key reaches any output."""

from __future__ import annotations

from pathlib import Path

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from opconform.redact import LEAK_PATTERN
from tests.conftest import opconform_cli, run_suite

BAD_INPUT = [
    (["run", "--plan", "gold"], "invalid choice"),
    (["run", "--base-url", "ftp://example/v1", "--api-key", "op_sk_test_x"], "http(s) URL"),
    (["run", "--base-url", "http://127.0.0.1:9/v1"], "--api-key"),
    (["run", "--area", "nonsense"], "unknown area"),
    (["run", "--requirement", "OP-NOPE-001"], "unknown ID"),
    (["run", "--expected-failures", "/nonexistent.yaml"], "cannot read"),
    (["run", "--latency-slo", "ttft=fast"], "--latency-slo"),
    (["run", "--model-count", "many"], "expected a number"),
    (["serve", "--config", "/nonexistent.toml"], "cannot read"),
    (["serve", "--plans", "/nonexistent.toml"], "cannot read"),
    (["serve", "--port", "http"], "--port: expected a number"),
    (["serve", "--fault", "stream-no-done,nope"], "unknown fault(s): nope"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line(tmp_path: Path, argv: list[str], message: str) -> None:
    if argv[0] == "run":
        argv = [*argv, "--report-dir", str(tmp_path / "run")]
    done = opconform_cli(*argv, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-1500:]
    assert message in output, output[-1500:]
    assert "Traceback" not in output


def test_report_dir_must_be_new(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    done = opconform_cli("run", "--report-dir", str(tmp_path))
    assert done.returncode == 2 and "not empty" in done.stderr


@pytest.mark.slow
def test_no_key_in_any_output(tmp_path: Path) -> None:
    """A full run whose target echoes keys in its errors: every artifact and the console are
    searched for the keys, their unprefixed forms and anything op_sk_-shaped."""
    with EmbeddedGateway(["--fault", "error-echoes-key"]) as gateway:
        secrets = [v for k, v in gateway.env.items() if k.endswith("_API_KEY")]
        run = run_suite(gateway.env, tmp_path / "run")
    assert (run.report_dir / "results.json").is_file()
    assert (run.report_dir / "junit.xml").is_file()
    assert any((run.report_dir / "allure-results").iterdir())
    assert any((run.report_dir / "transcripts").iterdir())
    texts = {"stdout": run.stdout, "stderr": run.stderr}
    for path in run.report_dir.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:8]}... leaked into {where}"
            assert secret.removeprefix("op_sk_") not in text, f"key suffix leaked into {where}"
        leaks = LEAK_PATTERN.findall(text)
        assert not leaks, f"key-shaped strings in {where}: {leaks[:3]}"
