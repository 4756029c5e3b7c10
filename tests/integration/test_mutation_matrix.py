"""The proof that the checks work: for every fault of the reference gateway, the suite fails, in
the check that names the requirement the fault breaks. Also writes the matrix as a table."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest

from opconform.conformance.catalogue import requirements
from opconform.conformance.verdicts import REQUEST_NAMED
from opconform.gateway.embedded import EmbeddedGateway
from opconform.gateway.faults import FAULTS, Fault
from tests.conftest import SuiteRun, run_suite
from tests.support.mutation import REQUIREMENT_FAULTS, SCHEDULE, SLOW_FIRST

MATRIX_REPORT = (
    Path(__file__).resolve().parent.parent.parent / "reports" / "runs" / "mutation-matrix.md"
)


def _run_fault(fault: Fault, folder: Path) -> SuiteRun:
    gateway_args = ["--fault", fault.name, *fault.serve_args]
    suite_args = ["--requirement", ",".join(fault.breaks), *fault.needs]
    if {"OP-RL-009", "OP-RL-013"} & set(fault.breaks):
        # The gateway's window and the run's pacing alike: seconds, not a minute.
        suite_args += ["-m", "slow or quota or not slow", "--max-tokens-total", "400000"]
        suite_args += ["--window-seconds", "3"]
        gateway_args += ["--window-seconds", "3"]  # "wait Retry-After" in seconds, not a minute
    with EmbeddedGateway(gateway_args) as gateway:
        return run_suite(gateway.env, folder / fault.name, *suite_args)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SuiteRun]:
    folder = tmp_path_factory.mktemp("matrix")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(
            zip(
                SCHEDULE,
                pool.map(lambda name: _run_fault(FAULTS[name], folder), SCHEDULE),
                strict=True,
            )
        )
    caught = {name: _caught(FAULTS[name], run) for name, run in runs.items()}
    MATRIX_REPORT.parent.mkdir(parents=True, exist_ok=True)
    lines = ["| fault | breaks | caught by |", "|---|---|---|"]
    for name in REQUIREMENT_FAULTS:
        checks = ", ".join(caught[name]) or "NOT CAUGHT"
        lines.append(f"| {name} | {', '.join(FAULTS[name].breaks)} | {checks} |")
    total = sum(1 for c in caught.values() if c)
    lines.append(f"\n{total} of {len(REQUIREMENT_FAULTS)} faults caught")
    MATRIX_REPORT.write_text("\n".join(lines) + "\n")
    return runs


def _caught(fault: Fault, run: SuiteRun) -> list[str]:
    """The checks that failed (MUST) or warned (SHOULD) on each requirement the fault breaks;
    empty if any of its requirements went unnoticed."""
    names = []
    for rid in fault.breaks:
        wanted = "FAIL" if requirements()[rid].level == "MUST" else "WARN"
        hits = [c["name"] for c in run.checks_for(rid) if c["status"] == wanted]
        if not hits:
            return []
        names += hits
    return sorted(set(names))


@pytest.mark.slow
@pytest.mark.parametrize("name", REQUIREMENT_FAULTS)
def test_fault_is_caught_by_its_check(matrix: dict[str, SuiteRun], name: str) -> None:
    fault, run = FAULTS[name], matrix[name]
    assert (run.report_dir / "results.json").is_file(), run.stderr[-2000:]
    statuses = {
        rid: [(c["name"], c["status"], c["message"][:120]) for c in run.checks_for(rid)]
        for rid in fault.breaks
    }
    assert _caught(fault, run), f"{name} went unnoticed: {statuses}"
    must = any(requirements()[rid].level == "MUST" for rid in fault.breaks)
    assert run.code == (1 if must else 0), (
        f"exit code {run.code} (MUST broken: {must}): {run.stdout[-800:]}"
    )


@pytest.mark.slow
def test_every_check_fails_under_some_fault(matrix: dict[str, SuiteRun]) -> None:
    """A check that no fault can make fail proves nothing: each one must be caught somewhere."""
    import contextlib
    import io

    from opconform.conformance.command import coverage

    with contextlib.redirect_stdout(io.StringIO()):
        checks = {
            nodeid.split("::")[1].split("[")[0] for ids in coverage().values() for nodeid in ids
        }
    caught = {
        name.split("[")[0] for fault, run in matrix.items() for name in _caught(FAULTS[fault], run)
    }
    assert checks <= caught, f"checks no fault makes fail: {sorted(checks - caught)}"


# ---------------------------------------------------------------------------- full-suite matrix
# The narrowed matrix above cannot see a fault that also breaks, or is blamed on, another
# requirement. This one runs the whole default suite per fault, and per combination of faults,
# and asserts the exact set of root causes. All of it takes ~10 min on 2 cores: `make
# test-nightly`; `make test` runs the cases of issue 17 (EVERY_BUILD) in ~30 s.
COMBINATIONS: tuple[tuple[str, ...], ...] = (
    # Each broken requirement is a root cause of its own, never hidden as BLOCKED by the other.
    ("stream-no-done", "429-no-retry-after"),
    ("error-body-missing-type", "error-code-string"),
    ("error-body-missing-type", "429-no-retry-after"),
)
# Misattributions the full matrix found and that are not fixed yet: strict, so a fix shows.
KNOWN_MISATTRIBUTED: dict[str, str] = {}
# Nightly only (make test's time): an HTML 404 is OP-ERR-004's own, even with the error format
# broken everywhere (interop suite issue 12: only a JSON body's format is OP-ERR-001's).
NIGHTLY_COMBINATIONS: tuple[tuple[str, ...], ...] = (("error-body-missing-type", "not-found-html"),)
FULL_MATRIX = [(name,) for name in REQUIREMENT_FAULTS] + list(COMBINATIONS + NIGHTLY_COMBINATIONS)
# Requirements a fault must leave judged (PASS) although it breaks a neighbour they were once
# blocked by: a limit found on completions only is still a 429 to inspect (interop suite issue 11).
STILL_JUDGED: dict[str, tuple[str, ...]] = {
    "ratelimit-only-completions": ("OP-RL-008", "OP-RL-012", "OP-SDK-002", "OP-SDK-004"),
}
NEVER_ENDING_RUN_BOUND_S = 120.0
EVERY_BUILD = {
    *COMBINATIONS,
    ("429-no-retry-after",),  # once blamed on OP-RL-010 as well
    ("chat-usage-mismatch",),  # once a WARN of OP-STREAM-009 as well
    ("stream-never-ends",),  # once every stream check waited out its own cap
}


def _run_full(names: tuple[str, ...], folder: Path) -> SuiteRun:
    gateway_args: list[str] = []
    suite_args: list[str] = []
    for name in names:
        gateway_args += ["--fault", name, *FAULTS[name].serve_args]
        suite_args += FAULTS[name].needs
    if any({"OP-RL-009", "OP-RL-013"} & set(FAULTS[name].breaks) for name in names):
        # The gateway's window and the run's pacing alike: seconds, not a minute.
        suite_args += ["-m", "slow or quota or not slow", "--max-tokens-total", "400000"]
        suite_args += ["--window-seconds", "3"]
        gateway_args += ["--window-seconds", "3"]
    with EmbeddedGateway(gateway_args) as gateway:
        return run_suite(gateway.env, folder / "+".join(names), *suite_args)


@pytest.fixture(scope="module")
def full_matrix(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, ...], SuiteRun]:
    """The full runs of the cases this session runs (not skipped as nightly), all at once."""
    wanted: set[tuple[str, ...]] = {
        tuple(cast(tuple[str, ...], item.callspec.params["names"]))
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.module is request.module
        and hasattr(item, "callspec")
        and "names" in item.callspec.params
        and not item.get_closest_marker("skip")
    }
    folder = tmp_path_factory.mktemp("full-matrix")
    slow = [(name,) for name in SLOW_FIRST]
    schedule = [names for names in slow + FULL_MATRIX if names in wanted]
    schedule = list(dict.fromkeys(schedule))
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(
            zip(schedule, pool.map(lambda names: _run_full(names, folder), schedule), strict=True)
        )


def _evidence_problems(cause: dict[str, Any], checks: dict[str, dict[str, Any]]) -> list[str]:
    """Each failing check shows the exchange it complains about: a replay line, and when its
    message names a request, the first replay line is that request."""
    problems = []
    for check_id in cause["checks"]:
        check = checks[check_id]
        replay = check.get("replay") or []
        if not replay:
            if check.get("evidence") or check_id.startswith("invariant::"):
                problems.append(f"{check_id}: no replay line")
            continue
        named = REQUEST_NAMED.search(check["message"])
        if named and not check_id.startswith("invariant::"):
            method, path = named.groups()
            first = replay[0]
            if path.split("/")[-1] not in first or (method != "GET" and method not in first):
                problems.append(f"{check_id}: names {method} {path} but replays {first[:160]}")
    return problems


def _marks(names: tuple[str, ...]) -> list[pytest.MarkDecorator]:
    marks = [] if names in EVERY_BUILD else [pytest.mark.nightly]
    if len(names) == 1 and names[0] in KNOWN_MISATTRIBUTED:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISATTRIBUTED[names[0]]))
    return marks


@pytest.mark.slow
@pytest.mark.parametrize(
    "names", [pytest.param(names, id="+".join(names), marks=_marks(names)) for names in FULL_MATRIX]
)
def test_full_run_blames_exactly_the_fault(
    full_matrix: dict[tuple[str, ...], SuiteRun], names: tuple[str, ...]
) -> None:
    run = full_matrix[names]
    assert (run.report_dir / "results.json").is_file(), run.stderr[-2000:]
    results = run.results
    wanted = {rid for name in names for rid in FAULTS[name].breaks}
    causes = {cause["requirement"]: cause for cause in results["root_causes"]}
    shown = {rid: cause["message"][:200] for rid, cause in causes.items()}
    assert set(causes) == wanted, f"root causes {shown}, expected {sorted(wanted)}"
    # A SHOULD broken alone is a passing gate: nothing it blocks may turn it into "could not
    # judge" (exit 3).
    must = any(requirements()[rid].level == "MUST" for rid in wanted)
    assert run.code == (1 if must else 0), f"exit {run.code}: {results['counts']}"
    checks = {check["id"]: check for check in results["checks"]}
    problems = [p for cause in causes.values() for p in _evidence_problems(cause, checks)]
    assert not problems, problems
    rows = {row["id"]: row for row in results["requirements"]}
    judged = {rid: rows[rid]["status"] for name in names for rid in STILL_JUDGED.get(name, ())}
    assert all(status == "PASS" for status in judged.values()), judged
    if "stream-never-ends" in names:
        # Found once: the later stream checks are blocked by it instead of each waiting out its
        # own cap (a bound, like the hostile runs', not a speed goal: measured ~16 s).
        blocked = causes["OP-STREAM-007"]["blocked"]
        assert blocked, "no check was blocked by the stream that never ended"
        assert results["duration_s"] <= NEVER_ENDING_RUN_BOUND_S, results["duration_s"]


@pytest.mark.slow
def test_a_narrowed_run_reports_the_stream_that_never_ended(tmp_path: Path) -> None:
    """OP-STREAM-007's own check is outside the selection, yet a stream cut at its cap blocked
    the selected checks: its whole-run result is still the root cause, with that stream as
    evidence, so the run fails (exit 1) instead of "could not judge" (exit 3). Measured ~9 s."""
    with EmbeddedGateway(["--fault", "stream-never-ends"]) as gateway:
        run = run_suite(gateway.env, tmp_path / "run", "--area", "compat")
    results = run.results
    assert run.code == 1, run.stdout[-2000:] + run.stderr[-1000:]
    causes = {cause["requirement"]: cause for cause in results["root_causes"]}
    assert set(causes) == {"OP-STREAM-007"}, results["root_causes"]
    assert causes["OP-STREAM-007"]["blocked"], "no selected check was blocked by it"
    checks = {check["id"]: check for check in results["checks"]}
    assert causes["OP-STREAM-007"]["checks"] == ["invariant::OP-STREAM-007"]
    assert not _evidence_problems(causes["OP-STREAM-007"], checks)
    assert "no [DONE]" in checks["invariant::OP-STREAM-007"]["message"]
