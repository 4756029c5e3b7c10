"""The kernel stamps each read of a loopback TCP socket with the bytes' arrival
(loadtests/receive_time.py): what keeps the load tester's own delays out of its figures."""

from __future__ import annotations

import sys

import pytest


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
    reader_done = threading.Event()  # the reader has closed its end: nothing more to send

    def send() -> None:
        connection, _ = server.accept()
        with connection:
            for _ in range(rounds):
                if not may_send.acquire(timeout=10) or reader_done.is_set():
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
        reader_done.set()
        for _ in range(rounds):
            may_send.release()
        thread.join()
        server.close()
    if stamped is None:
        pytest.skip(
            f"this kernel stamped none of {rounds} TCP reads (the event loop's time is used)"
        )
    assert sent_at <= stamped < read_at - 0.1, (sent_at, stamped, read_at)
