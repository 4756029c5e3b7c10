"""A recording forward proxy (standard library) for plain-HTTP targets: the transport tests put
it in HTTP_PROXY and check that every request, the SDK checks' included, went through it."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading


class RecordingProxy(socketserver.ThreadingTCPServer):
    """A forward proxy for plain-HTTP targets: one request per connection, relayed to the
    target with Connection: close; records each request's line and headers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: RecordingProxy

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            body += chunk
        with self.server.lock:
            self.server.seen.append((request_line, headers))
        method, url, version = request_line.split(" ")
        hostport, _, path = url.removeprefix("http://").partition("/")
        host, _, port = hostport.partition(":")
        kept = [
            line
            for line in header_lines
            if line.partition(":")[0].strip().lower() not in ("connection", "proxy-connection")
        ]
        upstream_head = "\r\n".join([f"{method} /{path} {version}", *kept, "Connection: close"])
        with socket.create_connection((host, int(port or 80)), timeout=30) as upstream:
            upstream.sendall(upstream_head.encode("latin-1") + b"\r\n\r\n" + body)
            with contextlib.suppress(OSError):
                while chunk := upstream.recv(65536):
                    client.sendall(chunk)
