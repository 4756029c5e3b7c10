"""`opconform run` (a thin wrapper over pytest and the plugin) and `opconform requirements`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from opconform.config import OPTIONS, add_arguments
from opconform.conformance import record
from opconform.conformance.settings import RunSettings
from opconform.exitcodes import UsageError
from opconform.outcome import HARNESS, USAGE
from opconform.preflight import check_report_dir, discard_report_dir, make_report_dir
from opconform.redact import sweep

SUITE_DIR = Path(__file__).resolve().parent
DEFAULT_REPORTS = Path("reports") / "runs"


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="check a deployment against the contract",
        description="Run the conformance suite. With no --base-url it starts the embedded "
        "reference gateway on a free loopback port and checks that. Exit 0: conformant (or, for "
        "a narrowed run, the selection passed); 1: a MUST is broken; 2: bad usage, nothing "
        "written; 3: could not judge.",
    )
    add_arguments(p.add_argument, OPTIONS)
    p.add_argument("--config", type=Path, help="settings file (default ./opconform.toml)")
    p.add_argument(
        "-m",
        dest="markexpr",
        help="pytest marker expression, e.g. 'slow or not slow' to include the opt-in checks",
    )
    p.add_argument("-k", dest="keyword", help="pytest keyword expression")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="more output: each check by name, pytest-benchmark's table",
    )
    p.add_argument("pytest_args", nargs="*", help="after --: passed to pytest as they are")
    p.set_defaults(handler=run)


# Plugins other installed packages register that a conformance run never uses: locust's alone
# costs a second of start-up (gevent), about half of a one-requirement run.
_NO_PLUGINS = [
    "-p",
    "no:cacheprovider",
    "-p",
    "no:locust",
    "-p",
    "no:schemathesis",
    "-p",
    "no:anyio",
]


def _selection_args(args: argparse.Namespace) -> list[str]:
    """What selects checks besides the resolved settings (pytest's own -m, -k and arguments):
    shared by the collection pass and the run."""
    argv = ["-m", args.markexpr] if args.markexpr else []
    argv += ["-k", args.keyword] if args.keyword else []
    return argv + list(args.pytest_args)


def _pytest_args(args: argparse.Namespace, report_dir: Path) -> list[str]:
    argv = [
        str(SUITE_DIR),
        *_NO_PLUGINS,
        "--tb=short",
        "-rN",
        "--junitxml",
        str(report_dir / "junit.xml"),
        "--alluredir",
        str(report_dir / "allure-results"),
        "--benchmark-json",
        str(report_dir / "benchmark.json"),
        "--benchmark-storage",
        str(report_dir / "benchmarks"),
        "--benchmark-columns",
        "median,min,max,rounds",
        "-o",
        "junit_family=xunit2",
        "-o",
        "junit_suite_name=opconform",
        "-o",
        "console_output_style=count",
        # pytest-benchmark warns when a selection has no perf checks: not the user's concern.
        "-W",
        "ignore::pytest_benchmark.logger.PytestBenchmarkWarning",
        # This process imported the suite's package before pytest started: harmless here.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    argv += ["-q"] if args.quiet else []
    argv += ["-v"] if args.verbose else []
    return argv + _selection_args(args)


def _narrowed(args: argparse.Namespace, settings: RunSettings) -> bool:
    return bool(_selection_args(args) or settings.areas or settings.requirements)


def check_selection(args: argparse.Namespace, settings: RunSettings) -> None:
    """A selection (-k, -m, --area, --requirement, pytest arguments) that matches no check is a
    usage error before anything is written: collected once, quietly, by the plugin's own rules
    (pytest_collection_finish raises "... selects no check")."""
    import contextlib
    import io

    import pytest

    from opconform.conformance.run import ConformanceRun

    argv = [
        str(SUITE_DIR),
        *_NO_PLUGINS,
        "--collect-only",
        "-p",
        "no:junitxml",  # a collection writes nothing, even with OP_REPORT_DIR set
        "-q",
        "--no-header",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *_selection_args(args),
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(argv, plugins=[ConformanceRun(settings)])
    if code == pytest.ExitCode.USAGE_ERROR:
        errors = [line for line in out.getvalue().splitlines() if line.startswith("ERROR: ")]
        raise UsageError(errors[0].removeprefix("ERROR: ") if errors else "bad pytest arguments")
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UsageError(f"{' '.join(args.pytest_args) or 'the selection'} selects no check")


def validate(args: argparse.Namespace) -> RunSettings:
    """Everything the plugin would refuse, checked before a run folder exists or pytest prints
    a line: options, config file, target, TLS files, headers, areas, requirement IDs, SLOs,
    baseline, the run folder, the embedded gateway's arguments, the selection. Starts nothing.
    Returns the run's settings, resolved once: pytest gets them as they are."""
    from opconform.gateway.command import check_gateway_args

    cli = {option.name: getattr(args, option.name) for option in OPTIONS}
    settings = RunSettings.resolve(cli, args.config, target=True)
    if settings.embedded:  # the embedded gateway brings its own keys and target
        check_gateway_args(settings.values["gateway_args"])
    report_dir = settings.report_dir or DEFAULT_REPORTS / time.strftime("%Y%m%dT%H%M%S")
    settings = replace(settings, report_dir=report_dir)
    check_report_dir(report_dir)
    if _narrowed(args, settings):
        check_selection(args, settings)
    return settings


def _unreachable(settings: RunSettings) -> str | None:
    """Why a remote target cannot be reached at all (one connection, TLS handshake), else None."""
    from opconform.preflight import reach

    target = settings.target
    if target is None:
        return None  # the embedded gateway: started by the plugin, on loopback
    return reach(target.base_url, target.transport, target.timeouts)


def run(args: argparse.Namespace) -> int:
    import pytest

    from opconform.conformance.run import ConformanceRun

    settings = validate(args)
    report_dir = settings.report_dir
    assert report_dir is not None  # validate chose one
    why = _unreachable(settings)
    if why is not None:
        record.write_unreachable(report_dir, settings.remote_target(), settings.baseline, why)
        print(f"opconform run: {why}", file=sys.stderr)
        return HARNESS
    created = make_report_dir(report_dir)
    code = pytest.main(_pytest_args(args, report_dir), plugins=[ConformanceRun(settings)])
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
        # Whatever pytest printed, the run leaves no folder behind: a corrected rerun can use it.
        discard_report_dir(report_dir, created)
        return USAGE
    if code == pytest.ExitCode.INTERRUPTED:
        return HARNESS
    results = report_dir / "results.json"
    if not results.is_file():
        print(f"opconform run: no results were written (pytest exit {int(code)})", file=sys.stderr)
        return HARNESS
    document = json.loads(results.read_text(encoding="utf-8"))
    sweep(report_dir, settings.secrets())
    if document.get("partial"):
        # The one line that says why the run could not judge everything (a certificate that
        # does not verify, the deadline, a target broken at the transport).
        print(f"opconform run: {document['partial']}", file=sys.stderr)
    return int(document["exit_code"])


def add_requirements(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "requirements",
        help="print the requirement catalogue and its coverage",
        description="Every requirement of the reference, its level, and the "
        "checks that cover it (or why none can).",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=requirements_command)


def coverage() -> dict[str, list[str]]:
    """Requirement ID -> node ids of the checks that carry it (by collecting the suite)."""
    import pytest

    class Collector:
        def __init__(self) -> None:
            self.map: dict[str, list[str]] = {}

        def pytest_collection_finish(self, session: pytest.Session) -> None:
            for item in session.items:
                for mark in item.iter_markers("requirement"):
                    for rid in mark.args:
                        self.map.setdefault(rid, []).append(item.nodeid)

    collector = Collector()
    code = pytest.main(
        [
            str(SUITE_DIR),
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "slow or quota or not slow",
            "--no-header",
        ],
        plugins=[collector],
    )
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise RuntimeError(f"collecting the suite failed (pytest exit {int(code)})")
    return collector.map


def requirements_command(args: argparse.Namespace) -> int:
    import contextlib
    import io

    from opconform.conformance.catalogue import requirements

    with contextlib.redirect_stdout(io.StringIO()):
        covered = coverage()
    rows = []
    for req in requirements().values():
        checks = covered.get(req.id, [])
        rows.append(
            {
                "id": req.id,
                "area": req.area,
                "level": req.level or "-",
                "checks": checks,
                "untestable": req.untestable,
                "summary": req.summary,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        what = (
            f"{len(row['checks'])} check(s)"
            if row["checks"]
            else f"untestable: {row['untestable']}"
            if row["untestable"]
            else "NO CHECK"
        )
        print(f"{row['id']:<14} {row['level']:<6} {row['area']:<16} {what}")
    testable = [r for r in rows if not r["untestable"]]
    missing = [r["id"] for r in testable if not r["checks"]]
    print(
        f"\n{len(testable) - len(missing)} of {len(testable)} testable requirements have checks; "
        f"{len(rows) - len(testable)} are untestable from outside, with reasons"
    )
    return 1 if missing else 0
