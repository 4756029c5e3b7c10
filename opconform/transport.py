"""How opconform reaches a target: TLS trust, client certificates, proxies and extra headers.

One settings object, built once from the run's options, gives every client the same transport:
the suite's httpx client, the Python SDK's http client, the Node SDK's process environment and
the load tester's connections.

Trust: `--ca-bundle` is trusted *in addition to* the system's CAs (as NODE_EXTRA_CA_CERTS is for
Node), so the suite, both SDKs and the load tester trust exactly the same set. SSL_CERT_FILE is
honoured as OpenSSL-based tools do (it replaces the system bundle of Python's default context)
and, when --ca-bundle is not given, is also the bundle handed to Node.

Proxies: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY (either case) are honoured with httpx's
semantics, which follow curl's: NO_PROXY is a comma-separated list of hosts, domain suffixes, IP
addresses or `*`; nothing is bypassed implicitly, so a loopback target goes through the proxy
unless NO_PROXY names it. Only the embedded gateway, which opconform starts on loopback itself,
never goes through a proxy.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from opconform.exitcodes import UsageError

# RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers whose values are credentials, by name: redacted like keys without being told.
_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
_SECRET_PARTS = ("token", "secret", "key", "auth", "password", "session", "cookie", "signature")
# Headers the suite sets itself on every request (or that framing owns): an extra header may not
# replace them, or checks would no longer send what they claim to send.
_RESERVED = frozenset(
    {"authorization", "host", "content-length", "transfer-encoding", "connection", "te"}
)


def is_secret_name(name: str) -> bool:
    lower = name.lower()
    return lower in _SECRET_NAMES or any(part in lower for part in _SECRET_PARTS)


def parse_header(text: str, source: str) -> tuple[str, str]:
    """'Name: value' -> ('name', 'value'); UsageError on anything an HTTP client would refuse."""
    name, colon, value = str(text).partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name:
        raise UsageError(f"{source}: expected 'Name: value', not {_preview(text)}")
    if not _TOKEN.match(name):
        raise UsageError(f"{source}: {name!r} is not a valid header name")
    if any(ch in value for ch in "\r\n\0"):
        raise UsageError(f"{source}: the value of {name} contains a line break or NUL")
    if name.lower() in _RESERVED:
        raise UsageError(
            f"{source}: {name} is set by opconform itself (keys go in --api-key and friends)"
        )
    return name.lower(), value


def _preview(text: str) -> str:
    # A malformed header may still hold a secret: show its shape, never its value.
    shown = str(text).split(":")[0][:40]
    return repr(shown + ("..." if len(str(text)) > len(shown) else ""))


def split_headers(value: Any) -> list[str]:
    """Header lines from the environment or a config file: a list, or one string of lines.
    Newlines separate them (commas and semicolons both occur inside header values)."""
    items = value if isinstance(value, list) else str(value).splitlines()
    return [str(item).strip() for item in items if str(item).strip()]


@dataclass(frozen=True)
class TransportSettings:
    ca_bundle: str | None = None  # PEM file of extra trusted CAs (--ca-bundle, SSL_CERT_FILE)
    client_cert: str | None = None  # PEM certificate for mutual TLS
    client_key: str | None = None  # its private key (None: inside client_cert)
    insecure: bool = False  # no certificate verification at all (reports say so loudly)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    secret_headers: frozenset[str] = frozenset()  # lower-case names whose values are secrets
    env_proxies: bool = True  # honour HTTP(S)_PROXY / NO_PROXY (off for the embedded gateway)

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> TransportSettings:
        """From resolved run options (see opconform.config.OPTIONS); UsageError, naming the
        option, for a missing or unreadable file, a bad certificate or a malformed header."""
        env = os.environ if env is None else env
        ca_bundle, ca_source = values.get("ca_bundle"), "--ca-bundle"
        if not ca_bundle and env.get("SSL_CERT_FILE"):
            ca_bundle, ca_source = env["SSL_CERT_FILE"], "SSL_CERT_FILE"
        headers: dict[str, str] = {}
        secret: set[str] = set()
        for line in values.get("header") or []:
            name, value = parse_header(line, "--header")
            headers[name] = value
            if is_secret_name(name):
                secret.add(name)
        for line in values.get("secret_header") or []:
            name, value = parse_header(line, "--secret-header")
            headers[name] = value
            secret.add(name)
        settings = cls(
            ca_bundle=_existing(ca_bundle, ca_source),
            client_cert=_existing(values.get("client_cert"), "--client-cert"),
            client_key=_existing(values.get("client_key"), "--client-key"),
            insecure=bool(values.get("insecure")),
            headers=headers,
            secret_headers=frozenset(secret),
        )
        if settings.client_key and not settings.client_cert:
            raise UsageError("--client-key needs --client-cert")
        settings.check(ca_source)
        return settings

    def check(self, ca_source: str = "--ca-bundle") -> None:
        """Load every file once now, so a wrong one is a usage error, not a failed run."""
        if self.ca_bundle:
            try:
                ssl.create_default_context().load_verify_locations(cafile=self.ca_bundle)
            except (ssl.SSLError, ValueError) as exc:
                raise UsageError(
                    f"{ca_source} {self.ca_bundle}: not a PEM certificate bundle ({_reason(exc)})"
                ) from None
        if self.client_cert:
            try:
                ssl.create_default_context().load_cert_chain(self.client_cert, self.client_key)
            except (ssl.SSLError, ValueError) as exc:
                raise UsageError(
                    f"--client-cert {self.client_cert}: cannot load the certificate and its key "
                    f"({_reason(exc)})"
                ) from None

    def without_env_proxies(self) -> TransportSettings:
        return replace(self, env_proxies=False)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context every Python client uses: system CAs (or SSL_CERT_FILE) plus
        --ca-bundle, the client certificate if any; no verification with --insecure."""
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_bundle:
            context.load_verify_locations(cafile=self.ca_bundle)
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def secret_values(self) -> list[str]:
        return [value for name, value in self.headers.items() if name in self.secret_headers]

    def node_env(self) -> dict[str, str]:
        """What the Node SDK process needs to reach the target the same way (read by
        conformance/node/sdk_check.mjs)."""
        env = {
            "OP_SDK_HEADERS": json.dumps(dict(self.headers)),
            "OP_SDK_ENV_PROXIES": "1" if self.env_proxies else "",
            "OP_SDK_CLIENT_CERT": self.client_cert or "",
            "OP_SDK_CLIENT_KEY": self.client_key or self.client_cert or "",
            "OP_SDK_INSECURE": "1" if self.insecure else "",
        }
        if self.ca_bundle:
            env["NODE_EXTRA_CA_CERTS"] = self.ca_bundle  # added to Node's roots, as ours are
        if self.insecure:
            env["NODE_TLS_REJECT_UNAUTHORIZED"] = "0"
        return env

    def describe(self) -> dict[str, Any]:
        """For reports: never a secret header's value."""
        return {
            "ca_bundle": self.ca_bundle,
            "client_certificate": bool(self.client_cert),
            "insecure": self.insecure,
            "headers": {
                name: "[REDACTED]" if name in self.secret_headers else value
                for name, value in self.headers.items()
            },
            "env_proxies": self.env_proxies,
        }


def _existing(path: str | None, source: str) -> str | None:
    if not path:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"{source} {path}: no such file")
    if not os.access(file, os.R_OK):
        raise UsageError(f"{source} {path}: not readable")
    return str(file)


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)


def merge_headers(*layers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> dict[str, str]:
    """Later layers win; names compared case-insensitively (stored lower-case)."""
    merged: dict[str, str] = {}
    for layer in layers:
        if not layer:
            continue
        items = layer.items() if isinstance(layer, Mapping) else layer
        for name, value in items:
            merged[name.lower()] = value
    return merged
