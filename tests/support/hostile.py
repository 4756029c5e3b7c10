"""A hostile HTTP server for the project's own tests: standard library only, one behaviour per
process, chosen by name.

    python tests/support/hostile.py trickle        # prints the port, then serves until killed

Each behaviour is something a broken or misconfigured target really does. Every send loop is
bounded (MAX_SECONDS), so a forgotten server stops on its own. `run_against()` runs
`opconform run` against one behaviour with default settings, as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

MAX_SECONDS = 300.0  # no connection is served longer than this
ROOT = Path(__file__).resolve().parent.parent.parent


def read_request(conn: socket.socket, timeout: float = 10.0) -> tuple[bytes, bytes] | None:
    """Read one request: its head and its Content-Length body; None if the client went away."""
    conn.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
    except OSError:
        return None
    return head, body


def _path(head: bytes) -> str:
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) > 1 else "/"


def _send(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendall(data)
    except OSError:
        return False
    return True


def _until(started: float) -> bool:
    return time.monotonic() - started < MAX_SECONDS


def _response(status: str, body: bytes, content_type: str, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


# ---------------------------------------------------------------------------- behaviours
def trickle(conn: socket.socket, started: float) -> None:
    """A valid answer, one byte every 2 s."""
    if read_request(conn) is None:
        return
    body = json.dumps({"object": "list", "data": [{"id": "m1", "object": "model"}]}).encode()
    for byte in _response("200 OK", body, "application/json", close=True):
        if not _until(started) or not _send(conn, bytes([byte])):
            return
        time.sleep(2.0)


def endless_stream(conn: socket.socket, started: float) -> None:
    """Valid chat.completion.chunk events forever: no finish_reason, no [DONE]."""
    if read_request(conn) is None:
        return
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Connection: close\r\n\r\n"
    )
    if not _send(conn, head.encode()):
        return
    index = 0
    while _until(started):
        chunk = {
            "id": "chatcmpl-hostile",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "m1",
            "choices": [{"index": 0, "delta": {"content": f"{index} "}, "finish_reason": None}],
        }
        if not _send(conn, f"data: {json.dumps(chunk)}\n\n".encode()):
            return
        index += 1
        time.sleep(0.02)


def silent(conn: socket.socket, started: float) -> None:
    """Accepts the connection, never answers."""
    conn.settimeout(1.0)
    while _until(started):
        try:
            if conn.recv(65536) == b"":
                return
        except TimeoutError:
            continue
        except OSError:
            return


def headers_then_nothing(conn: socket.socket, started: float) -> None:
    if read_request(conn) is None:
        return
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    if _send(conn, head.encode()):
        silent(conn, started)


def garbage(conn: socket.socket, started: float) -> None:
    if read_request(conn) is None:
        return
    _send(conn, random.randbytes(64 * 1024))


def reset_midstream(conn: socket.socket, started: float) -> None:
    """Part of a stream, then a TCP RST."""
    if read_request(conn) is None:
        return
    chunk = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "m1",
        "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}],
    }
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    _send(conn, head.encode() + f"data: {json.dumps(chunk)}\n\n".encode() + b'data: {"id": ')
    time.sleep(0.2)
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    # (closed here: socketserver would shut the write side down first, which sends a FIN).
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def huge_body(conn: socket.socket, started: float) -> None:
    """A 50 MB JSON-looking body."""
    if read_request(conn) is None:
        return
    size = 50 * 1024 * 1024
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    if not _send(conn, head.encode() + b'{"data": "'):
        return
    block, sent = b"x" * 65536, 10
    while sent < size and _until(started):
        piece = block[: size - sent]
        if not _send(conn, piece):
            return
        sent += len(piece)


def http10_html(conn: socket.socket, started: float) -> None:
    """An HTTP/1.0 HTML page, as a misrouted web server or captive portal gives."""
    if read_request(conn) is None:
        return
    body = b"<html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"
    _send(conn, b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n" + body)


def redirect_loop(conn: socket.socket, started: float) -> None:
    while _until(started):
        request = read_request(conn)
        if request is None:
            return
        location = _path(request[0])
        answer = (
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        if not _send(conn, answer):
            return


def error_500(conn: socket.socket, started: float) -> None:
    while _until(started):
        if read_request(conn) is None:
            return
        body = b'{"error": {"message": "internal error", "type": "server_error"}}'
        if not _send(conn, _response("500 Internal Server Error", body, "application/json")):
            return


BEHAVIOURS: dict[str, Callable[[socket.socket, float], None]] = {
    "trickle": trickle,
    "endless-stream": endless_stream,
    "silent": silent,
    "headers-then-nothing": headers_then_nothing,
    "garbage": garbage,
    "reset-midstream": reset_midstream,
    "huge-body": huge_body,
    "http10-html": http10_html,
    "redirect-loop": redirect_loop,
    "error-500": error_500,
}


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def serve(behaviour: str, host: str = "127.0.0.1", port: int = 0) -> _Server:
    """Start serving `behaviour` on a thread; the server's address is server.server_address."""
    handle = BEHAVIOURS[behaviour]

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the client went away: nothing to do
                handle(self.request, time.monotonic())

    server = _Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------- runs
@dataclass
class HostileRun:
    behaviour: str
    exit_code: int | None  # None: killed at the hard limit
    seconds: float
    report_dir: Path
    output: str

    @property
    def results(self) -> dict[str, object] | None:
        path = self.report_dir / "results.json"
        if not path.is_file():
            return None
        loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
        return loaded


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def clean_env() -> dict[str, str]:
    """The caller's environment without proxies or OP_* settings: default settings only."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OP_") and name.lower() not in _PROXY_VARIABLES
    }


def run_against(behaviour: str, report_dir: Path, hard_limit: float = 300.0) -> HostileRun:
    """`opconform run` with default settings (and a Pro key for bulk checks) against a fresh
    server with `behaviour`."""
    server_process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), behaviour],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server_process.stdout is not None
        port = int(server_process.stdout.readline())
        command = [
            sys.executable,
            "-m",
            "opconform",
            "run",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--api-key",
            "op_sk_x",
            # A Pro identity for the bulk checks: with one Free key the run paces itself at 60
            # requests/min (README: Real limits), so a target that answers everything with a
            # 500 takes minutes for the plan's sake; the bound here is about hostile behaviour.
            "--pro-api-key",
            "op_sk_x_pro",
            "--models",
            "m1",
            "--report-dir",
            str(report_dir),
        ]
        started = time.monotonic()
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=hard_limit,
                cwd=ROOT,
                env=clean_env(),
                check=False,
            )
            code: int | None = done.returncode
            output = done.stdout[-3000:] + done.stderr[-3000:]
        except subprocess.TimeoutExpired as exc:
            code, output = None, f"killed after {hard_limit:g}s: {exc.stdout!r}"[-3000:]
        return HostileRun(behaviour, code, time.monotonic() - started, report_dir, output)
    finally:
        server_process.kill()
        server_process.wait()


# Where the runs started for a session wait for their tests (pytest's stash).
HOSTILE_RUNS: pytest.StashKey[dict[str, Future[HostileRun]]] = pytest.StashKey()
HOSTILE_MODULE = "test_hostile"


def start_hostile_runs(items: Sequence[pytest.Item]) -> dict[str, Future[HostileRun]]:
    """One run per behaviour that `items` select from the hostile module (-k narrows them),
    all submitted at once; empty when none is selected."""
    selected = [
        str(item.callspec.params["behaviour"])
        for item in items
        if isinstance(item, pytest.Function)
        and item.module is not None
        and item.module.__name__.rsplit(".", 1)[-1] == HOSTILE_MODULE
        and hasattr(item, "callspec")
        and not item.get_closest_marker("skip")
    ]
    if not selected:
        return {}
    folder = Path(tempfile.mkdtemp(prefix="opconform-hostile-"))
    # The runs mostly wait on the target's deadlines, not on the CPU.
    pool = ThreadPoolExecutor(max_workers=5, thread_name_prefix="hostile-run")
    runs = {name: pool.submit(run_against, name, folder / name) for name in selected}
    pool.shutdown(wait=False)
    return runs


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in BEHAVIOURS:
        sys.exit(f"usage: hostile.py {{{','.join(BEHAVIOURS)}}}")
    server = serve(sys.argv[1])
    print(server.server_address[1], flush=True)
    # The process ends when its parent kills it, or after the bound of every send loop.
    time.sleep(MAX_SECONDS + 10)


if __name__ == "__main__":
    main()
