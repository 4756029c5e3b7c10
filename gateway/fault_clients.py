"""Faults aimed at one client, known by its User-Agent: the answer every other client gets stays
right, so only that client's check can notice.

The official SDKs' user agents (Python, Node) are told apart in `FaultyGateway`; the two Go SDKs'
faults bend whole answers on their way out, as ASGI middleware.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opconform.gateway.faults import Faults

# What the official SDKs send as User-Agent (go-openai sends Go's default).
PYTHON_SDK, NODE_SDK = "OpenAI/Python", "OpenAI/JS"
GO_FAULTS = (
    Faults.GO_OPENAI_SPLIT_DATA_LINES,
    Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT,
    Faults.OPENAI_GO_EVENTS_NOT_SEPARATED,
    Faults.OPENAI_GO_ERROR_AS_STRING,
)


def _split_data_lines(chunk: bytes) -> bytes:
    """go-openai-split-data-lines: each JSON payload over two data: lines, cut after its first
    comma, so an SSE parser that joins data lines with a newline still reads valid JSON."""
    out = []
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {") and b"," in line:
            head, _, tail = line.partition(b",")
            line = head + b",\ndata: " + tail
        out.append(line)
    return b"\n".join(out)


class GoClientFaults:
    """ASGI middleware for the faults aimed at one Go SDK, known by its User-Agent: the answer
    every other client gets stays right, so only that SDK's check can notice."""

    def __init__(self, app: ASGIApp, on: Callable[[str], bool]) -> None:
        self.app, self.on = app, on

    def _faults(self, user_agent: bytes) -> tuple[str | None, str | None]:
        """(stream fault, error fault) that apply to this client."""
        on = self.on
        if user_agent.startswith(b"Go-http-client/"):
            return (
                Faults.GO_OPENAI_SPLIT_DATA_LINES
                if on(Faults.GO_OPENAI_SPLIT_DATA_LINES)
                else None,
                Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT
                if on(Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT)
                else None,
            )
        if user_agent.startswith(b"OpenAI/Go"):
            return (
                Faults.OPENAI_GO_EVENTS_NOT_SEPARATED
                if on(Faults.OPENAI_GO_EVENTS_NOT_SEPARATED)
                else None,
                Faults.OPENAI_GO_ERROR_AS_STRING if on(Faults.OPENAI_GO_ERROR_AS_STRING) else None,
            )
        return None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        stream_fault, error_fault = self._faults(headers.get(b"user-agent", b""))
        if not (stream_fault or error_fault):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}  # an error answer's start, until its body is rewritten
        body = bytearray()

        async def bent(message: Message) -> None:
            if message["type"] == "http.response.start":
                content_type = dict(message["headers"]).get(b"content-type", b"")
                if (
                    error_fault
                    and message["status"] >= 400
                    and content_type.startswith(b"application/json")
                ):
                    held["start"] = message
                    return
                held["stream"] = stream_fault and content_type.startswith(b"text/event-stream")
                await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            if "start" in held:
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                rewritten = self._error(error_fault, bytes(body))
                start = held.pop("start")
                kept = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                kept.append((b"content-length", str(len(rewritten)).encode()))
                await send({**start, "headers": kept})
                await send({"type": "http.response.body", "body": rewritten})
                return
            if held.get("stream"):
                chunk = message.get("body", b"")
                if stream_fault == Faults.GO_OPENAI_SPLIT_DATA_LINES:
                    chunk = _split_data_lines(chunk)
                else:
                    chunk = chunk.replace(b"\n\n", b"\n")
                message = {**message, "body": chunk}
            await send(message)

        await self.app(scope, receive, bent)

    @staticmethod
    def _error(fault: str | None, body: bytes) -> bytes:
        try:
            payload = json.loads(body)
            error = payload["error"]
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            return body
        if fault == Faults.GO_OPENAI_ERROR_MESSAGE_OBJECT:
            error["message"] = {"text": message}
        else:
            payload["error"] = message
        return orjson.dumps(payload)
