"""`opconform run` (a thin wrapper over pytest and the plugin) and `opconform requirements`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from opconform.config import AREAS, OPTIONS, Target, add_arguments, resolve
from opconform.exitcodes import HARNESS, USAGE, UsageError
from opconform.redact import sweep
from opconform.transport import TransportSettings

SUITE_DIR = Path(__file__).resolve().parent
DEFAULT_REPORTS = Path("reports") / "runs"


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="check a deployment against the contract",
        description="Run the conformance suite. With no --base-url it starts the embedded "
        "reference gateway on a free loopback port and checks that.",
    )
    add_arguments(p.add_argument, OPTIONS)
    p.add_argument(
        "--report-dir", type=Path, help=f"run folder (default {DEFAULT_REPORTS}/<timestamp>)"
    )
    p.add_argument("--config", type=Path, help="settings file (default ./opconform.toml)")
    p.add_argument(
        "-m",
        dest="markexpr",
        help="pytest marker expression, e.g. 'slow or not slow' to include the opt-in checks",
    )
    p.add_argument("-k", dest="keyword", help="pytest keyword expression")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.add_argument("pytest_args", nargs="*", help="after --: passed to pytest as they are")
    p.set_defaults(handler=run)


def _pytest_args(args: argparse.Namespace, report_dir: Path) -> list[str]:
    argv = [
        str(SUITE_DIR),
        "-p",
        "no:cacheprovider",
        # Plugins other installed packages register that a conformance run never uses: locust's
        # alone costs a second of start-up (gevent), about half of a one-requirement run.
        "-p",
        "no:locust",
        "-p",
        "no:schemathesis",
        "-p",
        "no:anyio",
        "--tb=short",
        "-rN",
        "--report-dir",
        str(report_dir),
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
    if args.markexpr:
        argv += ["-m", args.markexpr]
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.config:
        argv += ["--opconform-config", str(args.config)]
    for option in OPTIONS:
        value = getattr(args, option.name)
        if value is None:
            continue
        if option.kind == "bool":
            argv.append(option.flag)
        elif option.kind in ("lines", "list"):  # repeatable (add_arguments): one flag each
            for item in value:
                argv += [option.flag, str(item)]
        else:
            argv += [option.flag, str(value)]
    return argv + list(args.pytest_args)


def validate(args: argparse.Namespace) -> list[str]:
    """Everything the plugin would refuse, checked before a run folder exists or pytest prints
    a line: options, config file, target, TLS files, headers, areas, requirement IDs, baseline.
    Starts nothing. Returns the secrets the final sweep must scrub (keys, secret headers)."""
    from conformance.results import Baseline

    cli = {option.name: getattr(args, option.name) for option in OPTIONS}
    values = resolve(cli, config_file=args.config)
    if values.get("base_url"):
        target = Target.from_values(values)
        secrets = target.secrets()
    else:  # the embedded gateway brings its own keys; the way to it is still ours to check
        secrets = TransportSettings.from_values(values).secret_values()
    unknown_areas = sorted(set(values["area"] or []) - set(AREAS))
    if unknown_areas:
        raise UsageError(
            f"--area: unknown area(s) {', '.join(unknown_areas)}; known: {', '.join(AREAS)}"
        )
    if values["requirement"]:
        from conformance.catalogue import requirements

        unknown = sorted(set(values["requirement"]) - set(requirements()))
        if unknown:
            raise UsageError(f"--requirement: unknown ID(s) {', '.join(unknown)}")
    Baseline.load(values["expected_failures"])
    return secrets


def run(args: argparse.Namespace) -> int:
    import pytest

    report_dir = args.report_dir or DEFAULT_REPORTS / time.strftime("%Y%m%dT%H%M%S")
    if report_dir.exists() and any(report_dir.iterdir()):
        raise UsageError(f"--report-dir {report_dir} is not empty: choose a new folder")
    secrets = validate(args)
    report_dir.mkdir(parents=True, exist_ok=True)
    code = pytest.main(_pytest_args(args, report_dir))
    if code == pytest.ExitCode.USAGE_ERROR:
        return USAGE
    if code == pytest.ExitCode.INTERRUPTED:
        return HARNESS
    results = report_dir / "results.json"
    if not results.is_file():
        print(f"opconform run: no results were written (pytest exit {int(code)})", file=sys.stderr)
        return HARNESS
    document = json.loads(results.read_text(encoding="utf-8"))
    sweep(report_dir, secrets)
    _render(report_dir)
    if document.get("partial"):
        # The one line that says why the run could not judge everything (unreachable target,
        # a certificate that does not verify, the deadline, a target broken at the transport).
        print(f"opconform run: {document['partial']}", file=sys.stderr)
    counts = ", ".join(f"{n} {s}" for s, n in document["counts"].items() if n)
    print(
        f"opconform: {document['verdict']} ({counts}); exit {document['exit_code']}; "
        f"report: {report_dir / 'report.html'}"
    )
    return int(document["exit_code"])


def _render(report_dir: Path) -> None:
    try:
        from reports.render import render_run
    except ImportError:  # reports land with their own issue
        return
    render_run(report_dir)


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

    from conformance.catalogue import requirements

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
