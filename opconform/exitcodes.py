"""The usage error every command turns into exit code USAGE (the codes are opconform.outcome's)."""


class UsageError(Exception):
    """Bad options or configuration: printed as one line, exit code USAGE."""
