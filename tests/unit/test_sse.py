"""The shared SSE decoder: WHATWG decoding plus the evidence the SDK checks need."""

from __future__ import annotations

from opconform.sse import SSEDecoder


def _decode(*chunks: bytes) -> tuple[list, SSEDecoder]:
    decoder = SSEDecoder()
    events = []
    for index, chunk in enumerate(chunks):
        events += decoder.feed(chunk, float(index))
    return events, decoder


def test_events_and_done() -> None:
    events, decoder = _decode(b'data: {"a":1}\n\ndata: [DONE]\n\n')
    assert [e.data for e in events] == ['{"a":1}', "[DONE]"]
    assert events[1].is_done and not decoder.incomplete


def test_line_ends_cr_lf_crlf_and_split_crlf() -> None:
    events, _ = _decode(b"data: a\r", b"\n\r\ndata: b\r\rdata: c\n\n")
    assert [e.data for e in events] == ["a", "b", "c"]


def test_split_across_chunks_keeps_arrival_time_of_completion() -> None:
    events, _ = _decode(b"da", b"ta: x", b"\n", b"\n")
    assert [(e.data, e.at) for e in events] == [("x", 3.0)]


def test_multiline_data_joined_and_counted() -> None:
    events, _ = _decode(b'data: {\ndata: "a": 1}\n\n')
    assert events[0].data == '{\n"a": 1}' and events[0].data_lines == 2


def test_fields_comments_and_non_data_runs() -> None:
    events, decoder = _decode(b": ping\n\n: ping\n\nevent: message\nid: 7\nretry: 10\ndata: x\n\n")
    assert events[0].event == "message" and events[0].id == "7" and events[0].retry == "10"
    assert events[0].comments_before == 2
    assert {"event", "id", "retry", "data"} <= decoder.stats.fields_seen
    # blank, ping, blank, ping, blank... before the first data line: go-openai's counter
    assert decoder.stats.max_non_data_run == 7


def test_no_value_space_and_empty_data() -> None:
    events, _ = _decode(b"data:x\n\ndata:\n\n")
    assert [e.data for e in events] == ["x", ""]


def test_incomplete_event_at_end_is_reported() -> None:
    events, decoder = _decode(b'data: {"a":1}\n\ndata: {"b"')
    assert len(events) == 1 and decoder.incomplete.endswith(b'{"b"')


def test_invalid_utf8_is_flagged() -> None:
    _, decoder = _decode(b"data: \xff\n\n")
    assert decoder.stats.invalid_utf8
