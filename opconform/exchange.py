"""One request and what came back: the record every check, invariant and report reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from opconform.sse import SSEEvent, SSEStats


@dataclass(repr=False)
class Exchange:
    """One request and what came back, with timings. Bodies stay raw in memory; evidence is
    redacted when it is recorded (see opconform.conformance.evidence)."""

    method: str
    url: str
    path: str
    key_label: str | None
    request_headers: dict[str, str]
    request_body: bytes
    started_at: float  # wall clock, for reports
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    truncated: bool = False
    error: str | None = None
    # timeout, transport, body-cap, stream-cap (the stream broke the contract's bounds) or
    # deadline (our run's deadline cut it: no evidence about the target)
    error_kind: str | None = None
    aborted: bool = False  # a check disconnected on purpose (held streams)
    # Why the request went out a second time (its first connection was reset before any answer)
    resent: str | None = None
    # stream-cap reached by the count of events the request's max_tokens allows (not by time):
    # the stream went on past max_tokens, which says nothing yet about whether it would end
    past_event_cap: bool = False
    elapsed: float = 0.0
    time_to_headers: float | None = None
    time_to_first_byte: float | None = None
    # streams only
    events: list[SSEEvent] | None = None
    sse: SSEStats | None = None
    done_count: int = 0
    events_after_done: int = 0
    closed_after_done: bool | None = None
    incomplete_tail: bytes = b""
    # A 429 as the pacer judged it: `limit_note` says why (explained or not); `below_plan` is
    # set when the run had sent fewer than the plan allows in a window it saw from its start.
    limit_note: str | None = None
    below_plan: bool = False
    shared_limit: bool = False  # the run's keys together filled this key's window (OP-RL-012)
    stated_below_plan: bool = False  # the key's X-RateLimit-Limit is below its plan (OP-RL-004)
    window_not_reset: bool = False  # refused again after the reset it named (OP-RL-009)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        # pytest prints reprs in assertion explanations: never the request headers (keys).
        return f"<Exchange {self.describe()}>"

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def endpoint(self) -> str:
        return endpoint(self.method, self.path)

    @property
    def failed(self) -> bool:
        """A transport failure of the target: not a cut by our own run's deadline, and not a
        disconnect of our own (a check that abandons a held stream)."""
        return self.error is not None and self.error_kind != "deadline" and not self.aborted

    def json(self) -> Any:
        """The body as JSON; raises ValueError with a short description otherwise."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            preview = self.body[:80].decode("utf-8", errors="replace")
            raise ValueError(f"body is not JSON ({exc.__class__.__name__}): {preview!r}") from exc

    def json_events(self, *, skip_broken: bool = False) -> list[Any]:
        """Payloads of the stream's data events before [DONE]; ValueError if one is not JSON,
        unless `skip_broken` leaves it out (a broken event is the checks' finding, not the
        token budget's)."""
        payloads = []
        for index, event in enumerate(self.events or []):
            if event.is_done:
                break
            try:
                payloads.append(json.loads(event.data))
            except ValueError:
                if skip_broken:
                    continue
                raise ValueError(f"event {index} is not JSON: {event.data[:80]!r}") from None
        return payloads

    def describe(self) -> str:
        if self.error:
            return f"{self.method} {self.path} -> {self.error}"
        return f"{self.method} {self.path} -> {self.status} {self.content_type or '(no type)'}"


def endpoint(method: str, path: str) -> str:
    """What the endpoint breaker counts by: the method and the path without its query."""
    return f"{method} {path.split('?')[0]}"
