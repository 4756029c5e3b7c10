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
from opconform.exitcodes import USAGE, UsageError

COMMAND_GROUP = "opconform.commands"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE, f"opconform: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="opconform", description=__doc__.split("\n\n")[0])
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
