"""A second, independent OpenAI-style server for the load tests: conformant enough, but written
apart from the reference gateway and different from it where the contract leaves room.

- answers are short (a few tokens) and immediate: streams end before any client can hold them;
- requests/min windows are aligned to the clock (the reference starts one at a key's first
  request), and X-RateLimit-Reset counts seconds to go (the reference sends epoch seconds);
- the concurrency cap counts every request in flight, a tokens/day budget counts usage.

Standard library only (asyncio). Run: python -m tests.support.minimal_server [--window-seconds 3];
it
prints "PORT=<n>" once listening on 127.0.0.1. Keys: see KEYS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from types import TracebackType

from opconform.contract import PLANS

KEYS = {"op_sk_min_free_a": "free", "op_sk_min_free_b": "free", "op_sk_min_pro": "pro"}
ENV = {
    "OP_API_KEY": "op_sk_min_free_a",
    "OP_ALT_API_KEY": "op_sk_min_free_b",
    "OP_PRO_API_KEY": "op_sk_min_pro",
}
WORDS = ("short", "and", "fast", "answer", "here")
STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
}


@dataclass
class KeyState:
    window: int = -1
    count: int = 0
    in_flight: int = 0
    tokens: int = 0


class Server:
    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self.keys: dict[str, KeyState] = {}

    def admit(self, key: str) -> tuple[bool, dict[str, str], str]:
        """Clock-aligned window: (admitted, headers, why-not)."""
        limits = PLANS[KEYS[key]]
        limit = limits.requests_per_min or 0
        state = self.keys.setdefault(key, KeyState())
        now = time.time()
        window = int(now // self.window_seconds)
        if window != state.window:
            state.window, state.count = window, 0
        to_go = max(1, math.ceil((window + 1) * self.window_seconds - now))
        refused = ""
        if state.count >= limit:
            refused = "requests per minute"
        elif limits.concurrent is not None and state.in_flight >= limits.concurrent:
            refused, to_go = "concurrent requests", 1
        elif limits.tokens_per_day is not None and state.tokens >= limits.tokens_per_day:
            refused, to_go = "tokens per day", 86_400
        if not refused:
            state.count += 1
            state.in_flight += 1
        headers = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(0, limit - state.count)),
            "x-ratelimit-reset": str(to_go),
        }
        if refused:
            headers["retry-after"] = str(to_go)
        return not refused, headers, refused

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length") or 0))
        key = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if key not in KEYS:
            return await self._json(writer, 401, _error("Invalid API key provided.", 401), {})
        if method == "GET" and path.rstrip("/").endswith("/models"):
            models = {
                "object": "list",
                "data": [
                    {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}
                ],
            }
            return await self._json(writer, 200, models, {})
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return await self._json(writer, 404, _error("Not found.", 404), {})
        try:
            request = json.loads(body)
            messages = request["messages"]
            assert isinstance(messages, list) and messages
        except (ValueError, KeyError, AssertionError, TypeError):
            return await self._json(writer, 400, _error("Bad request body.", 400), {})
        admitted, limit_headers, why = self.admit(key)
        if not admitted:
            return await self._json(writer, 429, _error(f"Rate limit: {why}.", 429), limit_headers)
        state = self.keys[key]
        try:
            pieces = [
                " " + w
                for w in WORDS[: max(1, min(len(WORDS), int(request.get("max_tokens") or 5)))]
            ]
            prompt = sum(len(str(m.get("content", "")).split()) + 3 for m in messages)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": len(pieces),
                "total_tokens": prompt + len(pieces),
            }
            state.tokens += usage["total_tokens"]
            if request.get("stream"):
                await self._stream(writer, request, pieces, usage, limit_headers)
                return False
            answer = {
                "id": "chatcmpl-min",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "".join(pieces).strip()},
                    }
                ],
                "usage": usage,
            }
            return await self._json(writer, 200, answer, limit_headers)
        finally:
            state.in_flight -= 1

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        request: dict,
        pieces: list[str],
        usage: dict,
        limit_headers: dict[str, str],
    ) -> None:
        head = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "connection": "close",
            **limit_headers,
        }
        writer.write(_head(200, head))
        base = {
            "id": "chatcmpl-min",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model"),
        }
        chunks = [
            {
                **base,
                "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
            }
        ]
        chunks += [
            {**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
            for p in pieces
        ]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (request.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        for chunk in chunks:
            writer.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()

    async def _json(
        self, writer: asyncio.StreamWriter, status: int, document: dict, extra: dict[str, str]
    ) -> bool:
        body = json.dumps(document).encode()
        writer.write(
            _head(
                status,
                {"content-type": "application/json", "content-length": str(len(body)), **extra},
            )
            + body
        )
        await writer.drain()
        return True


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error(message: str, code: int) -> dict:
    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(code, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": code}}


async def _main(window_seconds: float) -> None:
    server = Server(window_seconds)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    print(f"PORT={port}", flush=True)
    async with listener:
        await listener.serve_forever()


class MinimalServer:
    """The server in a child process, as a context manager: .base_url and .env (OP_* keys)."""

    def __init__(self, window_seconds: float = 60.0) -> None:
        self.window_seconds = window_seconds
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> MinimalServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.minimal_server",
                "--window-seconds",
                str(self.window_seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("PORT="):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the minimal server did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{line.removeprefix('PORT=')}/v1"
        return self

    @property
    def env(self) -> dict[str, str]:
        return {"OP_BASE_URL": self.base_url, **ENV}

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout:
                self.process.stdout.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--window-seconds", type=float, default=60.0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args().window_seconds))
