"""The deadlines of one request, declared once (as httpx's DEFAULT_TIMEOUT_CONFIG is).

`--connect-timeout`, `--read-timeout` and `--request-timeout` take their defaults from
DEFAULT_TIMEOUTS; the suite's client and the Python SDK build their httpx.Timeout with
`to_httpx`, and the load tester gives the same figures to Locust's connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, overload

import httpx


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0  # to open a connection (and finish TLS)
    read: float = 20.0  # longest silence between two reads of an answer
    request: float = 60.0  # the whole exchange, whatever the target trickles

    @classmethod
    def of(cls, holder: Any) -> Timeouts:
        """From anything with the run options' attribute names (Target, Limits)."""
        return cls(holder.connect_timeout, holder.read_timeout, holder.request_timeout)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Timeouts:
        """From resolved options (opconform.config); a value left out keeps its default."""

        def value(name: str, default: float) -> float:
            given = values.get(name)
            return default if given is None else float(given)

        return cls(
            connect=value("connect_timeout", DEFAULT_TIMEOUTS.connect),
            read=value("read_timeout", DEFAULT_TIMEOUTS.read),
            request=value("request_timeout", DEFAULT_TIMEOUTS.request),
        )

    @overload
    def to_httpx(self) -> httpx.Timeout: ...

    @overload
    def to_httpx(self, module: ModuleType) -> Any: ...

    def to_httpx(self, module: ModuleType = httpx) -> Any:
        """httpx's Timeout for these deadlines. `module` is the httpx the caller's client is
        built on (the openai SDK may bring its own fork). httpx bounds each read, not the
        exchange: a read is never allowed longer than the whole request, and the request's own
        deadline is the caller's clock. Writing a request body and waiting for a pooled
        connection are as quick as connecting on a healthy target."""
        return module.Timeout(
            connect=self.connect,
            read=min(self.read, self.request),
            write=self.connect,
            pool=self.connect,
        )


DEFAULT_TIMEOUTS = Timeouts()
