"""Usage errors are one line on stderr, exit 2, no traceback and nothing written; every output
says what was run (a narrowed run never reads CONFORMANT); the help says what each thing is for.

Errors found before pytest or Locust starts are tested in-process (`opconform.cli.main`) in
tests/unit/test_cli.py; here the ones that need the suite collected, and whole runs, through the
command as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.conftest import ROOT, clean_env, opconform_cli
from tests.support.run_folders import conformance_run, files

# ---------------------------------------------------------------------------- run folder


def test_plain_pytest_refuses_a_report_dir_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "X").write_text("a file")
    report_dir = tmp_path / "X" / "run"
    argv = ["conformance", "-p", "no:cacheprovider", "--report-dir", str(report_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *argv],
        env=clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 4  # pytest's own usage-error exit
    assert done.stdout == "" and "Traceback" not in done.stderr
    message = f"--report-dir {report_dir}: cannot create it, {tmp_path / 'X'} is a file"
    assert done.stderr.strip() == f"ERROR: {message}"
    assert files(tmp_path) == ["X"]


# ---------------------------------------------------------------------------- gateway args


# ---------------------------------------------------------------------------- SLOs


# ---------------------------------------------------------------------------- selections
@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (["-k", "zzz"], "-k zzz selects no check"),
        (["-m", "nosuchmarker"], "-m nosuchmarker selects no check"),
        (["--area", "auth", "-k", "stream"], "--area auth -k stream selects no check"),
        (["--requirement", "op-rl-013"], "--requirement OP-RL-013 selects no check (opt-in"),
        # The run's options are resolved once, before pytest: given to pytest they would be lost.
        (["-k", "auth", "--", "--samples", "3"], "--samples: give opconform's options before --"),
    ],
)
def test_a_selection_that_matches_nothing_is_a_usage_error(
    tmp_path: Path, selection: list[str], message: str
) -> None:
    report_dir = tmp_path / "run"
    done = opconform_cli("run", *selection, "--report-dir", str(report_dir), timeout=120)
    assert done.returncode == 2, done.stdout[-1500:] + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"opconform run: {message}"), done.stderr
    assert not report_dir.exists()


# ---------------------------------------------------------------------------- unreachable
def test_an_unreachable_target_is_one_line_and_results_json_only(tmp_path: Path) -> None:
    report_dir = tmp_path / "run"
    env = {"OP_BASE_URL": "http://127.0.0.1:9/v1", "OP_API_KEY": "op_sk_test_unreachable"}
    done = opconform_cli("run", "--report-dir", str(report_dir), env=env, timeout=60)
    assert done.returncode == 3, done.stdout[-1500:]
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "opconform run: cannot connect to http://127.0.0.1:9/v1: connection refused"
    ]
    assert files(report_dir) == ["results.json"]
    results = json.loads((report_dir / "results.json").read_text())
    assert results["verdict"] == "could not judge" and results["exit_code"] == 3
    assert results["partial"].startswith("cannot connect")
    assert "op_sk_test_unreachable" not in (report_dir / "results.json").read_text()
    rebuilt = opconform_cli("report", str(report_dir), timeout=60)  # still a run folder
    assert rebuilt.returncode == 0, rebuilt.stderr[-1500:]


def test_load_against_an_unreachable_target_is_one_line_before_locust_starts(
    tmp_path: Path,
) -> None:
    report_dir = tmp_path / "run"
    env = {"OP_BASE_URL": "http://127.0.0.1:9/v1", "OP_API_KEY": "op_sk_test_unreachable"}
    done = opconform_cli("load", "steady", "--report-dir", str(report_dir), env=env, timeout=60)
    assert done.returncode == 3, done.stdout[-1500:] + done.stderr[-1500:]
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "opconform load: cannot connect to http://127.0.0.1:9/v1: connection refused"
    ]
    assert files(report_dir) == ["load.json"]  # no settings.json: Locust never started
    document = json.loads((report_dir / "load.json").read_text())
    assert document["verdict"] == "inconclusive" and document["exit_code"] == 3
    assert document["invalid_reasons"] == [
        "cannot connect to http://127.0.0.1:9/v1: connection refused"
    ]
    assert "op_sk_test_unreachable" not in (report_dir / "load.json").read_text()
    rebuilt = opconform_cli("report", str(report_dir), timeout=60)  # still a run folder
    assert rebuilt.returncode == 0, rebuilt.stderr[-1500:]


# ---------------------------------------------------------------------------- what was run
def test_a_narrowed_run_never_says_conformant(tmp_path: Path) -> None:
    report_dir = tmp_path / "run"
    with EmbeddedGateway() as gateway:
        done = opconform_cli(
            "run", "--area", "auth", "--report-dir", str(report_dir), env=gateway.env
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-1000:]
    results = json.loads((report_dir / "results.json").read_text())
    assert results["verdict"] == "selection passed"
    assert results["selection"].startswith("partial: selected --area auth (")
    assert "CONFORMANT" not in done.stdout
    assert "partial: selected --area auth" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    assert "opconform: SELECTION PASSED" in last and "exit 0" in last
    for report in ("report.md", "report.html"):
        text = (report_dir / report).read_text()
        assert "partial: selected --area auth" in text and "CONFORMANT" not in text


def test_plain_pytest_writes_the_report_set_and_ends_with_the_verdict(tmp_path: Path) -> None:
    report_dir = tmp_path / "run"
    with EmbeddedGateway() as gateway:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "conformance",
                "-p",
                "no:cacheprovider",
                "--area",
                "models",
                "--report-dir",
                str(report_dir),
            ],
            env=clean_env(gateway.env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-2000:]
    names = set(files(report_dir))
    assert {"results.json", "report.html", "report.md", "junit.xml"} <= names, names
    last = done.stdout.strip().splitlines()[-1]
    assert "opconform: SELECTION PASSED" in last, done.stdout[-1500:]
    counted = [line for line in done.stdout.splitlines() if "whole-run invariants" in line]
    assert len(counted) == 1  # the two kinds of counts, explained once


@pytest.mark.parametrize("verbose", [False, True])
def test_benchmark_table_only_when_asked(tmp_path: Path, verbose: bool) -> None:
    report_dir = tmp_path / "run"
    with EmbeddedGateway() as gateway:
        done = opconform_cli(
            "run",
            "--area",
            "perf",
            "--latency-slo",
            "ttfb_p95=10s,completion_p95=10s,ttft_p95=10s",
            "--report-dir",
            str(report_dir),
            *(["-v"] if verbose else []),
            env=gateway.env,
        )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (report_dir / "benchmark.json").is_file()
    output = done.stdout + done.stderr
    assert ("Wrote benchmark data" in output) == verbose, output[-2000:]
    assert ("Name (time in" in output) == verbose, output[-2000:]  # the table


# ---------------------------------------------------------------------------- help


def test_load_help_says_what_the_pro_key_does_in_a_load_run() -> None:
    done = opconform_cli("load", "--help", timeout=60)
    flat = " ".join(done.stdout.split())
    assert "--pro-api-key PRO_API_KEY a Pro key: the bystander" in flat, flat


# ---------------------------------------------------------------------------- report diff


def test_diff_reports_lost_coverage_and_improvements(tmp_path: Path) -> None:
    old = conformance_run(tmp_path / "old", {"a": "PASS", "b": "FAIL", "c": "PASS", "d": "PASS"})
    new = conformance_run(tmp_path / "new", {"a": "DISABLED", "b": "PASS", "c": "PASS"})
    plain = opconform_cli("report", "diff", str(old), str(new), timeout=60)
    assert plain.returncode == 0, plain.stdout
    assert "LOST      a (OP-X-001): PASS -> DISABLED" in plain.stdout
    assert "LOST      d (OP-X-001): PASS -> REMOVED" in plain.stdout
    assert "IMPROVED  b (OP-X-001): FAIL -> PASS" in plain.stdout
    assert "0 regressed, 1 improved, 2 lost coverage" in plain.stdout
    assert "fixed" not in plain.stdout.lower()
    gate = opconform_cli(
        "report", "diff", str(old), str(new), "--fail-on-lost-coverage", timeout=60
    )
    assert gate.returncode == 1
