"""The data of each server-sent event, cheaply, from a stream's body read line by line.

Pure Python (no Locust or gevent), so it is tested on its own
(tests/unit/test_event_lines.py).
"""

from __future__ import annotations

from opconform.sse import SSEDecoder


class EventLines:
    """The data of each SSE event, from the body's lines as `readline(b"\\n")` returns them.

    Plain LF-framed lines (what every OpenAI-compatible server sends) are decoded here, as
    opconform.sse.SSEDecoder would decode them but at a fraction of its cost: the load tester
    reads tens of thousands of events a second, and each stream's work delays the others.
    Only `data` fields matter here (comments, `event`, `id` and `retry` are ignored). The first
    line with a CR (or a last line without LF) hands the rest of the stream to SSEDecoder,
    which decodes every line ending."""

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self._decoder: SSEDecoder | None = None

    def feed(self, line: bytes) -> list[str]:
        if self._decoder is None:
            if line.endswith(b"\n") and b"\r" not in line:
                line = line[:-1]
                if line:
                    if line.startswith(b"data:"):
                        value = line[5:]
                        self._data.append(value[1:] if value.startswith(b" ") else value)
                    elif line == b"data":
                        self._data.append(b"")
                    return []
                if not self._data:
                    return []  # a blank line with no data dispatches nothing
                data, self._data = b"\n".join(self._data), []
                return [data.decode("utf-8", "replace")]
            self._decoder = SSEDecoder(keep_raw=False)
            for value in self._data:  # the event in progress, as the decoder would have it
                self._decoder.feed(b"data:" + value + b"\n", 0.0)
            self._data = []
        return [event.data for event in self._decoder.feed(line, 0.0)]
