"""A strict, incremental server-sent events decoder that keeps the evidence.

It decodes as the WHATWG spec says (CR, LF or CRLF line ends; `:` comments; `data` lines joined
with LF; dispatch on a blank line) and also records what the official SDKs trip over: `event:`,
`id:` and `retry:` fields, payloads split over several `data:` lines, and runs of non-data lines
(go-openai gives up after 300). Each event keeps the arrival time of the bytes that completed it,
so the caller's read loop decides timing accuracy: feed it chunks as they arrive.
Shared by the conformance suite and the load tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass
class SSEEvent:
    data: str
    data_lines: int
    at: float  # arrival time (caller's clock) of the blank line that dispatched the event
    event: str | None = None
    id: str | None = None
    retry: str | None = None
    comments_before: int = 0  # comment lines since the previous event
    raw: bytes = b""

    @property
    def is_done(self) -> bool:
        return self.data == "[DONE]"


@dataclass
class SSEStats:
    lines: int = 0
    comments: int = 0
    fields_seen: set[str] = field(default_factory=set)
    unknown_fields: set[str] = field(default_factory=set)
    # Longest run of non-data lines between two data lines (blank lines count, as in go-openai).
    max_non_data_run: int = 0
    invalid_utf8: bool = False


class SSEDecoder:
    def __init__(self, keep_raw: bool = True) -> None:
        self._buffer = b""
        self._pending_cr = False
        self._keep_raw = keep_raw
        self._raw: list[bytes] = []
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: str | None = None
        self._comments = 0
        self._non_data_run = 0
        self.stats = SSEStats()

    def feed(self, chunk: bytes, at: float) -> list[SSEEvent]:
        """Decode `chunk`, which arrived at time `at`; returns the events it completed."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across two chunks
        self._pending_cr = False
        buffer = self._buffer + chunk
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            if match.group(0) == b"\r" and match.end() == len(buffer):
                self._pending_cr = True  # may be the first half of CRLF
            line = buffer[start : match.start()]
            raw_line = buffer[start : match.end()]
            start = match.end()
            event = self._line(line, raw_line, at)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    @property
    def incomplete(self) -> bytes:
        """Bytes of an event that never got its blank line (at end of stream)."""
        pending = b"".join(self._raw) + self._buffer
        return pending if (self._data or self._buffer.strip()) else b""

    def _line(self, line: bytes, raw_line: bytes, at: float) -> SSEEvent | None:
        self.stats.lines += 1
        if self._keep_raw:
            self._raw.append(raw_line)
        if not line:
            self._non_data_run += 1
            return self._dispatch(at)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.stats.invalid_utf8 = True
            text = line.decode("utf-8", errors="replace")
        if text.startswith(":"):
            self.stats.comments += 1
            self._comments += 1
            self._non_data_run += 1
            return None
        name, colon, value = text.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self.stats.fields_seen.add(name)
        if name == "data":
            self.stats.max_non_data_run = max(self.stats.max_non_data_run, self._non_data_run)
            self._non_data_run = 0
            self._data.append(value)
            return None
        self._non_data_run += 1
        if name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry":
            self._retry = value
        else:
            self.stats.unknown_fields.add(name)
        return None

    def _dispatch(self, at: float) -> SSEEvent | None:
        raw = b"".join(self._raw)
        self._raw = []
        if not self._data:
            # A blank line with no data dispatches nothing (WHATWG); the fields seen are dropped.
            self._event = self._id = self._retry = None
            return None
        event = SSEEvent(
            data="\n".join(self._data),
            data_lines=len(self._data),
            at=at,
            event=self._event,
            id=self._id,
            retry=self._retry,
            comments_before=self._comments,
            raw=raw,
        )
        self._data = []
        # Per event, for evidence (WHATWG keeps the last id for reconnection; we never reconnect).
        self._event = self._id = self._retry = None
        self._comments = 0
        return event
