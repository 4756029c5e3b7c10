"""`opconform report RUN_DIR [--allure]` and `opconform report diff OLD NEW`."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from jinja2 import UndefinedError

from opconform.exitcodes import UsageError
from opconform.outcome import HARNESS, NOT_CONFORMANT
from opconform.reports.render import ReportError, kind_of, render_run

T = TypeVar("T")


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="(re)build a run's report, or diff two runs",
        description="opconform report RUN_DIR rebuilds report.html and report.md of a "
        "conformance or load run; opconform report diff OLD NEW lists what "
        "regressed (exit 1), what improved, coverage that was lost (a check that passed and "
        "is now disabled or gone) and what is new.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_DIR | diff OLD NEW")
    p.add_argument(
        "--allure",
        action="store_true",
        help="also render allure-results with Allure's command-line tool",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.10,
        help="load diffs: relative change that counts as a regression (0.10)",
    )
    p.add_argument("--json", action="store_true", help="diff as JSON")
    p.add_argument(
        "--fail-on-lost-coverage",
        action="store_true",
        help="diff: exit 1 also when a check that passed is now disabled, not judged or gone",
    )
    p.set_defaults(handler=report)


# What reading a hand-made or damaged results.json / load.json raises once it is parsed: a key
# that is missing, a value of the wrong type. Caught here only, where the document came from the
# user: render_run and diff_runs still raise them to the project's own tests.
_MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError, UndefinedError)


def report(args: argparse.Namespace) -> int:
    paths = args.paths
    try:
        if paths[0] == "diff":
            if len(paths) != 3:
                raise UsageError("usage: opconform report diff OLD_RUN_DIR NEW_RUN_DIR")
            return _diff(Path(paths[1]), Path(paths[2]), args)
        if len(paths) != 1:
            raise UsageError("give one run folder (or: diff OLD NEW)")
        run_dir = Path(paths[0])
        if not run_dir.is_dir():
            raise UsageError(f"{run_dir} is not a folder")
        for path in _readable(render_run, run_dir):
            print(f"wrote {path}")
        return _allure(run_dir) if args.allure else 0
    except ReportError as exc:
        raise UsageError(str(exc)) from None


def _readable(action: Callable[..., T], *run_dirs: Path) -> T:
    """`action` over run folders whose document parsed as JSON but may not be one opconform
    wrote: a missing key or a wrong type is one line naming the file, not a traceback."""
    try:
        return action(*run_dirs)
    except _MALFORMED as exc:
        detail = f"no key {exc}" if isinstance(exc, KeyError) else str(exc).split("\n")[0]
        names = " or ".join(dict.fromkeys(str(_document_path(d)) for d in run_dirs))
        raise ReportError(f"{names} is not a run document opconform can read ({detail})") from None


def _document_path(run_dir: Path) -> Path:
    try:
        name = "results.json" if kind_of(run_dir) == "conformance" else "load.json"
    except ReportError:
        return run_dir
    return run_dir / name


def _diff(old: Path, new: Path, args: argparse.Namespace) -> int:
    from opconform.reports.diff import diff_runs, format_diff

    for folder in (old, new):
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder")
    result = _readable(lambda a, b: diff_runs(a, b, args.tolerance), old, new)
    text = json.dumps(result, indent=2, default=str) if args.json else None
    print(text if text is not None else _readable(lambda *_: format_diff(result), old, new))
    lost = args.fail_on_lost_coverage and result["lost_coverage"]
    return NOT_CONFORMANT if result["regressed"] or lost else 0


def allure_command() -> str | None:
    local = Path("node_modules/.bin/allure")
    return shutil.which("allure") or (str(local) if local.exists() else None)


def _allure(run_dir: Path) -> int:
    results = run_dir / "allure-results"
    if not results.is_dir():
        raise UsageError(f"{run_dir} has no allure-results (only conformance runs write them)")
    command = allure_command()
    if command is None:
        print(
            "opconform report: Allure's command-line tool is not installed; install it with "
            "`npm install allure-commandline` (it needs Java) and run again"
        )
        return HARNESS
    done = subprocess.run(
        [command, "generate", str(results), "-o", str(run_dir / "allure-report"), "--clean"],
        check=False,
    )
    if done.returncode == 0:
        print(f"wrote {run_dir / 'allure-report' / 'index.html'}")
    return 0 if done.returncode == 0 else HARNESS
