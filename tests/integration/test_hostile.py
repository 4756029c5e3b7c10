"""Every run ends on time whatever the target does: `opconform run` with default settings
against each hostile behaviour (tests/support/hostile.py) finishes in 120 s or less, with a failing
verdict and a written report.

The runs start together as soon as collection has finished (they mostly wait on the target's
deadlines, so they overlap the tests before them); each test then judges one of them. Each run
is killed at 300 s so a regression cannot hang the suite.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.support.hostile import BEHAVIOURS, HOSTILE_RUNS, HostileRun

pytestmark = pytest.mark.slow

MAX_WALL_SECONDS = 120.0


@pytest.fixture(scope="module")
def hostile_runs(request: pytest.FixtureRequest) -> dict[str, Future[HostileRun]]:
    # Started when collection finished (tests/conftest.py), so their minute of waiting on
    # deadlines overlaps the tests that run before this module.
    return request.config.stash[HOSTILE_RUNS]


@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_run_ends_on_time_with_a_failing_verdict_and_a_report(
    hostile_runs: dict[str, Future[HostileRun]], behaviour: str
) -> None:
    run = hostile_runs[behaviour].result()
    assert run.exit_code is not None, f"{behaviour}: still running after 300 s, killed"
    assert run.seconds <= MAX_WALL_SECONDS, (
        f"{behaviour}: the run took {run.seconds:.0f} s (limit {MAX_WALL_SECONDS:g} s)"
    )
    # 3: unreachable or could not judge; 1: the target answered and broke the contract.
    assert run.exit_code in (1, 3), f"{behaviour}: exit {run.exit_code}\n{run.output}"
    results = run.results
    assert results is not None, f"{behaviour}: no results.json\n{run.output}"
    assert results["verdict"] != "conformant", f"{behaviour}: verdict {results['verdict']}"
    report = Path(run.report_dir)
    assert (report / "report.html").is_file() and (report / "report.md").is_file(), (
        f"{behaviour}: no report written"
    )
