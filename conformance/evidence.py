"""Evidence: every exchange a check makes, redacted at the moment it is recorded."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opconform.client import Exchange
from opconform.conformance import prefetch
from opconform.contract import KEY_PREFIX, KEY_VARIABLES
from opconform.redact import Redactor

BODY_PREVIEW = 4096


def _text(body: bytes, limit: int = BODY_PREVIEW) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return text + (f"... ({len(body) - limit} more bytes)" if len(body) > limit else "")


def curl_command(exchange: Exchange, keys: Mapping[str, str], redactor: Redactor) -> str:
    """A copy-paste curl line that replays the request: each key is written as the variable
    that holds it ($OP_API_KEY ...), so the line shows exactly what was sent and no secret."""
    headers = []
    for name, value in exchange.request_headers.items():
        if name.lower() in ("user-agent", "accept-encoding", "connection", "host"):
            continue
        for label, secret in sorted(keys.items(), key=lambda kv: -len(kv[1])):
            variable = "$" + KEY_VARIABLES.get(label, f"OP_{label.upper()}_API_KEY")
            value = value.replace(secret, variable)
            bare = secret.removeprefix(KEY_PREFIX)
            if bare != secret and len(bare) >= 4:
                value = value.replace(bare, "${" + variable[1:] + "#" + KEY_PREFIX + "}")
        headers.append(f"{name}: {value}")
    parts = ["curl", "-sS", "-i"]
    if exchange.events is not None or "text/event-stream" in str(
        exchange.request_headers.get("accept", "")
    ):
        parts.append("-N")
    if exchange.method != "GET" or exchange.request_body:
        parts += ["-X", exchange.method]
    line = " ".join(parts) + " " + shlex.quote(redactor.text(exchange.url))
    for header in headers:
        line += " -H " + _quote(redactor.text(header))
    if exchange.request_body:
        body = exchange.request_body[:2000].decode("utf-8", errors="replace")
        line += " --data-raw " + shlex.quote(redactor.text(body))
    return line


def _quote(text: str) -> str:
    """Double quotes where a $VARIABLE must expand; single quotes otherwise."""
    if "$" in text and '"' not in text and "`" not in text and "\\" not in text:
        return '"' + text + '"'
    return shlex.quote(text)


def record(exchange: Exchange, redactor: Redactor) -> dict[str, Any]:
    """A JSON-able, redacted account of one exchange."""
    entry: dict[str, Any] = {
        "request": {
            "method": exchange.method,
            "url": redactor.text(exchange.url),
            "key": exchange.key_label,
            "headers": redactor.headers(exchange.request_headers),
            "body": redactor.text(_text(exchange.request_body)),
        },
        "response": {
            "status": exchange.status,
            "headers": redactor.headers(exchange.headers),
            "body": redactor.text(_text(exchange.body)),
            "truncated": exchange.truncated,
        },
        "error": redactor.text(exchange.error) if exchange.error else None,
        "aborted_by_check": exchange.aborted,
        "resent": exchange.resent,
        "started_at": exchange.started_at,
        "elapsed_s": round(exchange.elapsed, 4),
        "time_to_headers_s": (
            round(exchange.time_to_headers, 4) if exchange.time_to_headers is not None else None
        ),
        "time_to_first_byte_s": (
            round(exchange.time_to_first_byte, 4)
            if exchange.time_to_first_byte is not None
            else None
        ),
    }
    if exchange.events is not None:
        entry["stream"] = {
            "events": len(exchange.events),
            "done_count": exchange.done_count,
            "events_after_done": exchange.events_after_done,
            "closed_after_done": exchange.closed_after_done,
            "fields_seen": sorted(exchange.sse.fields_seen) if exchange.sse else [],
            "incomplete_tail": redactor.text(_text(exchange.incomplete_tail, 300)),
        }
    return entry


class Recorder:
    """Collects the exchanges of the check that is running."""

    def __init__(
        self, redactor: Redactor, observe: Callable[[Exchange], None] | None = None
    ) -> None:
        self.redactor = redactor
        self.observe = observe  # the whole-run invariants see every exchange
        self.keys: dict[str, str] = {}  # label -> key, for replay lines with $OP_API_KEY
        self.current: list[dict[str, Any]] = []
        self.current_exchanges: list[Exchange] = []
        self.all_statuses: list[tuple[str | None, int | None]] = []

    def __call__(self, exchange: Exchange) -> None:
        if not prefetch.record(exchange):  # a job's: the checks that take it attach it
            self.current.append(self._entry(exchange))
            self.current_exchanges.append(exchange)
        self.all_statuses.append((exchange.key_label, exchange.status))
        if self.observe is not None:
            self.observe(exchange)

    def _entry(self, exchange: Exchange) -> dict[str, Any]:
        entry = record(exchange, self.redactor)
        entry["curl"] = curl_command(exchange, self.keys, self.redactor)
        return entry

    def replay(self, exchange: Exchange) -> str:
        return curl_command(exchange, self.keys, self.redactor)

    def attach(self, exchange: Exchange) -> None:
        """Add an exchange made earlier (e.g. by a shared fixture) to the running check."""
        self.current.append(self._entry(exchange))
        self.current_exchanges.append(exchange)

    def take(self) -> list[dict[str, Any]]:
        taken, self.current = self.current, []
        self.current_exchanges = []
        return taken


def transcript_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:150] + ".json"


def write_transcript(
    folder: Path, nodeid: str, exchanges: list[dict[str, Any]], redactor: Redactor
) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    name = transcript_name(nodeid)
    text = json.dumps({"check": nodeid, "exchanges": exchanges}, indent=2)
    (folder / name).write_text(redactor.text(text), encoding="utf-8")
    return f"transcripts/{name}"
