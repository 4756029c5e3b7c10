"""Whole runs of the suite against the reference gateway: clean passes, baselines work, the
opt-in checks pass too, and plain pytest works as well as the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.conftest import ROOT, clean_env, run_suite


def rows_status(results: dict[str, Any], requirement_id: str) -> str:
    return str(next(r["status"] for r in results["requirements"] if r["id"] == requirement_id))


def test_default_suite_passes_against_clean_gateway(tmp_path: Path) -> None:
    with EmbeddedGateway() as gateway:
        run = run_suite(gateway.env, tmp_path / "run")
    results = run.results
    assert run.code == 0, run.stdout[-3000:]
    assert results["verdict"] == "conformant"
    assert results["counts"]["FAIL"] == 0 and results["counts"]["ERROR"] == 0
    disabled = {c["name"] for c in results["checks"] if c["status"] == "DISABLED"}
    # Opt-in checks, and latencies that are measured but have no --latency-slo to be judged by.
    assert disabled == {
        "test_request_succeeds_after_retry_after",
        "test_tokens_per_day_cutoff",
        "test_time_to_first_byte_of_models",
        "test_small_completion_latency",
        "test_time_to_first_token",
    }
    assert rows_status(results, "OP-PERF-001") == "DISABLED"  # measured, not judged
    assert not [c for c in results["checks"] if c["status"] in ("BLOCKED", "INCONCLUSIVE")]
    rows = {r["id"]: r for r in results["requirements"]}
    assert rows["OP-AUTH-001"]["status"] == "PASS" and rows["OP-AUTH-008"]["status"] == "UNTESTABLE"
    assert rows["OP-RL-013"]["status"] == "DISABLED"  # opt-in: never reads as passed
    assert set(results["schema_hashes"]) >= {"openapi.yaml", "error.schema.json"}
    # The plan, stated before anything was sent, is close to what was sent: within 10%, for
    # the drive of the main key sends what is left of its window (the run's own pace decides
    # how much that is) and a 429 the plan explains is sent once more.
    assert "opconform: plan: pro key (Pro, 600 requests/min): ~" in run.stdout
    assert "4 checks need a fresh window" in run.stdout
    sent = sum(results["requests_sent"].values())
    assert abs(results["plan"]["requests"] - sent) <= 0.1 * sent, (results["plan"], sent)


@pytest.mark.slow
def test_opt_in_checks_pass_against_clean_gateway(tmp_path: Path) -> None:
    with EmbeddedGateway(["--window-seconds", "3"]) as gateway:
        run = run_suite(
            gateway.env,
            tmp_path / "run",
            *("-m", "slow or quota", "--max-tokens-total", "400000", "--window-seconds", "3"),
        )
    statuses = {c["name"]: c["status"] for c in run.results["checks"]}
    assert statuses["test_request_succeeds_after_retry_after"] == "PASS", run.stdout[-2000:]
    assert statuses["test_tokens_per_day_cutoff"] == "PASS", run.stdout[-2000:]


def test_expected_failure_keeps_gate_green_and_stale_entry_fails(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(
        "expected_failures:\n  - id: OP-STREAM-007\n    reason: known\n  - OP-STREAM-011\n"
    )
    with EmbeddedGateway(["--fault", "stream-no-done"]) as gateway:
        known = run_suite(
            gateway.env,
            tmp_path / "known",
            "--area",
            "streaming",
            "--expected-failures",
            str(baseline),
        )
    assert known.code == 0, known.stdout[-2000:]
    check = next(c for c in known.results["checks"] if c["name"] == "test_done_once_and_last")
    assert check["status"] == "FAIL" and check["baseline"] == "expected"
    with EmbeddedGateway() as gateway:
        stale = run_suite(
            gateway.env,
            tmp_path / "stale",
            "--area",
            "streaming",
            "--expected-failures",
            str(baseline),
        )
    assert stale.code == 1, stale.stdout[-2000:]
    check = next(c for c in stale.results["checks"] if c["name"] == "test_done_once_and_last")
    assert check["status"] == "PASS" and check["baseline"] == "stale"


def test_should_failure_warns_without_failing_gate(tmp_path: Path) -> None:
    with EmbeddedGateway(["--fault", "error-code-string"]) as gateway:
        run = run_suite(gateway.env, tmp_path / "run", "--area", "errors")
    assert run.code == 0, run.stdout[-2000:]
    check = next(c for c in run.results["checks"] if "OP-ERR-002" in c["requirements"])
    assert check["status"] == "WARN" and "none of the official SDKs" in check["message"]


def test_plain_pytest_runs_the_suite(tmp_path: Path) -> None:
    with EmbeddedGateway() as gateway:
        env = clean_env()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "conformance",
                "-q",
                "-p",
                "no:cacheprovider",
                "--base-url",
                gateway.base_url,
                "--api-key",
                gateway.env["OP_API_KEY"],
                "--pro-api-key",
                gateway.env["OP_PRO_API_KEY"],
                "--area",
                "models,chat",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    # Two areas: the selection passed; a narrowed run gives no verdict on the whole contract.
    assert results["verdict"] == "selection passed" and not results["target"]["embedded"]


def test_area_markers_select_like_pytest(tmp_path: Path) -> None:
    with EmbeddedGateway() as gateway:
        run = run_suite(gateway.env, tmp_path / "run", "-m", "compat")
    assert run.code == 0, run.stdout[-2000:]
    ran = {c["area"] for c in run.results["checks"] if c["status"] != "DISABLED"}
    assert ran == {"compat"}


LOW_LIMIT_CONFIG = """
[plans.tiny]
requests_per_min = 3
tokens_per_day = 100000
concurrent = 5

[[keys]]
key = "op_sk_test_tiny_main"
plan = "tiny"
role = "main"

[[keys]]
key = "op_sk_test_tiny_pro"
plan = "pro"
role = "pro"
"""


@pytest.mark.slow
def test_limit_below_the_plan_is_one_failure(tmp_path: Path) -> None:
    """A key that really allows 3 requests/min, declared Free (60): one FAIL on the limit's
    requirement, and the checks that needed a free window are blocked by it, not ERROR."""
    config = tmp_path / "tiny.toml"
    config.write_text(LOW_LIMIT_CONFIG)
    with EmbeddedGateway(["--plans", str(config)]) as gateway:
        run = run_suite(gateway.env, tmp_path / "run", "--plan", "free")
    results = run.results
    assert run.code == 1, run.stdout[-2000:]
    causes = [c["requirement"] for c in results["root_causes"]]
    assert causes == ["OP-RL-004"], results["root_causes"]
    assert "X-RateLimit-Limit is 3" in results["root_causes"][0]["message"]
    assert results["root_causes"][0]["blocked"], "the checks that met the low limit are blocked"
    assert results["counts"]["ERROR"] == 0
