"""The opconform pytest plugin: `pytest conformance --base-url URL --api-key ...`.

It adds the run options, starts the embedded gateway when no target is given, gives checks their
client and identities, turns pytest outcomes into opconform statuses (PASS, FAIL, WARN, SKIP,
DISABLED, ERROR), applies the expected-failure baseline, and writes results.json and redacted
transcripts into --report-dir. It stays inert for suites without `requirement` markers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from conformance import catalogue
from opconform import __version__
from opconform.config import (
    OPTIONS,
    TRANSPORT_OPTIONS,
    Target,
    add_arguments,
    resolve,
)
from opconform.exitcodes import UsageError
from opconform.text import elide

if TYPE_CHECKING:  # the client is imported when a run starts, not when pytest loads plugins
    from conformance.evidence import Recorder
    from opconform.client import ApiClient

OPT_IN_MARKERS = ("slow", "quota")
DISABLED_PREFIX = "[disabled] "
_RUN = pytest.StashKey["ConformanceRun"]()
_RESULT = pytest.StashKey[Any]()
_DESELECTED = pytest.StashKey[set[str]]()
SUITE_DIR = Path(__file__).resolve().parent
INVARIANT_PREFIX = "invariant::"  # the id of a whole-run rule's result
SELECTION_PASSED = "selection passed"  # the verdict of a narrowed run without a failure


def disabled(reason: str) -> NoReturn:
    """Skip a check because the run's configuration turned it off (not the target's doing)."""
    pytest.skip(DISABLED_PREFIX + reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opconform", "OriginalPoint conformance (opconform)")
    add_arguments(group.addoption, OPTIONS, dest_prefix="op_")
    group.addoption(
        "--opconform-config",
        dest="op_config_file",
        default=None,
        help="settings file (default: ./opconform.toml if present)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "requirement(*ids): the requirement IDs (conformance/requirements.yaml) a check covers",
        "area(name): the area of a check (auth, models, chat, ...)",
        "slow: opt-in, waits for rate-limit windows",
        "quota: opt-in, spends a Free key's tokens/day",
        "order_last: run after every other check",
        "needs(*ids): what this check's situation stands on beyond its requirements' needs "
        "(requirements.yaml); if one is broken, it is BLOCKED",
    ):
        config.addinivalue_line("markers", line)
    for area in catalogue.areas():
        config.addinivalue_line("markers", f"{_area_marker(area)}: checks of the {area} area")
    report_dir = _report_dir_option(config)
    if report_dir is not None:
        from opconform.preflight import check_report_dir

        try:  # a file in its path: one line now, not a traceback once the run has finished
            check_report_dir(report_dir, empty=False)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
    junit = config.pluginmanager.has_plugin("junitxml")
    if report_dir is not None and junit and not config.option.xmlpath:
        # Plain `pytest conformance --report-dir DIR` writes what `opconform run` writes. Set
        # here, before the junitxml plugin's own configure reads the option.
        config.option.xmlpath = str(report_dir / "junit.xml")


def _report_dir_option(config: pytest.Config) -> Path | None:
    """--report-dir (or OP_REPORT_DIR, or the settings file) as far as it can be read before
    collection; a bad setting is reported once the run resolves its options."""
    file = config.getoption("op_config_file", None)
    cli = {o.name: config.getoption(f"op_{o.name}", None) for o in OPTIONS}
    try:
        value = resolve(cli, config_file=Path(file) if file else None)["report_dir"]
    except UsageError:
        return None
    return Path(value) if value else None


def _area_marker(area: str) -> str:
    return area.replace("-", "_")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each check also carries its area as a marker, so `-m sdk` or `-m "not perf"` select
    areas as pytest users expect (before -m filtering runs)."""
    if _is_check(item):
        item.add_marker(_area_marker(area_of(item)))


class ConformanceRun:
    """Everything a run shares: target, client, evidence, invariants, results."""

    def __init__(self, config: pytest.Config) -> None:
        from conformance.evidence import Recorder
        from conformance.results import Baseline
        from opconform.redact import Redactor

        self.config = config
        cli = {o.name: config.getoption(f"op_{o.name}") for o in OPTIONS}
        file = config.getoption("op_config_file")
        self.values = resolve(cli, config_file=Path(file) if file else None)
        catalogue.check_areas(self.values["area"] or [])
        self.baseline = Baseline.load(self.values["expected_failures"])
        report_dir = self.values["report_dir"]
        self.report_dir = Path(report_dir) if report_dir else None
        self.redactor = Redactor()
        self.recorder = Recorder(self.redactor, observe=self._observe)
        self.invariants: Any = None
        self.context: Any = None
        self.results: list[Any] = []
        self.started = time.time()
        self.gateway: Any = None
        self.target: Target | None = None
        self.client: ApiClient | None = None
        self.disabled_items: list[pytest.Item] = []
        self.warnings: dict[str, list[str]] = {}
        self.notes: dict[str, list[str]] = {}
        self.unreachable: str | None = None  # why the target could not be reached at all
        self.collected = 0  # checks collected, before any selection
        self.selection: str | None = None  # "selected --area auth (12 of 121 checks)"
        self.plan: dict[str, Any] | None = None  # the requests the run plans (conformance.plan)

    def start(self) -> Target:
        if self.target is not None:
            return self.target
        from conformance.invariants import Context, Invariants
        from opconform.client import ApiClient, Budget, Limits, TargetBreaker
        from opconform.ratelimit import Pacer

        values = dict(self.values)
        embedded = not values.get("base_url")
        if embedded:
            from gateway.embedded import EmbeddedGateway

            self.gateway = EmbeddedGateway(values.get("gateway_args"))
            env = self.gateway.start()
            # The embedded gateway brings its own identities and test models.
            values.update(resolve({}, env=env, config_file=Path(os.devnull)))
            for name in (
                "models",
                "model_count",
                "all_models",
                "max_tokens_total",
                "connect_timeout",
                "read_timeout",
                "request_timeout",
                "deadline",
                "samples",
                "window_seconds",
                "latency_slo",
                "area",
                "requirement",
                "expected_failures",
                *TRANSPORT_OPTIONS,
            ):
                values[name] = self.values[name]
        self.target = Target.from_values(values, embedded=embedded)
        self.redactor.add_labelled(self.target.keys)
        self.redactor.add(*self.target.secrets())
        self.recorder.keys = {label: key for label, key in self.target.keys.items() if key}
        limits = Limits(
            connect_timeout=self.target.connect_timeout,
            read_timeout=self.target.read_timeout,
            request_timeout=self.target.request_timeout,
        )
        self.invariants = Invariants()
        self.context = Context()
        breaker = TargetBreaker(limits, time.monotonic() + self.target.deadline)
        self.client = ApiClient(
            self.target.base_url,
            self.target.keys,
            limits,
            budget=Budget(self.target.max_tokens_total),
            pacer=Pacer(
                plan_limits(self.target),
                window=self.target.window_seconds,
                time_left=breaker.remaining,
                on_wait=self.say,
            ),
            on_exchange=self.recorder,
            transport=self.target.transport,
        )
        self.client.breaker = breaker
        self.client.concurrency = concurrency_limits(self.target)
        from opconform.preflight import reach

        self.unreachable = reach(self.target.base_url, self.target.transport, limits)
        return self.target

    def say(self, message: str) -> None:
        """A line on the console while checks run (pytest's capture does not hide it)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"opconform: {self.redactor.text(message)}")

    def _observe(self, exchange: Any) -> None:
        if self.invariants is not None:
            from conformance.prefetch import context_or

            self.invariants.observe(exchange, context_or(self.context))

    @property
    def stopped(self) -> str | None:
        """Why the run sends nothing more (deadline, target-level breaker), if it stopped."""
        return None if self.client is None else self.client.breaker.reason

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.gateway is not None:
            self.gateway.stop()


def plan_limits(target: Target) -> dict[str, tuple[str, int | None]]:
    """Each identity's plan and its documented requests/min, for the pacer. The main and alt
    keys are of --plan (the restricted key too: nothing says otherwise); --pro-api-key is Pro."""
    from opconform.contract import PLANS

    own = (target.plan, target.requests_per_min)
    return {
        "main": own,
        "alt": own,
        "restricted": own,
        "pro": ("pro", PLANS["pro"].requests_per_min),
    }


def concurrency_limits(target: Target) -> dict[str, int]:
    """Requests at once per identity for independent requests: the plan's concurrency less one
    slot (a server may free a finished stream's slot a moment late); one where it is unknown."""
    from opconform.contract import PLANS

    own = max(1, (target.concurrent or 2) - 1)
    pro = max(1, (PLANS["pro"].concurrent or 2) - 1)
    return {"main": own, "alt": own, "restricted": own, "pro": pro}


def _is_check(item: pytest.Item) -> bool:
    return item.get_closest_marker("requirement") is not None


def requirement_ids(item: pytest.Item) -> list[str]:
    return [rid for mark in item.iter_markers("requirement") for rid in mark.args]


def area_of(item: pytest.Item) -> str:
    """Its requirements' area (requirements.yaml), unless the check declares its own."""
    mark = item.get_closest_marker("area")
    return str(mark.args[0]) if mark else catalogue.area_of(requirement_ids(item))


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: the run counts what was collected
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    checks = [item for item in items if _is_check(item)]
    if not checks:
        return
    try:
        run = ConformanceRun(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_RUN] = run
    run.collected = len(checks)
    _quiet_benchmarks(config)
    areas = set(run.values["area"] or [])
    wanted = set(run.values["requirement"] or [])
    from conformance.catalogue import requirements

    unknown = sorted(wanted - set(requirements()))
    if unknown:
        raise pytest.UsageError(f"--requirement: unknown ID(s) {', '.join(unknown)}")
    explicit_markers = bool(config.getoption("markexpr", ""))
    keep, drop = [], []
    for item in items:
        if not _is_check(item):
            keep.append(item)
            continue
        if (areas and area_of(item) not in areas) or (
            wanted and not wanted & set(requirement_ids(item))
        ):
            drop.append(item)
            continue
        opt_in = [m for m in OPT_IN_MARKERS if item.get_closest_marker(m)]
        if opt_in and not explicit_markers:
            drop.append(item)
            run.disabled_items.append(item)
            continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)

    # The rate-limit module exhausts the main key, so it runs after every other check (by file,
    # not area: some of its checks belong to other areas); quota and order_last after it.
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("order_last"):
            return 3
        if item.get_closest_marker("quota"):
            return 2
        return 1 if item.path.name == "test_ratelimit.py" else 0

    items[:] = sorted(keep, key=rank)


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember the checks a selection (-k, -m, --area, --requirement) left out: a run that
    leaves any out says so and gives no verdict on the whole contract."""
    for item in items:
        if _is_check(item):
            item.config.stash.setdefault(_DESELECTED, set()).add(item.nodeid)


def _quiet_benchmarks(config: pytest.Config) -> None:
    """pytest-benchmark's table and "Wrote benchmark data" only when asked (-v or
    --benchmark-verbose): the perf checks report their figures themselves."""
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.verbose or config.get_verbosity() > 0:
        return
    session.quiet = True
    session.logger.level = session.logger.QUIET


def _selection(config: pytest.Config, run: ConformanceRun, selected: int) -> str | None:
    """What a narrowed run selected, e.g. "selected --area auth (12 of 121 checks)"; None for
    the whole suite (every check but the opt-in ones, or more)."""
    opt_in = {item.nodeid for item in run.disabled_items}
    left_out = config.stash.get(_DESELECTED, set()) - opt_in
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    whole = any(path == SUITE_DIR or path in SUITE_DIR.parents for path in paths)
    if not left_out and whole:
        return None
    parts = [
        f"{flag} {','.join(run.values[name])}"
        for flag, name in (("--area", "area"), ("--requirement", "requirement"))
        if run.values[name]
    ]
    parts += [
        f"{flag} {value}"
        for flag, value in (
            ("-k", config.getoption("keyword", "")),
            ("-m", config.getoption("markexpr", "")),
        )
        if value
    ]
    if not whole:
        parts += [str(arg) for arg in config.args]
    total = f"{selected} of {selected + len(left_out)}" if whole else str(selected)
    return f"selected {' '.join(parts) or 'part of the suite'} ({total} checks)"


def config_keyword_or_mark(config: pytest.Config) -> bool:
    return bool(config.getoption("keyword", "") or config.getoption("markexpr", ""))


def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None:
        return
    selected = sum(1 for item in session.items if _is_check(item))
    run.selection = _selection(session.config, run, selected)
    if not selected:
        what = (run.selection or "the selection").removeprefix("selected ").split(" (")[0]
        only_opt_in = run.disabled_items and not config_keyword_or_mark(session.config)
        hint = " (opt-in checks need -m slow or -m quota)" if only_opt_in else ""
        raise pytest.UsageError(f"{what} selects no check{hint}")
    if not session.items or session.config.option.collectonly:
        return
    try:
        run.start()
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if run.client is not None and run.target is not None and not run.unreachable:
        from conformance.plan import make_plan, plan_lines

        run.plan = make_plan(session.items, run.target, run.client)
        for line in plan_lines(run.plan):
            run.say(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is not None:
        run.stop()
        _verdict_line(config, run)


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
    """The run's evidence recorder (conformance.evidence.Recorder): attach(), all_statuses."""
    return _run(request).recorder


class Check:
    """What a running check may say besides pass/fail: warnings (allowed by the contract but
    likely to hurt a client) end up as WARN."""

    def __init__(self, run: ConformanceRun, nodeid: str) -> None:
        self._run = run
        self._nodeid = nodeid

    def warn(self, message: str) -> None:
        self._run.warnings.setdefault(self._nodeid, []).append(message)

    def note(self, message: str) -> None:
        """A measurement worth reporting whatever the status (e.g. how long a slot took to
        come back): attached to the check's evidence."""
        self._run.notes.setdefault(self._nodeid, []).append(message)


@pytest.fixture
def check(request: pytest.FixtureRequest) -> Check:
    return Check(_run(request), request.node.nodeid)


@pytest.fixture(autouse=True)
def _opconform_evidence(request: pytest.FixtureRequest) -> Any:
    item = request.node
    if not _is_check(item) or request.config.stash.get(_RUN, None) is None:
        yield
        return
    run = request.config.stash[_RUN]
    from conformance.invariants import Context
    from conformance.prefetch import sent_already

    run.recorder.take()
    area = area_of(item)
    ids = requirement_ids(item)
    run.context = Context(frozenset(ids), item.nodeid)
    for rid in ids:
        item.user_properties.append(("requirement", rid))
    item.user_properties.append(("area", area))
    _allure_labels(area, ids)
    if run.unreachable:
        blocked("run", run.unreachable)
    if run.stopped and not sent_already(item):
        blocked("run", f"the run stopped sending: {run.stopped}")
    yield
    item.stash[_RESULT] = run.recorder.take()


_SENT_BEFORE = pytest.StashKey[dict[str, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """What the run had sent before this check's fixtures: the check's own requests, shared
    fixtures it is first to use included, are the difference (results.json `sent`)."""
    run = item.config.stash.get(_RUN, None)
    if run is not None and run.client is not None and _is_check(item):
        from conformance.prefetch import mark_start

        item.stash[_SENT_BEFORE] = dict(run.client.sent)
        mark_start(item)


def _sent_by(run: ConformanceRun, item: pytest.Item) -> dict[str, int]:
    before = item.stash.get(_SENT_BEFORE, None)
    if before is None or run.client is None:
        return {}
    from conformance.prefetch import sent_by

    after = run.client.sent
    return sent_by(item, {label: n - before.get(label, 0) for label, n in after.items()})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A check whose prerequisite is already broken is not run. Decided here, once its fixtures
    are set up, so a check that configuration turns off reads DISABLED, not BLOCKED."""
    run = item.config.stash.get(_RUN, None)
    if run is None or not _is_check(item):
        return
    cause = _broken_prerequisite(run, item)
    if cause is not None:
        blocked(cause[0], cause[1])


def blocked(cause: str, reason: str) -> NoReturn:
    """Stop a check because something it stands on is broken: a requirement (by ID) or the run
    itself ("run": deadline, target-level breaker, unreachable target)."""
    from conformance.verdicts import BLOCKED_PREFIX

    pytest.skip(f"{BLOCKED_PREFIX}{cause}] {reason}")


def needs_of(item: pytest.Item) -> list[str]:
    """The requirements a check stands on: its requirements' needs (requirements.yaml), then
    what its situation needs beyond them (`@pytest.mark.needs("OP-RL-007")`)."""
    situation = [rid for mark in item.iter_markers("needs") for rid in mark.args]
    return catalogue.prerequisites(requirement_ids(item), situation)


def _broken_prerequisite(run: ConformanceRun, item: pytest.Item) -> tuple[str, str] | None:
    """The first prerequisite already shown broken (by a check, or by an invariant so far)."""
    own = set(requirement_ids(item))
    for rid in needs_of(item):
        cause = None if rid in own else _broken(run, rid)
        if cause is not None and cause[0] not in own:  # a check is not blocked by itself
            return cause
    return None


def _broken(run: ConformanceRun, rid: str) -> tuple[str, str] | None:
    """(root requirement, why) when `rid` is broken so far in this run: a check failed on it,
    an invariant did, or its own checks were blocked by a root cause (which then blocks this
    one too); else None."""
    from conformance.results import BLOCKED, FAIL, WARN

    for result in run.results:
        failed = rid in result.requirements and result.status in (FAIL, WARN)
        if failed and result.baseline != "expected":
            return rid, f"blocked by {rid}: {elide(result.message, 200)}"
    known = run.baseline.match(f"invariant::{rid}", f"invariant: {rid}", [rid])
    if run.invariants is not None and rid in run.invariants.broken() and not known:
        tally = next(t for t in run.invariants.all_tallies() if t.requirement == rid)
        return rid, f"blocked by {rid}: {tally.examples[0][0]} ({tally.rate})"
    for result in run.results:
        root = result.blocked_by
        if rid in result.requirements and result.status == BLOCKED and root and root != "run":
            return root, result.message.split("; here:")[0]
    return None


def _allure_labels(area: str, ids: list[str]) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover - allure-pytest is a dependency
        return
    from conformance.catalogue import requirements

    allure.dynamic.epic(area)
    for rid in ids:
        allure.dynamic.story(rid)
        req = requirements().get(rid)
        if req is not None:
            allure.dynamic.description(
                f"{rid} ({req.level}): {req.summary}\n\nReference: {req.source}"
            )


# ---------------------------------------------------------------------------- outcomes
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    run = item.config.stash.get(_RUN, None)
    if run is None or not _is_check(item):
        return
    _redact_report(run, report)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        result = _judge(run, item, call, report)
        run.results.append(result)
        item.user_properties.append(("status", result.status))
    if report.when == "teardown":
        _finish_evidence(run, item)


def _judge(
    run: ConformanceRun, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> Any:
    """Translate pytest's report into an opconform result (conformance.verdicts decides), and
    make pytest's own report (console, JUnit, Allure) say the same."""
    from conformance.results import (
        BLOCKED,
        ERROR,
        FAIL,
        INCONCLUSIVE,
        PASS,
        WARN,
        CheckResult,
        level_of,
    )
    from conformance.verdicts import Outcome, only_assertions, status_of, transport_failure
    from opconform.client import (
        LimitSpent,
        RunStopped,
        StreamsDoNotEnd,
        TargetUnreachable,
        UnexpectedRateLimit,
    )

    ids = requirement_ids(item)
    level = level_of(ids)
    exc = call.excinfo.value if call.excinfo is not None else None
    failed_assertion = (
        exc is not None and report.when == "call" and report.failed and only_assertions(exc)
    )
    message = (
        _skip_reason(report)
        if report.skipped
        else (_assertion_text(exc) if failed_assertion else _error_message(call))
        if report.failed
        else ""
    )
    warnings = tuple(run.warnings.get(item.nodeid, []))
    exchanges = _evidence_first(list(run.recorder.current_exchanges), exc, message)
    transport = transport_failure(exchanges[0]) if exchanges else None
    status, message, blocked_by = status_of(
        Outcome(report.passed, report.skipped, failed_assertion, message, warnings, transport),
        level,
    )
    if isinstance(exc, RunStopped | TargetUnreachable | LimitSpent):
        status, blocked_by = BLOCKED, "run"
        message = f"not sent: {exc}"
    elif isinstance(exc, StreamsDoNotEnd):
        # Judged once, by the stream that ran past its cap (OP-STREAM-007's invariant).
        status, blocked_by = BLOCKED, "OP-STREAM-007"
        message = f"blocked by OP-STREAM-007: {exc}"
    elif (isinstance(exc, UnexpectedRateLimit) or type(exc).__name__ == "RateLimitError") and (
        run.invariants is not None and _limit_root(exc) in run.invariants.broken()
    ):
        # A 429 this check did not provoke: a limit below the plan's (OP-RL-007), or one counted
        # across keys (OP-RL-012), judged over the whole run, blocks it; otherwise the
        # harness's pacing failed, and ERROR says so.
        status, blocked_by = BLOCKED, _limit_root(exc)
        message = f"blocked by {blocked_by}: {exc}"
    for implied in getattr(exc, "prerequisites", ()):
        why = None if implied in ids or status not in (FAIL, WARN) else _broken(run, implied)
        if why is not None:
            status, blocked_by = BLOCKED, why[0]
            message = f"{why[1]}; here: {message}"
            break
    stuck = any(getattr(e, "window_not_reset", False) for e in exchanges)
    if stuck and status in (FAIL, WARN, ERROR, INCONCLUSIVE) and "OP-RL-009" not in ids:
        # A key still refused after the reset it named (OP-RL-009's invariant) spoils whatever
        # this check wanted from it.
        why = _broken(run, "OP-RL-009")
        if why is not None:
            status, blocked_by = BLOCKED, why[0]
            message = f"{why[1]}; here: {message}"
    if status in (FAIL, WARN, ERROR, INCONCLUSIVE):
        cause = _broken_prerequisite(run, item)
        if cause is not None:
            status, blocked_by = BLOCKED, cause[0]
            message = f"{cause[1]}; here: {message}"
    if status in (FAIL, WARN) and not failed_assertion and warnings:
        message = "; ".join(warnings)
    if status in (FAIL, WARN) and exchanges and report.passed is False:
        message = _name_request(message, exchanges[0])
    result = CheckResult(
        id=item.nodeid,
        name=item.name,
        area=area_of(item),
        requirements=ids,
        level=level,
        status=status,
        message=message,
        duration=round(call.duration, 4),
        warnings=list(warnings),
        needs=needs_of(item),
        implied=[r for r in getattr(exc, "prerequisites", ()) if r and r not in ids]
        if status in (FAIL, WARN)
        else [],
        blocked_by=blocked_by,
        replay=[run.recorder.replay(e) for e in exchanges[:3]] if status in (FAIL, WARN) else [],
        notes=list(run.notes.get(item.nodeid, [])),
        sent=_sent_by(run, item),
    )
    matched = run.baseline.match(item.nodeid, item.name, ids)
    if matched and status == FAIL:
        result.baseline = "expected"
        report.outcome = "skipped"
        report.wasxfail = f"expected failure ({matched} in the baseline)"
    elif matched and status == PASS:
        result.baseline = "stale"
        report.outcome = "failed"
        report.longrepr = (
            f"stale baseline: {matched} is listed in {run.baseline.path} but now passes; remove it"
        )
    elif status == WARN and report.failed:
        # A SHOULD broken: a warning, not a failed gate, in plain pytest too.
        report.outcome = "passed"
        result.warnings.append(message)
    elif status == BLOCKED and report.failed:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {message}")
    return result


REQUEST_NAMED = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) (/[^\s:?\]]*)")


def _evidence_first(exchanges: list[Any], exc: BaseException | None, message: str) -> list[Any]:
    """The check's exchanges, the one that showed the deviation first: the one the failure
    carries (expect attaches it), else the last whose request the message names ("GET
    /models -> 401: ..."), else the last the check did not abandon itself (streams a check
    held and closed after its request are context, not the answer it judged); the rest follow,
    newest first."""
    named = getattr(exc, "exchange", None)
    request = REQUEST_NAMED.search(message)
    if named is None and request is not None:
        method, path = request.groups()
        named = next(
            (e for e in reversed(exchanges) if e.method == method and e.path == path), None
        )
    judged = [e for e in exchanges if not e.aborted]
    focus = named if named is not None else (judged or exchanges or [None])[-1]
    rest = [e for e in reversed(exchanges) if e is not focus]
    return [focus, *rest] if focus is not None else rest


def _limit_root(exc: BaseException | None) -> str:
    """The whole-run requirement an unprovoked 429 stands on (the client's judgement)."""
    exchange = getattr(exc, "exchange", None)
    if getattr(exchange, "window_not_reset", False):
        return "OP-RL-009"
    if getattr(exchange, "stated_below_plan", False):
        return "OP-RL-004"
    return "OP-RL-012" if getattr(exchange, "shared_limit", False) else "OP-RL-007"


def _assertion_text(exc: BaseException | None) -> str:
    """The check's own words, without pytest's rewritten-assertion explanation."""
    text = str(exc).strip()
    return text.split("\nassert ")[0].strip() if text.count("\n") else text


def _name_request(message: str, exchange: Any) -> str:
    """Every failure names the request that caused it."""
    named = f"{exchange.method} {exchange.path}"
    if any(f"{method} /" in message for method in ("GET", "POST", "PUT", "DELETE", "PATCH")):
        return message
    body = elide(exchange.request_body[:2000].decode("utf-8", errors="replace"), 160)
    return f"{message} [request: {named}{' ' + body if body else ''}]"


def _redact_report(run: ConformanceRun, report: pytest.TestReport) -> None:
    """Failure text and captured output go to the terminal, JUnit and Allure: redact them here,
    where pytest records them."""
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        clean = run.redactor.text(text)
        if clean != text:
            report.longrepr = clean
    report.sections = [(name, run.redactor.text(content)) for name, content in report.sections]


def _finish_evidence(run: ConformanceRun, item: pytest.Item) -> None:
    exchanges = item.stash.get(_RESULT, None) or []
    result = next((r for r in reversed(run.results) if r.id == item.nodeid), None)
    if result is None:
        return
    if run.report_dir is not None and exchanges:
        from conformance.evidence import write_transcript

        result.evidence = write_transcript(
            run.report_dir / "transcripts", item.nodeid, exchanges, run.redactor
        )
    if exchanges:
        try:
            import allure

            allure.attach(
                run.redactor.text(json.dumps(exchanges, indent=2)),
                name="transcript",
                attachment_type=allure.attachment_type.JSON,
            )
        except Exception:  # allure inactive: nothing to attach to
            pass


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _error_message(call: pytest.CallInfo[None]) -> str:
    if call.excinfo is None:
        return "error"
    exc = call.excinfo.value
    name = type(exc).__name__
    return f"{name}: {exc}"


# ---------------------------------------------------------------------------- results
def _invariant_results(run: ConformanceRun) -> list[Any]:
    """One result per whole-run rule that judged anything: PASS, or FAIL/WARN with the first
    examples, their replay lines and the rate."""
    from conformance.catalogue import requirements
    from conformance.results import FAIL, PASS, WARN, CheckResult

    results = []
    catalogue = requirements()
    for tally in run.invariants.all_tallies():
        if not tally.seen:
            continue
        req = catalogue[tally.requirement]
        status = PASS
        message = ""
        if tally.broken:
            status = FAIL if req.level == "MUST" else WARN
            shown = "; ".join(
                f"{problem} ({exchange.method} {exchange.path}, in {check or 'a fixture'})"
                for problem, exchange, check in tally.examples
            )
            message = f"{tally.rule}: broken in {tally.rate}: {shown}"
        results.append(
            CheckResult(
                id=f"{INVARIANT_PREFIX}{tally.requirement}",
                name=f"invariant: {tally.rule}",
                area=req.area,
                requirements=[tally.requirement],
                level=req.level,
                status=status,
                message=run.redactor.text(message),
                needs=list(run.invariants.needs_of(tally.requirement)),
                implied=sorted(tally.implied or ()),
                samples=tally.rate,
                replay=[run.recorder.replay(e) for _, e, _ in tally.examples],
            )
        )
    return results


def _unreachable_results(run: ConformanceRun, items: list[pytest.Item]) -> list[Any]:
    from conformance.results import BLOCKED, CheckResult, level_of

    return [
        CheckResult(
            id=item.nodeid,
            name=item.name,
            area=area_of(item),
            requirements=requirement_ids(item),
            level=level_of(requirement_ids(item)),
            status=BLOCKED,
            message=f"not run: {run.unreachable}",
            blocked_by="run",
        )
        for item in items
        if _is_check(item) and not any(r.id == item.nodeid for r in run.results)
    ]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None or run.target is None:
        return
    from conformance.results import (
        BLOCKED,
        DISABLED,
        FAIL,
        WARN,
        CheckResult,
        as_dicts,
        counts,
        roll_up,
        root_causes,
        verdict,
    )
    from conformance.verdicts import apply_prerequisites, resolve_roots
    from schemas.loader import schema_hashes

    for item in run.disabled_items:
        opt_in = [m for m in OPT_IN_MARKERS if item.get_closest_marker(m)]
        run.results.append(
            CheckResult(
                id=item.nodeid,
                name=item.name,
                area=area_of(item),
                requirements=requirement_ids(item),
                level="MUST",
                status=DISABLED,
                message=f"opt-in ({', '.join(opt_in)}): select it with -m {opt_in[0]}",
            )
        )
    if run.unreachable:
        run.results.extend(_unreachable_results(run, session.items))
    elif run.invariants is not None:
        # Invariants speak for the requirements this selection covers (-m, --area, -k ...).
        selected = {
            rid for item in session.items if _is_check(item) for rid in requirement_ids(item)
        }
        # ... and for the deviations that blocked a selected check (a stream cut at its cap,
        # a key that stays refused): the root cause is reported whoever met it.
        blocking = {r.blocked_by for r in run.results if r.status == BLOCKED and r.blocked_by}
        for result in _invariant_results(run):
            broken = result.status in (FAIL, WARN) and blocking & set(result.requirements)
            if not (selected & set(result.requirements) or broken):
                continue
            matched = run.baseline.match(result.id, result.name, result.requirements)
            if matched and result.status == FAIL:
                result.baseline = "expected"
            run.results.append(result)
    apply_prerequisites(run.results)
    resolve_roots(run.results)
    partial = run.unreachable or (
        f"the run stopped sending: {run.stopped}" if run.stopped else None
    )
    summary, code = verdict(run.results, partial)
    if run.selection and summary == "conformant":
        summary = SELECTION_PASSED  # a narrowed run says nothing about the whole contract
    selection = f"partial: {run.selection}" if run.selection else None
    causes = root_causes(run.results)
    unused = sorted(set(run.baseline.entries) - run.baseline.used)
    run.summary = {  # type: ignore[attr-defined]
        "verdict": summary,
        "exit_code": code,
        "counts": counts(run.results),
        "root_causes": causes,
        "partial": partial,
        "selection": selection,
        "checks": len(run.results),
        "tests": sum(1 for r in run.results if not r.id.startswith(INVARIANT_PREFIX)),
        "requirements": len({rid for r in run.results for rid in r.requirements}),
    }
    if run.report_dir is None:
        return
    run.report_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "kind": "conformance",
        "suite": {"name": "opconform", "version": __version__},
        "target": {**run.target.describe(), "insecure": run.target.transport.insecure},
        "started_at": run.started,
        "finished_at": time.time(),
        "duration_s": round(time.time() - run.started, 3),
        "schema_hashes": schema_hashes(),
        "verdict": summary,
        "exit_code": code,
        "partial": partial,
        "selection": selection,
        "counts": counts(run.results),
        "root_causes": causes,
        "samples": run.target.samples,
        "plan": run.plan,
        "requests_sent": dict(run.client.sent) if run.client else {},
        "tokens_spent": run.client.budget.spent if run.client else 0,
        # Where the run waited for a key's window, and why (the plan's rate, or a 429).
        "pacing": {
            "waited_s": round(run.client.pacer.waited, 1) if run.client else 0,
            "waits": list(run.client.pacer.waits) if run.client else [],
        },
        "baseline": {
            "file": str(run.baseline.path) if run.baseline.path else None,
            "unused_entries": unused,
        },
        "checks": as_dicts(run.results),
        "requirements": roll_up(run.results),
    }
    text = run.redactor.text(json.dumps(document, indent=2))
    (run.report_dir / "results.json").write_text(text, encoding="utf-8")
    from reports.render import render_run

    render_run(run.report_dir)
    run.summary["report"] = str(run.report_dir / "report.html")  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    summary = getattr(run, "summary", None) if run else None
    if not summary:
        return
    for line in summary_lines(summary):
        terminalreporter.write_line(line)


def _verdict_line(config: pytest.Config, run: ConformanceRun) -> None:
    """The last lines of a run, after pytest's own counts: what opconform counted (which is
    not what pytest counted), then the verdict, its exit code and the report."""
    summary = getattr(run, "summary", None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not summary or reporter is None:
        return
    invariants, requirements = summary["checks"] - summary["tests"], summary["requirements"]
    reporter.write_line(
        f"opconform: {summary['checks']} checks = {summary['tests']} tests + {invariants} "
        f"whole-run invariants, over {requirements} requirement{'s' * (requirements != 1)} "
        "(pytest counts tests only: WARN as passed, BLOCKED and DISABLED as skipped or deselected)"
    )
    tally = ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n)
    report = f"; report: {summary['report']}" if summary.get("report") else ""
    reporter.write_sep(
        "=",
        f"opconform: {summary['verdict'].upper()} ({tally}); exit {summary['exit_code']}{report}",
    )


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The root causes first: "2 requirements broken; 19 checks blocked by them"."""
    causes = summary.get("root_causes") or []
    lines = []
    if summary.get("partial"):
        lines.append(f"PARTIAL RUN: {summary['partial']}")
    if summary.get("selection"):
        lines.append(f"{summary['selection']}: no verdict on the whole contract")
    if causes:
        blocked_total = sum(len(c["blocked"]) for c in causes)
        lines.append(
            f"{len(causes)} requirement(s) broken; {blocked_total} check(s) blocked by them"
        )
        for cause in causes:
            extra = f" (blocks {len(cause['blocked'])})" if cause["blocked"] else ""
            lines.append(
                f"  {cause['status']} {cause['requirement']}{extra}: {elide(cause['message'], 160)}"
            )
    return lines
