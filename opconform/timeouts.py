"""The deadlines of one request, declared once (as httpx's DEFAULT_TIMEOUT_CONFIG is).

`--connect-timeout`, `--read-timeout` and `--request-timeout` take their defaults from
DEFAULT_TIMEOUTS and are read once into a `Timeouts` (opconform.target.timeouts_of), which the
run's `Target` carries. Every client takes its deadlines from that one object: the suite's
client and the Python SDK through `to_httpx`, the Node and Go SDK runners through
`to_runner_env`, and the load tester gives the same figures to Locust's connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, overload

import httpx

# The SDK runners' side of the contract (conformance/node/sdk_check.mjs, conformance/go/main.go):
# each deadline in whole milliseconds under these names, always all three.
RUNNER_VARIABLES = {
    "connect": "OP_SDK_CONNECT_TIMEOUT_MS",
    "read": "OP_SDK_READ_TIMEOUT_MS",
    "request": "OP_SDK_REQUEST_TIMEOUT_MS",
}


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0  # to open a connection (and finish TLS)
    read: float = 20.0  # longest silence between two reads of an answer
    request: float = 60.0  # the whole exchange, whatever the target trickles

    @property
    def longest_read(self) -> float:
        """The read deadline a client is given: a read is never allowed longer than the whole
        request (the request's own deadline is the caller's clock)."""
        return min(self.read, self.request)

    @overload
    def to_httpx(self) -> httpx.Timeout: ...

    @overload
    def to_httpx(self, module: ModuleType) -> Any: ...

    def to_httpx(self, module: ModuleType = httpx) -> Any:
        """httpx's Timeout for these deadlines. `module` is the httpx the caller's client is
        built on (the openai SDK may bring its own fork). httpx bounds each read, not the
        exchange: the request's deadline is the caller's to keep. Writing a request body and
        waiting for a pooled connection are as quick as connecting on a healthy target."""
        return module.Timeout(
            connect=self.connect,
            read=self.longest_read,
            write=self.connect,
            pool=self.connect,
        )

    def to_runner_env(self) -> dict[str, str]:
        """What an SDK runner process is given (RUNNER_VARIABLES): whole milliseconds, at least
        one (a runner reads zero as "not given")."""
        given = {"connect": self.connect, "read": self.longest_read, "request": self.request}
        return {
            RUNNER_VARIABLES[name]: str(max(1, round(seconds * 1000)))
            for name, seconds in given.items()
        }


DEFAULT_TIMEOUTS = Timeouts()
