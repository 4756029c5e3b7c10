"""The load tester's cheap SSE line decoding (loadtests/user.py EventLines) gives the same events
as the shared decoder; benchmarks/load_accuracy.py pairs the client's streams with the server's
timing log as it says. Timing itself is a benchmark, not a test: nothing here is timed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from opconform.loadtests.event_lines import EventLines
from opconform.sse import SSEDecoder


def _benchmark() -> Any:
    """benchmarks/ is scripts, not a package: load the file as the module it is."""
    path = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "load_accuracy.py"
    spec = importlib.util.spec_from_file_location("load_accuracy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BENCHMARK = _benchmark()
server_truth, client_view, client_end, saturation = (
    BENCHMARK.server_truth,
    BENCHMARK.client_view,
    BENCHMARK.client_end,
    BENCHMARK.saturation,
)


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


def _log(path: Path, streams: dict[str, list[tuple[float, bool, bool]]]) -> Path:
    with path.open("w") as out:
        for ident, events in streams.items():
            for seq, (t, content, done) in enumerate(events):
                line = {"id": ident, "seq": seq, "t": t, "content": content, "done": done}
                out.write(json.dumps(line) + "\n")
    return path


def test_server_truth_gaps_between_content_events_of_finished_streams(tmp_path: Path) -> None:
    role, done = (0.0, False, False), (0.5, False, True)
    log = _log(
        tmp_path / "timing.jsonl",
        {
            # role chunk, three content events, finish chunk, [DONE]
            "a": [role, (0.2, True, False), (0.22, True, False), (0.25, True, False), done],
            "b": [role, (0.2, True, False), (0.23, True, False)],  # cut by the end of the run
        },
    )
    gaps, itls = server_truth(log)
    assert gaps == pytest.approx([0.02, 0.03])
    assert itls == pytest.approx([0.025])
    # a stream the gateway finished after the client's last one: the client had stopped reading
    assert server_truth(log, until=0.4) == ([], [])
    assert server_truth(log, until=0.5)[0] == pytest.approx([0.02, 0.03])


def test_client_end_is_the_last_finished_stream() -> None:
    samples = [
        {"outcome": "ok", "sent": 10.0, "e2e": 1.5},
        {"outcome": "ok", "sent": 11.0, "e2e": 0.2},
        {"outcome": "broken_stream", "sent": 12.0, "e2e": 5.0},
    ]
    assert client_end(samples) == 11.5
    assert client_end([]) is None


def test_client_view_takes_finished_streams_only() -> None:
    samples = [
        {"outcome": "ok", "kind": "stream", "gaps": [0.02, 0.03], "itl": 0.025},
        {"outcome": "broken_stream", "kind": "stream", "gaps": [9.0], "itl": 9.0},
        {"outcome": "ok", "kind": "chat", "gaps": [], "itl": None},
        {"outcome": "ok", "kind": "stream", "gaps": [], "itl": None},
    ]
    assert client_view(samples) == ([0.02, 0.03], [0.025])


def test_saturation_names_what_makes_a_row_invalid() -> None:
    fine = saturation({"valid": True, "invalid_reasons": []}, [0.4, 0.5], 0.6, 201.0, 200.0)
    assert fine == []
    reasons = saturation(
        {"valid": False, "invalid_reasons": ["Locust's CPU warning fired"]},
        [0.4, 0.95],
        0.97,
        547.0,
        200.0,
    )
    assert any("generator process" in r and "95%" in r for r in reasons)
    assert any("gateway" in r and "97%" in r for r in reasons)
    assert any("first token" in r for r in reasons)
    assert "Locust's CPU warning fired" in reasons


@pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS is Linux's")
def test_the_kernel_stamps_each_read_with_its_arrival() -> None:
    """Bytes read long after they arrived carry their arrival time, not the time of the read:
    what keeps the load tester's own delays out of its figures."""
    import socket
    import threading
    import time

    from opconform.loadtests import receive_time

    # Linux turns receive stamps on for the whole machine through deferred work: on a host
    # where no socket asked for them before, the first packets after setsockopt can arrive
    # unstamped (the load tester then falls back to the event loop's time). So the test sends
    # rounds until one is stamped, and judges that one.
    rounds = 20
    server = socket.create_server(("127.0.0.1", 0))
    sent: list[float] = []
    may_send, was_sent = threading.Semaphore(0), threading.Semaphore(0)

    def send() -> None:
        connection, _ = server.accept()
        with connection:
            for _ in range(rounds):
                if not may_send.acquire(timeout=10):
                    return
                sent.append(time.time())
                connection.sendall(b"data: 1\n\n")
                was_sent.release()

    thread = threading.Thread(target=send)
    thread.start()
    stamped: float | None = None
    sent_at = read_at = 0.0
    try:
        with socket.create_connection(server.getsockname()) as client:
            assert receive_time.enable(client)
            for _ in range(rounds):
                may_send.release()
                assert was_sent.acquire(timeout=10)
                time.sleep(0.2)  # the reader is late: the bytes wait in the kernel
                read_at = time.time()
                data, stamped = receive_time.receive(client, 4096)
                assert data == b"data: 1\n\n"
                if stamped is not None:
                    sent_at = sent[-1]
                    break
    finally:
        for _ in range(rounds):
            may_send.release()
        thread.join()
        server.close()
    if stamped is None:
        pytest.skip(
            f"this kernel stamped none of {rounds} TCP reads (the event loop's time is used)"
        )
    assert sent_at <= stamped < read_at - 0.1, (sent_at, stamped, read_at)


def test_a_socket_without_recvmsg_is_read_as_before() -> None:
    from opconform.loadtests import receive_time

    class TlsLike:
        def cipher(self) -> None: ...

        def recvmsg(self) -> None: ...

    assert not receive_time.enable(TlsLike())
    assert not receive_time.enable(object())
    assert receive_time.stamp([]) is None
