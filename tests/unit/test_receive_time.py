"""The kernel's receive stamps (loadtests/receive_time.py) where a socket has none: read as
before. (A real socket's stamps: tests/integration/test_kernel_receive_stamps.py.)"""

from __future__ import annotations


def test_a_socket_without_recvmsg_is_read_as_before() -> None:
    from opconform.loadtests import receive_time

    class TlsLike:
        def cipher(self) -> None: ...

        def recvmsg(self) -> None: ...

    assert not receive_time.enable(TlsLike())
    assert not receive_time.enable(object())
    assert receive_time.stamp([]) is None
