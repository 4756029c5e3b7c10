"""Usage errors are one line on stderr, exit 2, no traceback and nothing written; every output
says what was run (a narrowed run never reads CONFORMANT); the help says what each thing is for.

Errors found before pytest or Locust starts are tested in-process (`opconform.cli.main`); the
ones that need the suite collected, and whole runs, through the command as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opconform.cli import main
from opconform.exitcodes import UsageError
from opconform.gateway.embedded import EmbeddedGateway
from tests.conftest import ROOT, clean_env, opconform_cli


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command in-process; assert exit 2 with one line on stderr and no traceback."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert out == "", out
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err.strip()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------- run folder
@pytest.mark.parametrize("command", [["run"], ["load", "steady"]])
def test_a_file_in_the_report_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    (tmp_path / "X").write_text("a file")
    err = _usage_error(capsys, *command, "--report-dir", str(tmp_path / "X" / "run"))
    assert f"cannot create it, {tmp_path / 'X'} is a file" in err
    assert _files(tmp_path) == ["X"] and (tmp_path / "X").read_text() == "a file"


@pytest.mark.parametrize("command", [["run"], ["load", "steady"]])
def test_an_unwritable_parent_is_a_usage_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    # Tests run as root, where chmod does not stop a write: the permission answer is faked.
    parent = tmp_path / "locked"
    parent.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != parent and real(p, mode))
    err = _usage_error(capsys, *command, "--report-dir", str(parent / "a" / "run"))
    assert f"cannot create it, {parent} is not writable" in err
    assert _files(tmp_path) == ["locked"]


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
    assert _files(tmp_path) == ["X"]


def test_a_run_folder_that_cannot_be_made_is_a_usage_error(tmp_path: Path) -> None:
    from opconform.preflight import discard_report_dir, make_report_dir

    (tmp_path / "X").write_text("")
    with pytest.raises(UsageError, match="cannot create it"):
        make_report_dir(tmp_path / "X" / "run")
    created = make_report_dir(tmp_path / "new" / "deeper" / "run")
    assert created == tmp_path / "new"
    (tmp_path / "new" / "deeper" / "run" / "junit.xml").write_text("")
    discard_report_dir(tmp_path / "new" / "deeper" / "run", created)
    assert _files(tmp_path) == ["X"]


# ---------------------------------------------------------------------------- gateway args
@pytest.mark.parametrize("command", [["run"], ["load", "steady"]])
@pytest.mark.parametrize(
    ("gateway_args", "message"),
    [
        ("--fault no-such-fault", "unknown fault(s): no-such-fault"),
        ("--no-such-option", "unrecognized arguments: --no-such-option"),
        ("--ttft-ms 200", "--ttft-ms needs --tpot-ms"),
        ("--plans /nonexistent.toml", "cannot read"),
    ],
)
def test_gateway_args_are_parsed_by_the_gateways_own_parser(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    gateway_args: str,
    message: str,
) -> None:
    report_dir = tmp_path / "run"
    err = _usage_error(
        capsys, *command, f"--gateway-args={gateway_args}", "--report-dir", str(report_dir)
    )
    assert err.startswith(f"opconform {command[0]}: --gateway-args {gateway_args!r}: ")
    assert message in err
    assert not report_dir.exists()


def test_good_gateway_args_pass() -> None:
    from opconform.gateway.command import check_gateway_args

    check_gateway_args("--fault stream-no-done,429-no-retry-after --window-seconds 3")
    check_gateway_args("--ttft-ms 200 --tpot-ms 20 --jitter-ms 2")
    check_gateway_args("--tpot-ms 5")  # a first token without a wait: explicit, and allowed


def test_every_faults_own_gateway_args_pass() -> None:
    import shlex

    from opconform.gateway.command import check_gateway_args
    from opconform.gateway.faults import FAULTS

    for fault in FAULTS.values():
        check_gateway_args(shlex.join(["--fault", fault.name, *fault.serve_args]))


# ---------------------------------------------------------------------------- SLOs
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--latency-slo", "bogus"], "--latency-slo: expected NAME=VALUE"),
        (["run", "--latency-slo", "ttft_p95=800"], "ttft_p95: 800 has no unit; write 800ms"),
        (["load", "steady", "--slo", "ttft_p95=800"], "ttft_p95: 800 has no unit; write 800ms"),
        (["load", "steady", "--slo", "ttft_p95=800,error_rate=2"], "ttft_p95: 800 has no unit"),
    ],
)
def test_slo_errors_come_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    report_dir = tmp_path / "run"
    err = _usage_error(capsys, *argv, "--report-dir", str(report_dir))
    assert message in err
    assert not report_dir.exists()


def test_a_duration_needs_its_unit_but_a_ratio_does_not() -> None:
    from opconform.slo import parse_slo

    assert parse_slo("ttft_p95=800ms,e2e_p99=0.8s,error_rate=0.01") == {
        "ttft_p95": 0.8,
        "e2e_p99": 0.8,
        "error_rate": 0.01,
    }
    with pytest.raises(UsageError, match="has no unit"):
        parse_slo("itl_p50=40")


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
    assert _files(report_dir) == ["results.json"]
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
    assert _files(report_dir) == ["load.json"]  # no settings.json: Locust never started
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
    names = set(_files(report_dir))
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
def test_help_starts_with_what_the_tool_is_for() -> None:
    from opconform.cli import build_parser

    text = build_parser().format_help()
    description = text.split("\n\n")[1]
    assert description.startswith("Check that a deployment of the OriginalPoint API")


def test_load_list_gives_one_line_per_profile(capsys: pytest.CaptureFixture[str]) -> None:
    from opconform.loadtests.command import PROFILES

    assert main(["load", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == sorted(PROFILES)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)


def test_load_help_says_what_the_pro_key_does_in_a_load_run() -> None:
    done = opconform_cli("load", "--help", timeout=60)
    flat = " ".join(done.stdout.split())
    assert "--pro-api-key PRO_API_KEY a Pro key: the bystander" in flat, flat


def test_ignored_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(capsys, "load", "steady", "--rate", "5", "--report-dir", str(tmp_path / "r"))
    assert "--rate is the open-loop rate" in err
    err = _usage_error(capsys, "serve", "--ttft-ms", "200", "--port", "0")
    assert "--ttft-ms needs --tpot-ms" in err
    assert _files(tmp_path) == []


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


# ---------------------------------------------------------------------------- report diff
def _conformance_run(folder: Path, statuses: dict[str, str]) -> Path:
    folder.mkdir()
    checks = [
        {"id": check, "requirements": ["OP-X-001"], "status": status, "message": ""}
        for check, status in statuses.items()
    ]
    document = {"kind": "conformance", "verdict": "conformant", "checks": checks}
    (folder / "results.json").write_text(json.dumps(document))
    return folder


MALFORMED_DOCUMENTS = {
    "not JSON": "{oops",
    "a JSON list": "[1, 2]",
    "null": "null",
    "no keys": "{}",
    "checks not a list": '{"kind": "conformance", "verdict": "x", "checks": "abc"}',
    "a check not an object": '{"verdict": "x", "checks": [1], "requirements": []}',
    "a message not a string": json.dumps(
        {
            "verdict": "x",
            "checks": [{"id": "a", "requirements": [], "status": "FAIL", "message": 5}],
        }
    ),
}


@pytest.mark.parametrize("name", ["results.json", "load.json"])
@pytest.mark.parametrize("case", sorted(MALFORMED_DOCUMENTS))
def test_a_malformed_run_document_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, case: str
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / name).write_text(MALFORMED_DOCUMENTS[case])
    err = _usage_error(capsys, "report", str(bad))
    assert err.startswith("opconform report: ") and str(bad / name) in err, err
    assert _files(bad) == [name]  # no half-written report
    good = _conformance_run(tmp_path / "good", {"a": "PASS"})
    if name == "results.json":  # a diff compares two runs of one kind
        err = _usage_error(capsys, "report", "diff", str(good), str(bad))
        assert str(bad / name) in err, err


def test_diff_reports_lost_coverage_and_improvements(tmp_path: Path) -> None:
    old = _conformance_run(tmp_path / "old", {"a": "PASS", "b": "FAIL", "c": "PASS", "d": "PASS"})
    new = _conformance_run(tmp_path / "new", {"a": "DISABLED", "b": "PASS", "c": "PASS"})
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


def test_load_diff_shows_latencies_in_ms(tmp_path: Path) -> None:
    from opconform.reports.diff import diff_runs, format_diff

    for name, ttft in (("old", 0.8), ("new", 0.4)):
        (tmp_path / name).mkdir()
        document = {"kind": "load", "verdict": "pass", "metrics": {"ttft": {"p95": ttft}}}
        (tmp_path / name / "load.json").write_text(json.dumps(document))
    text = format_diff(diff_runs(tmp_path / "old", tmp_path / "new"))
    assert "800.0 ms ->     400.0 ms" in text
    assert "IMPROVED  ttft_p95" in text
