"""The usage error every command turns into exit code USAGE.

The exit codes themselves are `opconform.outcome`'s; they are re-exported here for the commands
that import them with UsageError.
"""

from opconform.outcome import CONFORMANT, HARNESS, NOT_CONFORMANT, USAGE

__all__ = ["CONFORMANT", "HARNESS", "NOT_CONFORMANT", "USAGE", "UsageError"]


class UsageError(Exception):
    """Bad options or configuration: printed as one line, exit code USAGE."""
