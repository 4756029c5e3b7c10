"""The opconform pytest plugin (`pytest conformance --base-url URL --api-key ...`): it only
translates pytest's hooks. The run comes resolved (settings.py), handed over by `opconform run`
as a `ConformanceRun` (run.py) or built from pytest's options; selection.py selects, verdicts.py
judges, record.py writes. It stays inert for suites without `requirement` markers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from opconform.config import OPTIONS, add_arguments
from opconform.conformance import selection
from opconform.conformance.run import Check, ConformanceRun, quiet_benchmarks
from opconform.conformance.settings import RunSettings
from opconform.exitcodes import UsageError
from opconform.target import Target

if TYPE_CHECKING:  # the client is imported when a run starts, not when pytest loads plugins
    from opconform.client import ApiClient
    from opconform.conformance.evidence import Recorder

_RUN = pytest.StashKey[ConformanceRun]()
_RESULT = pytest.StashKey[list[Any]]()
_DESELECTED = pytest.StashKey[set[str]]()
_SENT_BEFORE = pytest.StashKey[dict[str, int]]()
_UNUSABLE = pytest.StashKey[str]()  # why plain pytest's options make no run
_SETTINGS = pytest.StashKey[RunSettings]()  # plain pytest's, resolved from its options


def pytest_addoption(parser: pytest.Parser) -> None:
    """The run's options for plain pytest; `opconform run` hands its settings over instead."""
    group = parser.getgroup("opconform", "OriginalPoint conformance (opconform)")
    add_arguments(group.addoption, OPTIONS, dest_prefix="op_")
    group.addoption(
        "--opconform-config",
        dest="op_config_file",
        default=None,
        help="settings file (default: ./opconform.toml if present)",
    )


def _options(config: pytest.Config) -> tuple[dict[str, Any], Path | None]:
    file = config.getoption("op_config_file", None)
    cli = {o.name: config.getoption(f"op_{o.name}", None) for o in OPTIONS}
    return cli, Path(file) if file else None


def pytest_configure(config: pytest.Config) -> None:
    for line in selection.markers():
        config.addinivalue_line("markers", line)
    handed = [p for p in config.pluginmanager.get_plugins() if isinstance(p, ConformanceRun)]
    if handed:  # `opconform run` checked its run folder and names its JUnit file itself
        handed[0].config = config
        config.stash[_RUN] = handed[0]
        return
    try:
        settings = RunSettings.resolve(*_options(config))
    except UsageError as exc:  # said once checks are collected: other suites never see it
        config.stash[_UNUSABLE] = str(exc)
        return
    config.stash[_SETTINGS] = settings
    _plain_report_dir(config, settings.report_dir)


def _plain_report_dir(config: pytest.Config, report_dir: Path | None) -> None:
    if report_dir is None:
        return
    from opconform.preflight import check_report_dir

    try:  # a file in its path: one line now, not a traceback once the run has finished
        check_report_dir(report_dir, empty=False)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.pluginmanager.has_plugin("junitxml"):
        # Plain `pytest conformance --report-dir DIR` writes what `opconform run` writes. Set
        # here, before the junitxml plugin's own configure reads the option.
        config.option.xmlpath = config.option.xmlpath or str(report_dir / "junit.xml")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each check also carries its area as a marker, so `-m sdk` or `-m "not perf"` select
    areas as pytest users expect (before -m filtering runs)."""
    if selection.is_check(item):
        item.add_marker(selection.area_marker(selection.area_of(item)))


def _run_of(config: pytest.Config) -> ConformanceRun:
    """The run, once checks exist: its settings resolved once, by `opconform run` or above."""
    if _UNUSABLE in config.stash:
        raise UsageError(config.stash[_UNUSABLE])
    if _SETTINGS in config.stash:  # plain pytest
        run = ConformanceRun(config.stash[_SETTINGS])
        run.config = config
        config.stash[_RUN] = run
        return run
    cli, file = _options(config)
    given = [o.flag for o in OPTIONS if cli[o.name] is not None]
    given += ["--opconform-config"] if file else []
    if given:  # pytest arguments after `--` must not silently lose to the handed-over run
        raise UsageError(f"{given[0]}: give opconform's options before --, not to pytest")
    run = config.stash[_RUN]
    run.started = time.time()  # timed from its collected checks, as plain pytest's
    return run


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: the run counts what was collected
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    checks = [item for item in items if selection.is_check(item)]
    if not checks:
        return
    try:
        run = _run_of(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    run.collected = len(checks)
    quiet_benchmarks(config)
    chosen = selection.select(items, run.settings, bool(config.getoption("markexpr", "")))
    run.disabled_items.extend(chosen.opt_in)
    if chosen.drop:
        config.hook.pytest_deselected(items=chosen.drop)
    items[:] = chosen.keep


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember the checks a selection (-k, -m, --area, --requirement) left out: a run that
    leaves any out says so and gives no verdict on the whole contract."""
    for item in items:
        if selection.is_check(item):
            item.config.stash.setdefault(_DESELECTED, set()).add(item.nodeid)


def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None or not run.collected:
        return
    selected = sum(1 for item in session.items if selection.is_check(item))
    opt_in = {item.nodeid for item in run.disabled_items}
    left_out = session.config.stash.get(_DESELECTED, set()) - opt_in
    run.selection = selection.describe(session.config, run.settings, selected, left_out)
    if not selected:
        what = (run.selection or "the selection").removeprefix("selected ").split(" (")[0]
        only_opt_in = run.disabled_items and not selection.keyword_or_mark(session.config)
        hint = " (opt-in checks need -m slow or -m quota)" if only_opt_in else ""
        raise pytest.UsageError(f"{what} selects no check{hint}")
    if not session.items or session.config.option.collectonly:
        return
    try:
        run.start()
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    run.announce_plan(session.items)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is None:
        return
    run.stop()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if run.summary and reporter is not None:
        from opconform.conformance import record

        counted, verdict = record.verdict_lines(run.summary)
        reporter.write_line(counted)
        reporter.write_sep("=", verdict)


# ---------------------------------------------------------------------------- fixtures
def _run(request: pytest.FixtureRequest) -> ConformanceRun:
    run = request.config.stash.get(_RUN, None)
    if run is None or run.target is None:
        pytest.skip("not a conformance run")
    return run


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    run = _run(request)
    assert run.target is not None
    return run.target


@pytest.fixture(scope="session")
def api(request: pytest.FixtureRequest) -> ApiClient:
    """The run's ApiClient (opconform.client): no retries, deadlines, evidence recorded."""
    client = _run(request).client
    assert client is not None  # made with the target
    return client


@pytest.fixture(scope="session")
def evidence(request: pytest.FixtureRequest) -> Recorder:
    """The run's evidence recorder (opconform.conformance.evidence.Recorder): attach(),
    all_statuses."""
    return _run(request).recorder


@pytest.fixture
def check(request: pytest.FixtureRequest) -> Check:
    return Check(_run(request), request.node.nodeid)


@pytest.fixture(autouse=True)
def _opconform_evidence(request: pytest.FixtureRequest) -> Any:
    item = request.node
    run = request.config.stash.get(_RUN, None)
    if not selection.is_check(item) or run is None:
        yield
        return
    from opconform.conformance.invariants import Context
    from opconform.conformance.prefetch import sent_already
    from opconform.conformance.skips import blocked
    from opconform.conformance.translate import allure_labels

    run.recorder.take()
    ids = selection.requirement_ids(item)
    run.context = Context(frozenset(ids), item.nodeid)
    for rid in ids:
        item.user_properties.append(("requirement", rid))
    item.user_properties.append(("area", selection.area_of(item)))
    allure_labels(selection.area_of(item), ids)
    if run.unreachable:
        blocked("run", run.unreachable)
    if run.stopped and not sent_already(item):
        blocked("run", f"the run stopped sending: {run.stopped}")
    yield
    item.stash[_RESULT] = run.recorder.take()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """What the run had sent before this check's fixtures: the check's own requests, shared
    fixtures it is first to use included, are the difference (results.json `sent`)."""
    run = item.config.stash.get(_RUN, None)
    if run is not None and run.client is not None and selection.is_check(item):
        from opconform.conformance.prefetch import mark_start

        item.stash[_SENT_BEFORE] = dict(run.client.sent)
        mark_start(item)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A check whose prerequisite is already broken is not run. Decided here, once its fixtures
    are set up, so a check that configuration turns off reads DISABLED, not BLOCKED."""
    from opconform.conformance.skips import blocked
    from opconform.conformance.verdicts import broken_prerequisite

    run = item.config.stash.get(_RUN, None)
    if run is None or not selection.is_check(item):
        return
    cause = broken_prerequisite(
        selection.requirement_ids(item), selection.needs_of(item), run.state()
    )
    if cause is not None:
        blocked(cause[0], cause[1])


# ---------------------------------------------------------------------------- outcomes
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    run = item.config.stash.get(_RUN, None)
    if run is None or not selection.is_check(item):
        return
    from opconform.conformance.translate import judged, redact_report, write_evidence

    redact_report(run, report)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        result = judged(run, item, call, report, item.stash.get(_SENT_BEFORE, None))
        run.results.append(result)
        item.user_properties.append(("status", result.status))
    if report.when == "teardown":
        write_evidence(run, item, item.stash.get(_RESULT, []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is not None and run.target is not None:
        from opconform.conformance import record

        record.finish(run, session.items)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is None or not run.summary:
        return
    from opconform.conformance import record

    for line in record.summary_lines(run.summary):
        terminalreporter.write_line(line)
