"""The opconform pytest plugin: `pytest conformance --base-url URL --api-key ...`.

It adds the run options, starts the embedded gateway when no target is given, gives checks their
client and identities, turns pytest outcomes into opconform statuses (PASS, FAIL, WARN, SKIP,
DISABLED, ERROR), applies the expected-failure baseline, and writes results.json and redacted
transcripts into --report-dir. It stays inert for suites without `requirement` markers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from opconform import __version__
from opconform.config import AREAS, OPTIONS, TRANSPORT_OPTIONS, Target, resolve
from opconform.exitcodes import UsageError

OPT_IN_MARKERS = ("slow", "quota")
DISABLED_PREFIX = "[disabled] "
_RUN = pytest.StashKey["ConformanceRun"]()
_RESULT = pytest.StashKey[Any]()


def disabled(reason: str) -> NoReturn:
    """Skip a check because the run's configuration turned it off (not the target's doing)."""
    pytest.skip(DISABLED_PREFIX + reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opconform", "OriginalPoint conformance (opconform)")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {
            "dest": f"op_{option.name}",
            "default": None,
            "help": option.help + (f" [env {option.env}]" if option.env else ""),
        }
        if option.kind == "bool":
            kwargs["action"] = "store_const"
            kwargs["const"] = True
        if option.kind == "lines":  # repeatable: --header A --header B
            kwargs["action"] = "append"
        if option.choices:
            kwargs["choices"] = option.choices
        group.addoption(*option.flags, **kwargs)
    group.addoption(
        "--report-dir",
        dest="op_report_dir",
        default=None,
        help="write results.json and transcripts here",
    )
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
    ):
        config.addinivalue_line("markers", line)
    for area in AREAS:
        config.addinivalue_line("markers", f"{_area_marker(area)}: checks of the {area} area")


def _area_marker(area: str) -> str:
    return area.replace("-", "_")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each check also carries its area as a marker, so `-m sdk` or `-m "not perf"` select
    areas as pytest users expect (before -m filtering runs)."""
    if _is_check(item):
        item.add_marker(_area_marker(area_of(item)))


class ConformanceRun:
    """Everything a run shares: target, client, evidence, results."""

    def __init__(self, config: pytest.Config) -> None:
        from conformance.evidence import Recorder
        from conformance.results import Baseline
        from opconform.redact import Redactor

        self.config = config
        cli = {o.name: config.getoption(f"op_{o.name}") for o in OPTIONS}
        file = config.getoption("op_config_file")
        self.values = resolve(cli, config_file=Path(file) if file else None)
        unknown_areas = sorted(set(self.values["area"] or []) - set(AREAS))
        if unknown_areas:
            raise UsageError(
                f"--area: unknown area(s) {', '.join(unknown_areas)}; known: {', '.join(AREAS)}"
            )
        self.baseline = Baseline.load(self.values["expected_failures"])
        report_dir = config.getoption("op_report_dir")
        self.report_dir = Path(report_dir) if report_dir else None
        self.redactor = Redactor()
        self.recorder = Recorder(self.redactor)
        self.results: list[Any] = []
        self.started = time.time()
        self.gateway: Any = None
        self.target: Target | None = None
        self.client: Any = None
        self.disabled_items: list[pytest.Item] = []
        self.warnings: dict[str, list[str]] = {}

    def start(self) -> Target:
        if self.target is not None:
            return self.target
        from opconform.client import ApiClient, Budget, Limits

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
                "latency_slo",
                "area",
                "requirement",
                "expected_failures",
                *TRANSPORT_OPTIONS,
            ):
                values[name] = self.values[name]
        self.target = Target.from_values(values, embedded=embedded)
        self.redactor.add(*self.target.secrets())
        limits = Limits(
            connect_timeout=self.target.connect_timeout,
            read_timeout=self.target.read_timeout,
            request_timeout=self.target.request_timeout,
        )
        self.client = ApiClient(
            self.target.base_url,
            self.target.keys,
            limits,
            budget=Budget(self.target.max_tokens_total),
            on_exchange=self.recorder,
            transport=self.target.transport,
        )
        return self.target

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.gateway is not None:
            self.gateway.stop()


def _is_check(item: pytest.Item) -> bool:
    return item.get_closest_marker("requirement") is not None


def requirement_ids(item: pytest.Item) -> list[str]:
    return [rid for mark in item.iter_markers("requirement") for rid in mark.args]


def area_of(item: pytest.Item) -> str:
    mark = item.get_closest_marker("area")
    return str(mark.args[0]) if mark else "other"


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


def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None or not session.items or session.config.option.collectonly:
        return
    try:
        run.start()
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is not None:
        run.stop()


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
def api(request: pytest.FixtureRequest) -> Any:
    """The run's ApiClient (opconform.client): no retries, deadlines, evidence recorded."""
    return _run(request).client


class Check:
    """What a running check may say besides pass/fail: warnings (allowed by the contract but
    likely to hurt a client) end up as WARN."""

    def __init__(self, run: ConformanceRun, nodeid: str) -> None:
        self._run = run
        self._nodeid = nodeid

    def warn(self, message: str) -> None:
        self._run.warnings.setdefault(self._nodeid, []).append(message)


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
    run.recorder.take()
    area = area_of(item)
    ids = requirement_ids(item)
    for rid in ids:
        item.user_properties.append(("requirement", rid))
    item.user_properties.append(("area", area))
    _allure_labels(area, ids)
    yield
    item.stash[_RESULT] = run.recorder.take()


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
    from conformance.results import (
        DISABLED,
        ERROR,
        FAIL,
        PASS,
        SKIP,
        WARN,
        CheckResult,
        level_of,
    )

    if report.when == "call" or (report.when == "setup" and not report.passed):
        ids = requirement_ids(item)
        level = level_of(ids)
        message = ""
        if report.passed:
            status = WARN if run.warnings.get(item.nodeid) else PASS
        elif report.skipped:
            reason = _skip_reason(report)
            status = DISABLED if reason.startswith(DISABLED_PREFIX) else SKIP
            message = reason.removeprefix(DISABLED_PREFIX)
        elif (
            call.excinfo is not None
            and report.when == "call"
            and call.excinfo.errisinstance((AssertionError, pytest.fail.Exception))
        ):
            status = FAIL if level == "MUST" else WARN
            message = str(call.excinfo.value).strip()
        else:
            status = ERROR
            message = _error_message(call)
        result = CheckResult(
            id=item.nodeid,
            name=item.name,
            area=area_of(item),
            requirements=ids,
            level=level,
            status=status,
            message=message,
            duration=round(call.duration, 4),
            warnings=list(run.warnings.get(item.nodeid, [])),
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
                f"stale baseline: {matched} is listed in "
                f"{run.baseline.path} but now passes; remove it"
            )
        elif status == WARN and report.failed:
            # A SHOULD broken: a warning, not a failed gate, in plain pytest too.
            report.outcome = "passed"
            result.warnings.append(message)
        run.results.append(result)
        item.user_properties.append(("status", result.status))
    if report.when == "teardown":
        _finish_evidence(run, item)


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
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None or run.target is None:
        return
    from conformance.results import DISABLED, CheckResult, as_dicts, counts, roll_up, verdict
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
    summary, code = verdict(run.results)
    unused = sorted(set(run.baseline.entries) - run.baseline.used)
    run.summary = {  # type: ignore[attr-defined]
        "verdict": summary,
        "exit_code": code,
        "counts": counts(run.results),
    }
    if run.report_dir is None:
        return
    run.report_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "kind": "conformance",
        "suite": {"name": "opconform", "version": __version__},
        "target": run.target.describe(),
        "started_at": run.started,
        "finished_at": time.time(),
        "duration_s": round(time.time() - run.started, 3),
        "schema_hashes": schema_hashes(),
        "verdict": summary,
        "exit_code": code,
        "counts": counts(run.results),
        "requests_sent": dict(run.client.sent) if run.client else {},
        "tokens_spent": run.client.budget.spent if run.client else 0,
        "baseline": {
            "file": str(run.baseline.path) if run.baseline.path else None,
            "unused_entries": unused,
        },
        "checks": as_dicts(run.results),
        "requirements": roll_up(run.results),
    }
    text = run.redactor.text(json.dumps(document, indent=2))
    (run.report_dir / "results.json").write_text(text, encoding="utf-8")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    summary = getattr(run, "summary", None) if run else None
    if not summary:
        return
    tally = ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n)
    terminalreporter.write_sep("=", f"opconform: {summary['verdict'].upper()} ({tally})")
