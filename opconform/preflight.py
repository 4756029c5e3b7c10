"""Checks made before a run starts anything: can the run folder be used, can the target be
reached at all.

A run folder that cannot be created (a file in its path, a parent that is not writable) or that
already holds a run is bad usage: one line and exit 2 before pytest or Locust prints anything.
A target that refuses connections, has no DNS name or presents a certificate that does not
verify gives no evidence about the contract: the run ends at once with exit 3 and one line
saying what failed, instead of a page of failed checks.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from opconform.exitcodes import UsageError

if TYPE_CHECKING:
    from opconform.timeouts import Timeouts
    from opconform.transport import TransportSettings


def check_report_dir(path: Path, flag: str = "--report-dir", *, empty: bool = True) -> None:
    """UsageError unless `path` is a folder this process may write (and, with `empty`, holds
    nothing yet), or can be made one."""
    where = f"{flag} {path}"
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{where}: exists and is not a folder")
        if empty and any(path.iterdir()):
            raise UsageError(f"{where} is not empty: choose a new folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{where}: not writable")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{where}: cannot create it, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{where}: cannot create it, {parent} is not writable")


def make_report_dir(path: Path, flag: str = "--report-dir") -> Path | None:
    """Create the checked run folder. Returns the outermost folder this call created (the run
    folder or a parent of it), None when it existed: what discard_report_dir removes."""
    created = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        created = folder
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # checked just before; a race or a read-only file system
        raise UsageError(f"{flag} {path}: cannot create it ({exc.strerror})") from None
    return created


def discard_report_dir(path: Path, created: Path | None) -> None:
    """Leave no trace of a run that ended in a usage error: the folder as it was before (gone,
    with the parents make_report_dir created, or empty if it was given empty)."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _through_proxy(url: str, scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(host)


def reach(base_url: str, transport: TransportSettings, timeouts: Timeouts) -> str | None:
    """None when a connection (and for https a verified TLS handshake) succeeds; else one line:
    "cannot connect to https://...: connection refused"."""
    parsed = urlparse(base_url)
    scheme, host = parsed.scheme, parsed.hostname or ""
    port = parsed.port or (443 if scheme == "https" else 80)
    if transport.env_proxies and _through_proxy(base_url, scheme, host):
        return None  # the proxy is what we connect to; the breaker judges the rest
    where = f"cannot connect to {base_url}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"{where}: cannot resolve {host!r} ({exc.strerror})"
    last = "no address"
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeouts.connect)
        try:
            sock.connect(address)
        except ConnectionRefusedError:
            last = "connection refused"
            sock.close()
            continue
        except TimeoutError:
            last = f"no answer within {timeouts.connect:g}s (--connect-timeout)"
            sock.close()
            continue
        except OSError as exc:
            last = exc.strerror or str(exc)
            sock.close()
            continue
        try:
            if scheme == "https":
                with transport.ssl_context().wrap_socket(sock, server_hostname=host):
                    pass
            return None
        except ssl.SSLCertVerificationError as exc:
            return (
                f"{where}: the certificate does not verify ({exc.verify_message}); see --ca-bundle"
            )
        except ssl.SSLError as exc:
            return f"{where}: TLS handshake failed ({exc.reason or exc})"
        except (TimeoutError, OSError) as exc:
            return f"{where}: TLS handshake failed ({exc})"
        finally:
            sock.close()
    return f"{where}: {last}"
