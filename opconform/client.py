"""The one HTTP client of the conformance suite.

Every request has connect, read and total deadlines and a size cap, and never retries: the suite
needs exact request counts to judge rate limits. Bytes are read on a worker thread and handed
over with their arrival times, so a target that hangs, trickles or streams forever is cut off at
the deadline by the caller's clock, never by the target's good will.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from opconform import __version__
from opconform.config import OPTION_BY_NAME
from opconform.ratelimit import (
    Pacer,
    PacingStopped,
    about_tokens,
    read_rate_headers,
    retry_after_seconds,
)
from opconform.sse import SSEDecoder, SSEEvent, SSEStats
from opconform.transport import TransportSettings

USER_AGENT = f"opconform/{__version__}"
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    # The timeouts' defaults are the run options' (config.OPTIONS), declared there once.
    connect_timeout: float = OPTION_BY_NAME["connect_timeout"].default
    read_timeout: float = OPTION_BY_NAME["read_timeout"].default  # longest silence between reads
    request_timeout: float = OPTION_BY_NAME["request_timeout"].default  # whole exchange
    close_grace: float = 2.0  # how long a stream may stay open after [DONE]
    max_body_bytes: int = 4 * 1024 * 1024
    max_stream_bytes: int = 16 * 1024 * 1024
    max_consecutive_failures: int = 3  # on one endpoint: then that endpoint is not called again
    # The target as a whole: this many transport failures in a row across endpoints, or this
    # much time spent in failed exchanges, and the run stops sending (the rest is blocked).
    target_failures_in_a_row: int = 5
    target_failed_seconds: float = 30.0
    # A stream with more events than this (per max_tokens asked, plus room for the role, finish
    # and usage chunks) does not end the way the contract says: cut it and say so.
    stream_events_per_token: int = 4
    stream_events_floor: int = 64


class RunStopped(Exception):
    """The run's deadline passed or the target-level breaker opened: nothing more is sent, and
    every check from here on is blocked with this reason."""


class TargetUnreachable(Exception):
    """One endpoint failed at the transport level too often in a row; checks stop calling it."""


class TargetBreaker:
    """Once the target has shown it is broken at the transport level (failures in a row across
    endpoints, or too much time spent in failed exchanges), stop sending to it at all: a
    hostile target must end a run in bounded time, with the checks it could not reach blocked."""

    def __init__(self, limits: Limits, deadline: float | None = None) -> None:
        self.limits = limits
        self.deadline = deadline  # monotonic time the whole run must end by (--deadline)
        self.in_a_row = 0
        self.failed_seconds = 0.0
        self.reason: str | None = None

    def check(self) -> None:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "the run's --deadline passed"
        if self.reason is not None:
            raise RunStopped(self.reason)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def record(self, exchange: Exchange) -> None:
        if not _failed(exchange):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.failed_seconds += exchange.elapsed
        if self.in_a_row >= self.limits.target_failures_in_a_row:
            self.reason = (
                f"the target failed at the transport level {self.in_a_row} times in a row "
                f"(last: {exchange.describe()})"
            )
        elif self.failed_seconds >= self.limits.target_failed_seconds:
            self.reason = (
                f"{self.failed_seconds:.0f}s spent in failed exchanges "
                f"(last: {exchange.describe()})"
            )


class UnexpectedRateLimit(Exception):
    """A 429 in a check that is not about rate limits, that waiting for the window did not
    cure (or that is not the requests/min limit)."""

    def __init__(self, exchange: Exchange) -> None:
        why = exchange.limit_note or "the key's limits were hit by something other than this check"
        super().__init__(
            f"429 from {exchange.method} {exchange.path} (key {exchange.key_label}; "
            f"Retry-After {exchange.header('retry-after')!r}): {why}"
        )
        self.exchange = exchange


class StreamsDoNotEnd(Exception):
    """A stream of this run went past its cap without [DONE]: another stream read to its end
    would only wait out its own cap (one never-ending stream is one finding, not one per
    check). Raised instead of sending; holding a stream open is still allowed."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(f"not sent: an earlier stream did not end ({exchange.error})")
        self.exchange = exchange


class LimitSpent(Exception):
    """A 429 for a limit the plan explains whose reset lies beyond the run (tokens/day, or a
    window the deadline does not leave time to wait for): not sent, and no failure."""


class BudgetExhausted(Exception):
    """The run's --max-tokens-total would be exceeded by another completion."""


@dataclass(repr=False)
class Exchange:
    """One request and what came back, with timings. Bodies stay raw in memory; evidence is
    redacted when it is recorded (see conformance.evidence)."""

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

    def json(self) -> Any:
        """The body as JSON; raises ValueError with a short description otherwise."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            preview = self.body[:80].decode("utf-8", errors="replace")
            raise ValueError(f"body is not JSON ({exc.__class__.__name__}): {preview!r}") from exc

    def json_events(self) -> list[Any]:
        """Payloads of the stream's data events before [DONE]; ValueError if one is not JSON."""
        payloads = []
        for index, event in enumerate(self.events or []):
            if event.is_done:
                break
            try:
                payloads.append(json.loads(event.data))
            except ValueError:
                raise ValueError(f"event {index} is not JSON: {event.data[:80]!r}") from None
        return payloads

    def describe(self) -> str:
        if self.error:
            return f"{self.method} {self.path} -> {self.error}"
        return f"{self.method} {self.path} -> {self.status} {self.content_type or '(no type)'}"


class Budget:
    """--max-tokens-total: tokens spent so far, from usage, across the whole run."""

    def __init__(self, max_tokens_total: int) -> None:
        self.limit = max_tokens_total
        self.spent = 0

    def reserve(self, max_tokens: int) -> None:
        if self.spent + max_tokens > self.limit:
            raise BudgetExhausted(
                f"token budget spent: {self.spent} of --max-tokens-total {self.limit}"
            )

    def add(self, tokens: int) -> None:
        self.spent += tokens


class ApiClient:
    def __init__(
        self,
        base_url: str,
        keys: Mapping[str, str | None],
        limits: Limits | None = None,
        *,
        budget: Budget | None = None,
        pacer: Pacer | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
        transport: TransportSettings | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport or TransportSettings()
        self._ssl = self.transport.ssl_context()  # built once: a new client per timeout reuses it
        self.keys = {label: key for label, key in keys.items() if key}
        self.limits = limits or Limits()
        self.budget = budget or Budget(10**12)
        self.pacer = pacer or Pacer()
        self.on_exchange = on_exchange
        self.breaker = TargetBreaker(self.limits)
        self.unended: Exchange | None = None  # the first stream cut at its cap (StreamsDoNotEnd)
        self.sent: dict[str, int] = {}
        # Transport failures in a row per endpoint: a target whose chat endpoint hangs fails
        # fast after a few, while its other endpoints are still checked.
        self.consecutive_failures: dict[str, int] = {}
        # Requests at once per identity in `gather` (a plan's concurrency, less one slot for a
        # server that frees slots a moment late); one where nothing says more.
        self.concurrency: dict[str, int] = {}
        # Checks may send one identity's independent requests from several threads (`gather`):
        # the counts, breakers, budget and evidence are updated under this lock.
        self._lock = threading.RLock()
        self._http = self._new_http()

    def _new_http(self) -> httpx.Client:
        timeout = httpx.Timeout(
            connect=self.limits.connect_timeout,
            read=min(self.limits.read_timeout, self.limits.request_timeout),
            write=self.limits.connect_timeout,
            pool=self.limits.connect_timeout,
        )
        # trust_env: HTTP(S)_PROXY / NO_PROXY as httpx and curl read them (off only for the
        # embedded gateway); TLS trust comes from our own context, not from env variables.
        return httpx.Client(
            timeout=timeout,
            verify=self._ssl,
            trust_env=self.transport.env_proxies,
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
        )

    def close(self) -> None:
        self._http.close()

    def count_sent(self, label: str, key: str, n: int = 1) -> None:
        """Requests sent for this run by another client (the SDK checks), as `label`, with the
        identity `key`: counted like our own, in the run's count and in the key's window."""
        self._count(label, n)
        if n:
            self.pacer.sent(key, n)

    def _count(self, label: str, n: int = 1) -> None:
        with self._lock:
            self.sent[label] = self.sent.get(label, 0) + n

    def gather(self, calls: Sequence[Callable[[], T]], *, key: str) -> list[T]:
        """Run independent requests of one identity at once (each call sends one and reads it
        to the end), within its plan's concurrency; results in the order of `calls`. The
        pacer still spaces them within the plan's requests/min."""
        workers = max(1, min(len(calls), self.concurrency.get(key, 1)))
        if workers == 1:
            return [call() for call in calls]
        # Each call runs in the caller's context (contextvars): what the caller is doing (a
        # check's job, say) is still known where its requests settle.
        contexts = [contextvars.copy_context() for _ in calls]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opconform") as pool:
            return list(pool.map(lambda context, call: context.run(call), contexts, calls))

    def has_key(self, label: str) -> bool:
        return label in self.keys

    def secret(self, label: str) -> str:
        return self.keys[label]

    # ------------------------------------------------------------------ requests
    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "main",
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
        stream: bool = False,
        allow_429: bool = False,
        pace: bool = True,
    ) -> Exchange:
        """Send one request as `key` (a label: main, alt, pro, restricted ...; None: no
        Authorization header unless `authorization` gives one verbatim) and read it to the end.

        A 429 this request did not ask for (`allow_429` false) that the plan explains (the
        window was spent by the run, or perhaps by another client or an earlier run) makes the
        run wait for the reset the target named, or the documented window, and send it once
        more; one the plan does not explain raises UnexpectedRateLimit."""
        if stream and self.unended is not None:
            raise StreamsDoNotEnd(self.unended)
        send = functools.partial(
            self._send,
            method,
            path,
            key=key,
            json_body=json_body,
            content=content,
            headers=headers,
            authorization=authorization,
            stream=stream,
            pace=pace,
        )
        exchange = send().collect()
        if exchange.status != 429 or allow_429:
            return exchange
        label = key or "anonymous"
        if (
            exchange.below_plan
            or exchange.shared_limit
            or exchange.stated_below_plan
            or exchange.window_not_reset
        ):
            raise UnexpectedRateLimit(exchange)
        self._wait_out(label, exchange)
        again = send().collect()
        if again.status == 429:
            raise UnexpectedRateLimit(again)
        return again

    def _wait_out(self, label: str, exchange: Exchange) -> None:
        """Wait as a 429 the plan explains asks; LimitSpent when its reset is out of reach."""
        info = read_rate_headers(exchange.headers)
        remaining = info.remaining if info is not None else None
        if _about_tokens(exchange) or (remaining is not None and remaining > 0):
            wait = retry_after_seconds(exchange.headers)
            if _about_tokens(exchange) or (wait is not None and wait > self.pacer.window):
                raise LimitSpent(
                    f"{exchange.describe()} for a limit other than requests/min "
                    f"(Retry-After {exchange.header('retry-after')!r}): the run cannot wait "
                    "for it"
                )
        try:
            self.pacer.wait_out_429(label, exchange.headers)
        except PacingStopped as exc:
            raise LimitSpent(str(exc)) from None

    def hold_stream(self, body: dict[str, Any], *, key: str = "main") -> Transfer:
        """Open a streamed completion and return once its headers (and first event, if it is a
        stream) arrived, without reading further: the stream holds a concurrency slot until
        `collect()` reads it to the end or `abort()` disconnects. Not paced: a check that holds
        streams paces for all of them at once (`pacer.before(key, needed=...)`)."""
        self.budget.reserve(_max_tokens(body))
        transfer = self._send(
            "POST",
            "/chat/completions",
            key=key,
            json_body={**body, "stream": True},
            stream=True,
            pace=False,
        )
        transfer.wait_first_event()
        return transfer

    def chat(
        self, body: dict[str, Any], *, key: str | None = "main", stream: bool = False, **kwargs: Any
    ) -> Exchange:
        """POST /chat/completions; reserves max_tokens against the run's token budget."""
        self.budget.reserve(_max_tokens(body))
        if stream:
            body = {**body, "stream": True}
        return self.request(
            "POST", "/chat/completions", key=key, json_body=body, stream=stream, **kwargs
        )

    def _account_tokens(self, exchange: Exchange) -> None:
        if exchange.status != 200:
            return
        usage = None
        if exchange.events is not None:
            for payload in _safe_payloads(exchange.events):
                if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                    usage = payload["usage"]
            if usage is None:  # no usage chunk: count content events, approximately
                self.budget.add(len(exchange.events))
        elif exchange.content_type == "application/json":
            try:
                payload = exchange.json()
            except ValueError:
                return
            usage = payload.get("usage") if isinstance(payload, dict) else None
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            self.budget.add(usage["total_tokens"])

    def _headers(
        self,
        *,
        key: str | None,
        authorization: str | None = None,
        stream: bool = False,
        json_body: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The headers of every request: the run's extra headers (--header) first, so they never
        replace what the suite sends itself, then accept, authorization as `key` (or verbatim),
        content-type, and last what the check asks for."""
        request_headers = dict(self.transport.headers)
        request_headers["accept"] = "text/event-stream" if stream else "application/json"
        if key is not None and authorization is None:
            request_headers["authorization"] = f"Bearer {self.secret(key)}"
        elif authorization is not None:
            request_headers["authorization"] = authorization
        if json_body:
            request_headers["content-type"] = "application/json"
        request_headers.update(headers or {})
        return request_headers

    # ------------------------------------------------------------------ the one send path
    def _send(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
        stream: bool = False,
        pace: bool = True,
    ) -> Transfer:
        """Every request of the run starts here, whether it is read to its end at once
        (`request`) or held open by a check (`hold_stream`): the run's and the endpoint's
        breakers, the headers, pacing, the count of requests sent. However the exchange ends,
        the Transfer hands it to `settle` once."""
        self.breaker.check()
        endpoint = _endpoint(method, path)
        failures = self.consecutive_failures.get(endpoint, 0)
        if failures >= self.limits.max_consecutive_failures:
            raise TargetUnreachable(
                f"{failures} transport failures in a row on {endpoint}; not sending it again"
            )
        if json_body is not None:
            content = json.dumps(json_body).encode()
        request_headers = self._headers(
            key=key,
            authorization=authorization,
            stream=stream,
            json_body=json_body is not None,
            headers=headers,
        )
        label = key or "anonymous"
        try:
            if pace:
                self.pacer.before(label, take=True)
            else:
                self.pacer.sent(label)
        except PacingStopped as exc:
            raise LimitSpent(str(exc)) from None
        transfer = Transfer(
            self, method, path, label if key else None, request_headers, content or b"", stream
        )
        transfer.start()
        self._count(label)
        return transfer

    # What a Transfer asks of its client: a response to read, a fresh connection pool when the
    # old one may be spoiled, and to settle the exchange once it has ended.
    def open_response(self, exchange: Exchange) -> httpx.Response:
        """Send the exchange's request on the current connection pool; the caller (a Transfer's
        worker) reads the body and closes the response."""
        http = self._http
        request = http.build_request(
            exchange.method,
            exchange.url,
            headers=exchange.request_headers,
            content=exchange.request_body,
        )
        return http.send(request, stream=True)

    def discard_connections(self) -> None:
        """Use a new connection pool from now on: a worker may still be blocked inside the old
        one, or a connection of it was shut down under a worker that had just pooled it."""
        self._http = self._new_http()

    def settle(self, exchange: Exchange) -> None:
        """Account for one exchange, once, whichever way it ended (read to the end, refused, cut
        by the target, at a deadline or a cap, or abandoned by the check that held it): the
        breakers (a disconnect of our own is no failure of the target), the pacer, the token
        budget, then the evidence and the invariants (`on_exchange`)."""
        with self._lock:
            self._settle(exchange)

    def _settle(self, exchange: Exchange) -> None:
        self.breaker.record(exchange)
        endpoint = _endpoint(exchange.method, exchange.path)
        if _failed(exchange):
            self.consecutive_failures[endpoint] = self.consecutive_failures.get(endpoint, 0) + 1
        else:
            self.consecutive_failures[endpoint] = 0
        label = exchange.key_label or "anonymous"
        self.pacer.observe(label, exchange.status, exchange.headers, exchange.elapsed)
        if exchange.status == 429:
            self._judge_429(label, exchange)
        self._account_tokens(exchange)
        if exchange.error_kind == "stream-cap" and not exchange.aborted and self.unended is None:
            self.unended = exchange
        # After a 5xx the server may close the connection it sent it on (uvicorn does, once an
        # app exception follows the 500 it already sent): the next request on that pooled
        # connection is reset, measured 87 of 300 times against mockllm; a new pool, never.
        crashed = exchange.status is not None and exchange.status >= 500
        if crashed or (exchange.error and "timed out" in exchange.error):
            self.discard_connections()
        if self.on_exchange is not None:
            self.on_exchange(exchange)

    def _judge_429(self, label: str, exchange: Exchange) -> None:
        """Say whether the plan explains a 429, before the evidence and the invariants see it."""
        info = read_rate_headers(exchange.headers)
        if _about_tokens(exchange):
            exchange.limit_note = "a tokens/day (quota) refusal"
            return
        if info is not None and info.remaining is not None and info.remaining > 0:
            exchange.limit_note = (
                f"not the requests/min limit ({info.convention} Remaining {info.remaining})"
            )
            return
        stated = self.pacer.stated_below_plan(label)
        if stated is not None:
            exchange.stated_below_plan = True
            exchange.limit_note = stated
            return
        not_reset = self.pacer.not_reset(label, exchange.headers, exchange.elapsed)
        if not_reset is not None:
            exchange.window_not_reset = True
            exchange.limit_note = not_reset
            return
        explained = self.pacer.explains_429(label)
        if explained is not None:
            exchange.limit_note = f"the plan explains it: {explained}"
            return
        shared = self.pacer.shared_window(label)
        if shared is not None:
            exchange.shared_limit = True
            exchange.limit_note = shared
            return
        exchange.below_plan = True
        exchange.limit_note = (
            f"429 after {self.pacer.recent(label) - 1} requests on the {label} key in a window "
            f"the run saw from its start; {self.pacer.describe(label)} allows "
            f"{self.pacer.limit_of(label)}"
        )


class Transfer:
    """One request in flight: a worker thread reads, the caller consumes with deadlines."""

    def __init__(
        self,
        client: ApiClient,
        method: str,
        path: str,
        key_label: str | None,
        headers: dict[str, str],
        content: bytes,
        stream: bool,
    ) -> None:
        self.client = client
        self.limits = client.limits
        self.stream = stream
        self.exchange = Exchange(
            method=method,
            url=client.base_url + path,
            path=path,
            key_label=key_label,
            request_headers=dict(headers),
            request_body=content,
            started_at=time.time(),
        )
        self._inbox: queue.Queue[tuple[str, Any, float]] = queue.Queue()
        self._holder: dict[str, httpx.Response] = {}
        self._decoder = SSEDecoder() if stream else None
        self._max_tokens = _max_tokens(_json_or_none(content)) if stream else 0
        self._event_cap = (
            max(
                self.limits.stream_events_floor,
                self.limits.stream_events_per_token * self._max_tokens + 16,
            )
            if stream
            else None
        )
        self._body = bytearray()
        self._done_at: float | None = None
        self._finished = False
        self._recorded = False
        self._start = 0.0
        self._worker: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        self._start = time.perf_counter()
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()

    @property
    def open(self) -> bool:
        return not self._finished

    def wait_first_event(self) -> None:
        """Consume until the headers and, for a 200 stream, the first event have arrived; an
        answer that is not a stream (a 429, say) is read to its end, so its body is evidence."""
        self._consume(min_events=1)
        if self.exchange.status != 200 and not self._finished:
            self._consume(min_events=None)

    def wait_next_event(self) -> None:
        """Consume until one more event has arrived (or the stream ended)."""
        self._consume(min_events=len(self.exchange.events or []) + 1)

    def collect(self) -> Exchange:
        """Consume to the end (or a deadline) and return the exchange."""
        self._consume(min_events=None)
        return self.finish_exchange()

    def abort(self) -> Exchange:
        """Disconnect now, as a client that gives up on a stream."""
        self._close()
        if not self._finished:
            self.exchange.aborted = True
        self._finished = True
        return self.finish_exchange()

    def finish_exchange(self) -> Exchange:
        exchange = self.exchange
        exchange.elapsed = time.perf_counter() - self._start
        exchange.body = bytes(self._body)
        if self._decoder is not None:
            exchange.sse = self._decoder.stats
            exchange.incomplete_tail = self._decoder.incomplete
            if exchange.events is None:
                exchange.events = []
        if self._finished and not self._recorded:
            # Every exchange reaches the evidence once, whichever way it ended (read to the end,
            # aborted by a check that held it, or cut off at a deadline).
            self._recorded = True
            self.client.settle(exchange)
        return exchange

    def drain(self) -> Exchange:
        """Take in what has already arrived, without waiting: has a held stream ended on its
        own (a fast server finishes before the check looks)?"""
        self._consume(min_events=None, drain=True)
        return self.exchange

    @property
    def ended(self) -> bool:
        """The server ended this stream ([DONE] or the end of the body) as far as we know."""
        return self.exchange.done_count > 0 or (self._finished and not self.exchange.aborted)

    def _consume(self, *, min_events: int | None, drain: bool = False) -> None:
        exchange = self.exchange
        deadline = self._start + self.limits.request_timeout
        run_left = self.client.breaker.remaining()
        cut_by_run = run_left is not None and time.perf_counter() + run_left < deadline
        if run_left is not None:
            deadline = min(deadline, time.perf_counter() + max(0.0, run_left))
        cap = self.limits.max_stream_bytes if self.stream else self.limits.max_body_bytes
        try:
            while not self._finished:
                if (
                    min_events is not None
                    and exchange.status is not None
                    and (exchange.status != 200 or len(exchange.events or []) >= min_events)
                ):
                    return
                if self._done_at is not None:
                    wait = self._done_at + self.limits.close_grace - time.perf_counter()
                    if wait <= 0:
                        exchange.closed_after_done = False
                        break
                else:
                    wait = deadline - time.perf_counter()
                    if wait <= 0:
                        stage = (
                            "response headers" if exchange.status is None else "the end of the body"
                        )
                        if cut_by_run:
                            exchange.error = f"cut by the run's --deadline waiting for {stage}"
                            exchange.error_kind = "deadline"
                        elif self._decoder is not None and exchange.events:
                            exchange.error = (
                                f"the stream did not end within {self.limits.request_timeout:g}s "
                                f"({len(exchange.events)} events, no [DONE]; --request-timeout)"
                            )
                            exchange.error_kind = "stream-cap"
                        else:
                            exchange.error = (
                                f"timed out after {self.limits.request_timeout:g}s "
                                f"waiting for {stage} (--request-timeout)"
                            )
                            exchange.error_kind = "timeout"
                        break
                try:
                    if drain:
                        kind, value, at = self._inbox.get_nowait()
                    else:
                        kind, value, at = self._inbox.get(timeout=wait)
                except queue.Empty:
                    if drain:
                        return
                    continue
                if kind == "headers":
                    exchange.status = value.status_code
                    exchange.headers = {k.lower(): v for k, v in value.headers.items()}
                    exchange.time_to_headers = at - self._start
                elif kind == "chunk":
                    if exchange.time_to_first_byte is None:
                        exchange.time_to_first_byte = at - self._start
                    room = cap - len(self._body)
                    self._body.extend(value[:room])
                    if self._decoder is not None:
                        for event in self._decoder.feed(value[:room], at - self._start):
                            self._on_event(event)
                    if len(value) > room:
                        exchange.truncated = True
                        exchange.error = f"body larger than the cap of {cap} bytes"
                        exchange.error_kind = "stream-cap" if exchange.events else "body-cap"
                        break
                    if (
                        self._event_cap is not None
                        and self._done_at is None
                        and len(exchange.events or []) > self._event_cap
                    ):
                        exchange.error = (
                            f"the stream went on past {self._event_cap} events without "
                            f"[DONE] for max_tokens {self._max_tokens}"
                        )
                        exchange.error_kind = "stream-cap"
                        exchange.past_event_cap = True
                        break
                elif kind == "end":
                    if self._done_at is not None:
                        exchange.closed_after_done = True
                    break
                else:  # error
                    exchange.error = value
                    timed_out = value.startswith("timed out")
                    exchange.error_kind = "timeout" if timed_out else "transport"
                    break
            else:
                return
        except BaseException:
            self._close()
            raise
        self._finished = True
        self._close()

    def _on_event(self, event: SSEEvent) -> None:
        exchange = self.exchange
        if exchange.events is None:
            exchange.events = []
        exchange.events.append(event)
        if self._done_at is not None:
            exchange.events_after_done += 1
        if event.is_done:
            exchange.done_count += 1
            if self._done_at is None:
                self._done_at = time.perf_counter()

    def _close(self) -> None:
        self._stopping = True
        response = self._holder.get("response")
        if response is not None:
            worker = self._worker
            if worker is not None and worker.is_alive() and not response.is_closed:
                # Closing a response the worker is still reading races with it inside httpcore
                # (a connection back in the pool while the worker still reads from it: the next
                # request's bytes are stolen; with TLS, "bad record mac"). Instead, make the
                # worker's read fail and let it finish before anything else uses the pool.
                _wake_reader(response)
                worker.join(timeout=self.limits.close_grace)
                if response.is_closed:
                    # It had just read to the end and pooled the connection we shut down.
                    self.client.discard_connections()
            response.close()

    def _put(self, item: tuple[str, Any, float]) -> bool:
        """Hand one item to the caller; False once the caller has closed the transfer."""
        while not self._stopping:
            try:
                self._inbox.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        inbox = self._inbox
        try:
            response = self.client.open_response(self.exchange)
            self._holder["response"] = response
            inbox.put(("headers", response, time.perf_counter()))
            for chunk in response.iter_bytes():
                if chunk and not self._put(("chunk", chunk, time.perf_counter())):
                    return
            self._put(("end", None, time.perf_counter()))
        except httpx.TimeoutException as exc:
            inbox.put(
                (
                    "error",
                    f"timed out: {exc.__class__.__name__} (--read-timeout "
                    f"{self.limits.read_timeout:g}s)",
                    time.perf_counter(),
                )
            )
        except httpx.HTTPError as exc:
            inbox.put(("error", _describe_transport_error(exc), time.perf_counter()))
        except Exception as exc:  # the worker must always report, whatever broke
            inbox.put(("error", f"{exc.__class__.__name__}: {exc}", time.perf_counter()))


def _about_tokens(exchange: Exchange) -> bool:
    return about_tokens(exchange.body[:400].decode("utf-8", errors="replace"))


def _endpoint(method: str, path: str) -> str:
    return f"{method} {path.split('?')[0]}"


def _failed(exchange: Exchange) -> bool:
    """A transport failure of the target: not a cut by our own run's deadline, and not a
    disconnect of our own (a check that abandons a held stream)."""
    return exchange.error is not None and exchange.error_kind != "deadline" and not exchange.aborted


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        return None


def _wake_reader(response: httpx.Response) -> None:
    """Shut the response's socket down: a read blocked on it returns at once."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            # The plain socket's shutdown: SSLSocket.shutdown would drop the SSL object the
            # worker is still using.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _max_tokens(body: Any) -> int:
    """What a request may spend: its max_tokens when that is a sane number (bodies of the
    validation checks may carry anything there)."""
    value = body.get("max_tokens") if isinstance(body, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**7:
        return value
    return 16


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    text = str(exc) or exc.__class__.__name__
    if len(text) > 160:  # a server that sends garbage gets it quoted back: keep the gist
        text = text[:160] + "..."
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {text}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broken by the server: {text}"
    if isinstance(exc, httpx.ReadError):
        return f"connection reset while reading: {text}"
    return f"{exc.__class__.__name__}: {text}"


def _safe_payloads(events: list[SSEEvent]) -> list[Any]:
    payloads = []
    for event in events:
        if event.is_done:
            break
        try:
            payloads.append(json.loads(event.data))
        except ValueError:
            continue
    return payloads
