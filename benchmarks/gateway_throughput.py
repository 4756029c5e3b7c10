"""Is the reference gateway ever what limits a load test? Measure it side by side with a bare
hello-world app on the same server stack (Starlette on uvicorn, uvloop + httptools, one worker),
in the same run, and print the ratios. Goal: at least half the hello-world rate.

    python benchmarks/gateway_throughput.py [--seconds 5] [--connections 32]

The load generator is wrk when it is installed (apt-get install wrk), else a small asyncio
client; either way both servers meet the same generator, so the ratio is fair. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "op_sk_test_enterprise"
CHAT = json.dumps(
    {
        "model": "gpt-4o-mini",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
)
STREAM_TOKENS = 2000
STREAM = json.dumps(
    {
        "model": "gpt-4o-mini",
        "max_tokens": STREAM_TOKENS,
        "stream": True,
        "messages": [{"role": "user", "content": f"Count from 1 to {STREAM_TOKENS}"}],
    }
)

HELLO_APP = textwrap.dedent(f"""
    import json
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    PAYLOAD = {{"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1,
               "model": "gpt-4o-mini",
               "choices": [{{"index": 0, "delta": {{"content": " 123"}}, "finish_reason": None}}]}}
    CHUNK = b"data: " + json.dumps(PAYLOAD).encode() + b"\\n\\n"

    async def hello(request):
        return Response(b"hello", media_type="text/plain")

    async def hello_post(request):
        await request.body()
        return Response(b'{{"hello": "world"}}', media_type="application/json")

    async def chunks():
        for _ in range({STREAM_TOKENS}):
            yield CHUNK
        yield b"data: [DONE]\\n\\n"

    async def stream(request):
        await request.body()
        return StreamingResponse(chunks(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/hello", hello), Route("/hello", hello_post, methods=["POST"]),
                            Route("/stream", stream, methods=["POST"])])
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def start_servers(folder: Path) -> tuple[list[subprocess.Popen[bytes]], int, int]:
    (folder / "hello_app.py").write_text(HELLO_APP)
    gateway_port, hello_port = free_port(), free_port()
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opconform",
            "serve",
            "--port",
            str(gateway_port),
            "--quiet",
            "--ttft-ms",
            "0",
            "--tpot-ms",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    hello = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "hello_app:app",
            "--port",
            str(hello_port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    wait_for(gateway_port)
    wait_for(hello_port)
    return [gateway, hello], gateway_port, hello_port


# ---------------------------------------------------------------------------- generators
def wrk_rate(
    url: str, seconds: float, connections: int, body: str | None, headers: dict[str, str]
) -> float:
    script = ""
    if body is not None:
        script = f"wrk.method = 'POST'\nwrk.body = [[{body}]]\n"
    for name, value in headers.items():
        script += f"wrk.headers['{name}'] = '{value}'\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "-s", lua.name, url],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if not match or "Non-2xx" in done.stdout:
        raise SystemExit(f"wrk failed or got errors:\n{done.stdout}")
    return float(match.group(1))


async def _asyncio_worker(port: int, request: bytes, until: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
    while time.perf_counter() < until:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise SystemExit(f"got {status!r}")
        if b"chunked" in head.lower():
            body = await reader.readuntil(b"0\r\n\r\n")
            counts[1] += body.count(b"data: ") - 1
        else:
            length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
        counts[0] += 1
    writer.close()


def asyncio_rate(
    port: int,
    path: str,
    seconds: float,
    connections: int,
    body: str | None,
    headers: dict[str, str],
) -> tuple[float, float]:
    method = "POST" if body is not None else "GET"
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n" + (body or "")).encode()
    counts = [0, 0]

    async def main() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(_asyncio_worker(port, request, until, counts) for _ in range(connections))
        )

    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    return counts[0] / elapsed, counts[1] / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None
    auth = {"Authorization": f"Bearer {KEY}"}
    with tempfile.TemporaryDirectory() as folder:
        servers, gateway_port, hello_port = start_servers(Path(folder))
        try:
            rows = []
            for name, port, path, body, headers in (
                ("hello world GET", hello_port, "/hello", None, {}),
                ("hello world POST", hello_port, "/hello", CHAT, {}),
                ("GET /v1/models", gateway_port, "/v1/models", None, auth),
                ("POST /v1/chat/completions", gateway_port, "/v1/chat/completions", CHAT, auth),
            ):
                if use_wrk:
                    rate = wrk_rate(
                        f"http://127.0.0.1:{port}{path}",
                        args.seconds,
                        args.connections,
                        body,
                        headers,
                    )
                else:
                    rate, _ = asyncio_rate(
                        port, path, args.seconds, args.connections, body, headers
                    )
                rows.append((name, rate))
            # Streams: chunks/s through many concurrent streams, same generator for both.
            _, hello_chunks = asyncio_rate(hello_port, "/stream", args.seconds, 8, STREAM, {})
            _, gateway_chunks = asyncio_rate(
                gateway_port, "/v1/chat/completions", args.seconds, 8, STREAM, auth
            )
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
    hello, hello_post = rows[0][1], rows[1][1]
    generator = "wrk -t2" if use_wrk else "asyncio client"
    print(
        f"generator: {generator}, {args.connections} connections, {args.seconds:g}s each, "
        "one uvicorn worker per server, loopback"
    )
    print(f"{'endpoint':<30} {'req/s':>10} {'vs hello GET':>13} {'vs hello POST':>14}")
    for name, rate in rows:
        print(f"{name:<30} {rate:>10.0f} {rate / hello:>12.2f}x {rate / hello_post:>13.2f}x")
    print(f"{'streamed chunks/s (hello)':<30} {hello_chunks:>10.0f}")
    print(
        f"{'streamed chunks/s (gateway)':<30} {gateway_chunks:>10.0f} "
        f"{gateway_chunks / hello_chunks:>14.2f}x"
    )
    # Each endpoint against the hello world of its own method: a POST with a body costs the
    # server stack more than a GET before any of our code runs.
    ratios = {
        "GET /v1/models": rows[2][1] / hello,
        "POST /v1/chat/completions": rows[3][1] / hello_post,
        "streamed chunks": gateway_chunks / hello_chunks,
    }
    print("ratios (same method): " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print(f"lowest {min(ratios.values()):.2f} (goal: at least 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
