"""Stand-ins the unit tests share: a clock that sleeps by moving on, an Exchange with only the
fields a test names, and a loopback server that answers each connection with a script."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

from opconform.exchange import Exchange


class FakeClock:
    """A monotonic clock and its sleep: sleeping moves time on, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_exchange(path: str = "/chat/completions", **fields: Any) -> Exchange:
    """An exchange of the main key; whatever a test does not name is empty."""
    base: dict[str, Any] = {
        "method": "POST",
        "url": "http://target/v1" + path,
        "path": path,
        "key_label": "main",
        "request_headers": {},
        "request_body": b"",
        "started_at": 0.0,
    }
    return Exchange(**{**base, **fields})


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def scripted_server(script: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback server that runs `script` on each connection; yields its base URL (/v1)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the client went away
                script(self.request)

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
