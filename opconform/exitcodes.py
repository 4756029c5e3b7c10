"""Exit codes of every opconform command."""

CONFORMANT = 0  # also: load thresholds met, no regression
NOT_CONFORMANT = 1  # also: a load threshold or expectation broken, a regression found
USAGE = 2  # bad options or configuration
HARNESS = 3  # target unreachable, or opconform itself failed


class UsageError(Exception):
    """Bad options or configuration: printed as one line, exit code USAGE."""
