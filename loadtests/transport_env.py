"""How `opconform load` hands the run's transport (TLS trust, client certificate, extra headers;
opconform/transport.py) to the Locust processes: one JSON environment variable, never the
command line, where `ps` would show secret headers. No Locust import: the parent uses it too."""

from __future__ import annotations

import json
import os

from opconform.transport import TransportSettings

TRANSPORT_VARIABLE = "OP_LOAD_TRANSPORT"  # JSON from `opconform load`: headers may be secret


def transport_from_environment() -> TransportSettings:
    """TLS trust, client certificate and extra headers, as `opconform load` resolved them (an
    environment variable, never the command line, where `ps` would show secret headers)."""
    data = json.loads(os.environ.get(TRANSPORT_VARIABLE) or "{}")
    return TransportSettings(
        ca_bundle=data.get("ca_bundle"),
        client_cert=data.get("client_cert"),
        client_key=data.get("client_key"),
        insecure=bool(data.get("insecure")),
        headers=data.get("headers") or {},
        secret_headers=frozenset(data.get("secret_headers") or ()),
    )


def transport_to_environment(transport: TransportSettings) -> dict[str, str]:
    return {
        TRANSPORT_VARIABLE: json.dumps(
            {
                "ca_bundle": transport.ca_bundle,
                "client_cert": transport.client_cert,
                "client_key": transport.client_key,
                "insecure": transport.insecure,
                "headers": dict(transport.headers),
                "secret_headers": sorted(transport.secret_headers),
            }
        )
    }
