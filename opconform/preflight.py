"""Can the target be reached at all? One connection (and TLS handshake) before a run starts.

A target that refuses connections, has no DNS name or presents a certificate that does not
verify gives no evidence about the contract: the run ends at once with exit 3 and one line
saying what failed, instead of a page of failed checks.
"""

from __future__ import annotations

import socket
import ssl
import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from opconform.client import Limits
    from opconform.transport import TransportSettings


def _through_proxy(url: str, scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(host)


def reach(base_url: str, transport: TransportSettings, limits: Limits) -> str | None:
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
        sock.settimeout(limits.connect_timeout)
        try:
            sock.connect(address)
        except ConnectionRefusedError:
            last = "connection refused"
            sock.close()
            continue
        except TimeoutError:
            last = f"no answer within {limits.connect_timeout:g}s (--connect-timeout)"
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
