"""When a stream's bytes reached this machine, as the kernel stamped them (SO_TIMESTAMPNS).

A greenlet learns of its bytes only when the event loop gets to it: at 50 streams, after the
work of every other stream woken at the same moment, or after a busy machine ran something
else. The kernel stamps each packet as it arrives; `recvmsg` hands that stamp over with the
bytes (for TCP, the stamp of the last packet read). Linux only; a socket that cannot (TLS, other
systems) is read as before and stamped by the event loop.

Pure socket code, no gevent or Locust: tested on its own.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

# Linux's value where Python does not name it (SO_TIMESTAMPNS_OLD; SCM_TIMESTAMPNS is the same).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")  # struct timespec on 64-bit Linux: seconds, nanoseconds
ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)


def enable(sock: Any) -> bool:
    """Ask the kernel to stamp what this socket receives; False where it cannot be read so."""
    if not hasattr(sock, "recvmsg") or hasattr(sock, "cipher"):  # TLS sockets have no recvmsg
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive time (wall clock, seconds) in recvmsg's ancillary data, if it has one."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return None


def receive(sock: Any, size: int) -> tuple[bytes, float | None]:
    """Up to `size` bytes and the wall-clock time the kernel received them (None: unstamped)."""
    data, ancillary, _flags, _address = sock.recvmsg(size, ANCILLARY_SIZE)
    return data, stamp(ancillary)
