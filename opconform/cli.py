"""The `opconform` command. Subcommands parse their own options and return an exit code.

The kernel names no command: each part of opconform (gateway, conformance, loadtests, reports)
declares its subcommands as `opconform.commands` entry points in pyproject.toml, and this module
adds whatever is installed. So the shared kernel never imports the parts built on it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from opconform import __version__
from opconform.exitcodes import UsageError
from opconform.outcome import USAGE

COMMAND_GROUP = "opconform.commands"
PURPOSE = (
    "Check that a deployment of the OriginalPoint API (an OpenAI-compatible gateway to many "
    "LLMs) keeps its documented contract: a conformance suite with a CI-ready verdict, a load "
    "tester, and a reference gateway to try both on. Exit codes: 0 conformant (thresholds "
    "met), 1 not conformant, 2 bad usage (one line, nothing written), 3 could not judge."
)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE, f"opconform: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="opconform",
        description=PURPOSE,
        epilog="Each command has its own --help; every option also reads an OP_* variable "
        "and opconform.toml.",
    )
    parser.add_argument("--version", action="version", version=f"opconform {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return USAGE
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        print(f"opconform {args.command}: {exc}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
