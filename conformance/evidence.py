"""Evidence: every exchange a check makes, redacted at the moment it is recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from opconform.client import Exchange
from opconform.redact import Redactor

BODY_PREVIEW = 4096


def _text(body: bytes, limit: int = BODY_PREVIEW) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return text + (f"... ({len(body) - limit} more bytes)" if len(body) > limit else "")


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

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.current: list[dict[str, Any]] = []
        self.all_statuses: list[tuple[str | None, int | None]] = []

    def __call__(self, exchange: Exchange) -> None:
        self.current.append(record(exchange, self.redactor))
        self.all_statuses.append((exchange.key_label, exchange.status))

    def attach(self, exchange: Exchange) -> None:
        """Add an exchange made earlier (e.g. by a shared fixture) to the running check."""
        self.current.append(record(exchange, self.redactor))

    def take(self) -> list[dict[str, Any]]:
        taken, self.current = self.current, []
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
