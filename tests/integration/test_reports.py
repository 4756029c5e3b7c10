"""Reports rendered from real runs: readable HTML (checked in headless Chromium when it is
installed), Markdown for pull requests, diffs that find regressions, load plots, Allure."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.conftest import SuiteRun, opconform_cli, run_suite

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SuiteRun]:
    folder = tmp_path_factory.mktemp("reports")
    result = {}
    for name, faults in (("clean", []), ("faulty", ["--fault", "stream-no-done"])):
        with EmbeddedGateway(faults) as gateway:
            result[name] = run_suite(gateway.env, folder / name, "--area", "streaming,errors")
    return result


def test_run_writes_html_and_markdown(runs: dict[str, SuiteRun]) -> None:
    clean, faulty = runs["clean"].report_dir, runs["faulty"].report_dir
    # Two areas: the selection passed, and the report never says CONFORMANT for the contract.
    clean_markdown = (clean / "report.md").read_text()
    assert "SELECTION PASSED" in clean_markdown and "CONFORMANT" not in clean_markdown
    assert "partial: selected --area streaming,errors" in clean_markdown
    markdown = (faulty / "report.md").read_text()
    assert "NOT CONFORMANT" in markdown and "| OP-STREAM-007 | MUST | **FAIL** |" in markdown
    row = markdown.split("| OP-STREAM-007 | MUST | **FAIL** |")[1].splitlines()[0]
    assert "came 0 times" in row  # the failing check's message, beside its requirement
    html = (faulty / "report.html").read_text()
    assert 'id="OP-STREAM-007"' in html and "The stream ends with a [DONE] message." in html
    assert "http://" not in html.split("<body>")[0].replace("http://127.0.0.1", "")  # no CDN
    assert "<script" not in html  # self-contained and static


def test_failure_shows_its_evidence(runs: dict[str, SuiteRun]) -> None:
    html = (runs["faulty"].report_dir / "report.html").read_text()
    row = html[html.index('id="OP-STREAM-007"') :]
    row = row[: row.index("</tr>")]
    assert "came 0 times" in row  # what was expected and what came back
    assert "POST http://127.0.0.1" in row and "text/event-stream" in row  # the exchange
    # The Authorization header names the identity it carried, never the key.
    assert "Bearer &lt;pro key&gt;" in row or "Bearer &lt;main key&gt;" in row
    assert "op_sk_test" not in row


def test_report_command_rebuilds(runs: dict[str, SuiteRun]) -> None:
    folder = runs["faulty"].report_dir
    (folder / "report.html").unlink()
    done = opconform_cli("report", str(folder))
    assert done.returncode == 0 and (folder / "report.html").is_file()


def test_diff_finds_the_regression(runs: dict[str, SuiteRun]) -> None:
    clean, faulty = str(runs["clean"].report_dir), str(runs["faulty"].report_dir)
    worse = opconform_cli("report", "diff", clean, faulty)
    assert worse.returncode == 1, worse.stdout
    assert "REGRESSED conformance/test_streaming.py::test_done_once_and_last" in worse.stdout
    better = opconform_cli("report", "diff", faulty, clean)
    assert better.returncode == 0 and "IMPROVED" in better.stdout
    same = opconform_cli("report", "diff", clean, clean)
    assert same.returncode == 0 and "0 regressed" in same.stdout


def test_bad_report_input(tmp_path: Path) -> None:
    assert opconform_cli("report", str(tmp_path)).returncode == 2
    assert opconform_cli("report", "diff", str(tmp_path)).returncode == 2


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)
def test_html_renders_in_chromium(runs: dict[str, SuiteRun], tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = (runs["faulty"].report_dir / "report.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile"), "--enable-logging=stderr", "--v=0"]
    done = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, *profile, "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'id="verdict"' in done.stdout and "NOT CONFORMANT" in done.stdout
    assert 'class="status FAIL">FAIL' in done.stdout
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            *profile[:1],
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


@pytest.mark.slow
def test_load_report_has_plots(tmp_path: Path) -> None:
    done = opconform_cli("load", "steady", "--duration", "4s", "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= 3 and "TTFT histogram" in html
    assert "PASS" in (tmp_path / "report.md").read_text()


def test_allure_without_the_tool_says_how(runs: dict[str, SuiteRun]) -> None:
    from opconform.reports.command import allure_command

    if allure_command() is not None:
        pytest.skip("Allure is installed here")
    done = opconform_cli("report", str(runs["clean"].report_dir), "--allure")
    assert done.returncode == 3 and "npm install allure-commandline" in done.stdout


def test_markdown_carries_each_replay_line_once(runs: dict[str, SuiteRun]) -> None:
    markdown = (runs["faulty"].report_dir / "report.md").read_text()
    reproduce = markdown[markdown.index("#### Reproduce") :]
    lines = [line for line in reproduce.splitlines() if line.startswith("curl ")]
    assert lines and len(lines) == len(set(lines)), lines
    assert "$OP_PRO_API_KEY" in reproduce or "$OP_API_KEY" in reproduce
    assert "op_sk_test" not in markdown
