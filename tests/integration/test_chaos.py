"""A broken or hostile target (hangs, garbage, resets, endless streams) gives a clear failing
verdict and a finished report, never a hung run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.conftest import run_suite

CHAOS = ["chaos-hang", "chaos-garbage", "chaos-reset", "chaos-endless-stream"]


@pytest.mark.slow
@pytest.mark.parametrize("fault", CHAOS)
def test_hostile_target_gives_verdict_and_report(tmp_path: Path, fault: str) -> None:
    started = time.monotonic()
    with EmbeddedGateway(["--fault", fault]) as gateway:
        run = run_suite(
            gateway.env,
            tmp_path / "run",
            "--area",
            "chat,streaming,models",
            "--request-timeout",
            "3",
            "--read-timeout",
            "2",
            timeout=240,
        )
    elapsed = time.monotonic() - started
    assert run.code in (1, 3), f"exit {run.code}: {run.stdout[-1500:]} {run.stderr[-1500:]}"
    results = run.results
    assert results["verdict"] in ("not conformant", "could not judge")
    bad = [c for c in results["checks"] if c["status"] in ("FAIL", "ERROR")]
    assert bad and all(c["message"] for c in bad), "failing checks must say why"
    assert "Traceback (most recent call last)" not in run.stderr
    assert elapsed < 200, f"the run took {elapsed:.0f}s"


def test_unreachable_target_exits_3(tmp_path: Path) -> None:
    env = {"OP_BASE_URL": "http://127.0.0.1:9/v1", "OP_API_KEY": "op_sk_test_unreachable"}
    started = time.monotonic()
    run = run_suite(env, tmp_path / "run", "--area", "models", "--connect-timeout", "1")
    assert run.code == 3, run.stdout[-1000:]
    assert time.monotonic() - started < 30
    results = run.results
    assert results["verdict"] == "could not judge"
    assert results["partial"] == "cannot connect to http://127.0.0.1:9/v1: connection refused"
    assert not [c for c in results["checks"] if c["status"] in ("FAIL", "ERROR")]
    # One line says what failed.
    assert "opconform run: cannot connect to http://127.0.0.1:9/v1: connection refused" in (
        run.stderr
    )
