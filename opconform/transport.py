"""How opconform reaches a target: TLS trust, client certificates, proxies and extra headers.

One settings object, built once from the run's options, gives every client the same transport:
the suite's httpx client, the Python SDK's http client, the Node SDK's process environment and
the load tester's connections.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TransportSettings:
    ca_bundle: str | None = None  # PEM file of extra trusted CAs (--ca-bundle, SSL_CERT_FILE)
    client_cert: str | None = None  # PEM certificate for mutual TLS
    client_key: str | None = None  # its private key (None: inside client_cert)
    insecure: bool = False  # no certificate verification at all (reports say so loudly)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    secret_headers: frozenset[str] = frozenset()  # lower-case names whose values are secrets

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> TransportSettings:
        """From resolved run options (see opconform.config.OPTIONS)."""
        return cls(
            ca_bundle=values.get("ca_bundle") or os.environ.get("SSL_CERT_FILE") or None,
            client_cert=values.get("client_cert") or None,
            client_key=values.get("client_key") or None,
            insecure=bool(values.get("insecure")),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context every client uses."""
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=self.ca_bundle)
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def secret_values(self) -> list[str]:
        return [
            value for name, value in self.headers.items() if name.lower() in self.secret_headers
        ]
