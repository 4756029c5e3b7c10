"""The load tester's cheap SSE line decoding (loadtests/event_lines.py) gives the same events
as the shared decoder (opconform/sse.py), whatever the line endings."""

from __future__ import annotations

import pytest

from opconform.loadtests.event_lines import EventLines
from opconform.sse import SSEDecoder


def _lines(body: bytes) -> list[bytes]:
    """The body as readline(b"\\n") hands it over: each line with its LF, a last one without."""
    parts = body.split(b"\n")
    return [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _reference(body: bytes) -> list[str]:
    decoder = SSEDecoder(keep_raw=False)
    return [event.data for line in _lines(body) for event in decoder.feed(line, 0.0)]


def _cheap(body: bytes) -> list[str]:
    lines = EventLines()
    return [data for line in _lines(body) for data in lines.feed(line)]


BODIES = [
    b'data: {"a":1}\n\ndata: [DONE]\n\n',
    b'data:{"a":1}\n\n',  # no space after the colon
    b"data:  two spaces\n\n",  # only the first space goes
    b"data: a\ndata: b\n\n",  # joined with LF
    b"data\n\n",  # a field name alone: empty data
    b": ping\n\ndata: x\n\n",  # a comment, and a blank line with no data dispatches nothing
    b"event: message\nid: 7\nretry: 10\ndata: x\n\n",
    b"datax: no\n\ndata: yes\n\n",  # another field name
    b"data: \xff\xfe bad utf-8\n\n",
    b"data: a\r\n\r\ndata: b\r\n\r\n",  # CRLF: the shared decoder takes over
    b"data: a\ndata: b\r\n\r\ndata: c\n\n",  # ...in the middle of an event
    b"data: a\rdata: b\r\r",  # CR only
    b"data: cut at the end",  # no line end: never dispatched
    b"data: x\n\ndata: unfinished\n",
    b"",
]


@pytest.mark.parametrize("body", BODIES)
def test_event_lines_decode_as_the_shared_decoder(body: bytes) -> None:
    assert _cheap(body) == _reference(body)
