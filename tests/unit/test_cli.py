"""Usage errors of the `opconform` command (opconform/cli.py) found before pytest or Locust
starts, in-process: one line on stderr, exit 2, no traceback and nothing written; and what
the help and `load --list` say. (The ones that need the suite collected, and whole runs:
tests/integration/test_usage_errors.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from opconform.cli import main
from tests.support.run_folders import conformance_run, files


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command in-process; assert exit 2 with one line on stderr and no traceback."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert out == "", out
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize("command", [["run"], ["load", "steady"]])
def test_a_file_in_the_report_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    (tmp_path / "X").write_text("a file")
    err = _usage_error(capsys, *command, "--report-dir", str(tmp_path / "X" / "run"))
    assert f"cannot create it, {tmp_path / 'X'} is a file" in err
    assert files(tmp_path) == ["X"] and (tmp_path / "X").read_text() == "a file"


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
    assert files(tmp_path) == ["locked"]


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


def test_ignored_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(capsys, "load", "steady", "--rate", "5", "--report-dir", str(tmp_path / "r"))
    assert "--rate is the open-loop rate" in err
    err = _usage_error(capsys, "serve", "--ttft-ms", "200", "--port", "0")
    assert "--ttft-ms needs --tpot-ms" in err
    assert files(tmp_path) == []


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
    assert files(bad) == [name]  # no half-written report
    good = conformance_run(tmp_path / "good", {"a": "PASS"})
    if name == "results.json":  # a diff compares two runs of one kind
        err = _usage_error(capsys, "report", "diff", str(good), str(bad))
        assert str(bad / name) in err, err
