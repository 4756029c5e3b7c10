"""opconform: conformance suite and load tester for the OriginalPoint API.

This package holds what every part shares (configuration, HTTP client, SSE decoding,
redaction) and the `opconform` command.
"""

__version__ = "0.1.0"
