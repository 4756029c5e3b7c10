"""`opconform serve --timing-log FILE`: when the gateway handed each streamed event to the
transport, as ground truth for the load tester's own clocks.

One JSON line per SSE event: {"id": the stream's chatcmpl id, "seq": 0-based index of the event
in its stream, "t": time.time() taken right before the event goes to the transport, "content":
the event's delta carries non-empty content, "done": the event is [DONE]}. Comment-only writes
(`: ping` keep-alives) are not events and are not logged. Lines are buffered, and flushed when a
stream ends and when the process exits.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson


class TimingLog:
    def __init__(self, path: Path) -> None:
        # Append: several gateway runs (or a restart) may share one file.
        self._file = path.open("ab")
        atexit.register(self.close)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    async def wrap(self, events: AsyncIterator[bytes], stream_id: str) -> AsyncIterator[bytes]:
        """`events` unchanged, each logged as it is handed on."""
        clock, write = time.time, self._file.write
        seq = 0
        try:
            async for event in events:
                if not (event.startswith(b"data:") or b"\ndata:" in event):
                    yield event
                    continue
                sent = clock()
                yield event
                # Starlette asks for the next event only once this one was sent: the line is
                # written after the send, so logging never delays the event it times.
                content, done = _describe(event)
                line = {"id": stream_id, "seq": seq, "t": sent, "content": content, "done": done}
                write(orjson.dumps(line) + b"\n")
                seq += 1
        finally:
            if not self._file.closed:
                self._file.flush()


def _describe(event: bytes) -> tuple[bool, bool]:
    """(carries non-empty delta content, is [DONE]) of one SSE event."""
    data = b"\n".join(
        line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")
    )
    if data == b"[DONE]":
        return False, True
    if b'"content"' not in data:
        return False, False
    try:
        payload: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False, False
    choices = payload.get("choices") if isinstance(payload, dict) else None
    content = any(
        isinstance(choice, dict)
        and isinstance(choice.get("delta"), dict)
        and bool(choice["delta"].get("content"))
        for choice in choices or ()
    )
    return content, False
