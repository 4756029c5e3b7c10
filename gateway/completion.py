"""One mock generation and the stream the contract makes of it.

Shared by the streaming and non-streaming paths of `opconform.gateway.contract`; the faults that
bend a
stream (gateway/fault_streams.py) read the events this module writes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from opconform.gateway.catalogue import MockModel
from opconform.gateway.wire import DONE_EVENT, MIDSTREAM_ERROR, dumps


@dataclass
class Completion:
    """One mock generation, shared by the streaming and non-streaming paths."""

    id: str
    created: int
    model: MockModel
    pieces: Sequence[str]
    finish_reason: str
    prompt_tokens: int
    max_tokens: int | None = None  # as the request asked (None: the model's limit)

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


class SlotStreamingResponse(StreamingResponse):
    """A stream that hands its concurrency slot back however it ends (finished or client gone)."""

    def __init__(
        self, content: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def pace(model: MockModel, tokens: int) -> None:
    """Wait as long as the model takes to write `tokens` (a non-streamed answer)."""
    latency = model.latency
    total = latency.ttft_ms + tokens * latency.tpot_ms
    if latency.jitter_ms:
        total += random.uniform(-latency.jitter_ms, latency.jitter_ms) * (tokens + 1)
    if total > 0:
        await asyncio.sleep(total / 1000)


async def events(
    completion: Completion,
    include_usage: bool,
    state: dict[str, bool],
    spent: Callable[[int], None],
) -> AsyncIterator[bytes]:
    """The stream as the contract has it: a role chunk, one chunk per piece on the model's
    clock, the finish_reason chunk, the usage chunk if asked for, then [DONE]. `spent` is told
    the tokens the stream cost (prompt + what was sent), however it ends."""
    model = completion.model
    latency = model.latency
    head = {
        "id": completion.id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": model.id,
    }

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + dumps({**head, "choices": choices, **extra}) + b"\n\n"

    sent_tokens = 0
    try:
        first_delta = {"role": "assistant", "content": ""}
        yield chunk([{"index": 0, "delta": first_delta, "finish_reason": None}])
        start = time.perf_counter()
        for index, piece in enumerate(completion.pieces):
            due = latency.ttft_ms + index * latency.tpot_ms
            if latency.jitter_ms:
                due += random.uniform(-latency.jitter_ms, latency.jitter_ms)
            delay = due / 1000 - (time.perf_counter() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            if model.behaviour == "midstream_error" and index == 3:
                yield b"data: " + dumps({"error": MIDSTREAM_ERROR}) + b"\n\n"
                return
            yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            sent_tokens = index + 1
        final = {"index": 0, "delta": {}, "finish_reason": completion.finish_reason}
        yield chunk([final])
        if include_usage:
            yield chunk([], usage=completion.usage)
        yield DONE_EVENT
        state["finished"] = True
    finally:
        spent(completion.prompt_tokens + sent_tokens)
