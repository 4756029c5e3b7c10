"""The one HTTP client of the conformance suite.

Every request has connect, read and total deadlines and a size cap, and never retries: the suite
needs exact request counts to judge rate limits. One send path (`_send`) for every request, and
one place (`settle`) where every exchange is accounted for, however it ended. The pieces it
composes have a module each: the deadlines and caps (`limits`, `timeouts`), the exchange record
(`exchange`), the breakers (`breakers`), the token budget (`budget`), the reading of one request
(`transfer`) and the judgement of a 429 (`refusals`).
"""

from __future__ import annotations

import contextvars
import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from opconform import __version__
from opconform.breakers import EndpointBreaker, RunStopped, TargetBreaker, TargetUnreachable
from opconform.budget import Budget, BudgetExhausted, max_tokens_of
from opconform.exchange import Exchange, endpoint
from opconform.limits import Limits
from opconform.ratelimit import Pacer, PacingStopped
from opconform.refusals import (
    LimitSpent,
    UnexpectedRateLimit,
    is_unexplained,
    judge_429,
    wait_out,
)
from opconform.transfer import Transfer
from opconform.transport import TransportSettings

# What checks import from here: the client and the vocabulary of its answers and refusals.
__all__ = [
    "ApiClient",
    "Budget",
    "BudgetExhausted",
    "Exchange",
    "LimitSpent",
    "Limits",
    "RunStopped",
    "StreamsDoNotEnd",
    "TargetBreaker",
    "TargetUnreachable",
    "Transfer",
    "UnexpectedRateLimit",
]

USER_AGENT = f"opconform/{__version__}"
T = TypeVar("T")


class StreamsDoNotEnd(Exception):
    """A stream of this run went past its cap without [DONE]: another stream read to its end
    would only wait out its own cap (one never-ending stream is one finding, not one per
    check). Raised instead of sending; holding a stream open is still allowed."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(f"not sent: an earlier stream did not end ({exchange.error})")
        self.exchange = exchange


class ApiClient:
    """Sends the run's requests as its identities (keys by label), paced by their plans,
    bounded by `limits`; every exchange reaches `on_exchange` once."""

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
        http_transport: httpx.BaseTransport | None = None,
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
        self.endpoints = EndpointBreaker(self.limits)
        self.sent: dict[str, int] = {}
        # Requests at once per identity in `gather` (a plan's concurrency, less one slot for a
        # server that frees slots a moment late); one where nothing says more.
        self.concurrency: dict[str, int] = {}
        # Checks may send one identity's independent requests from several threads (`gather`):
        # the counts, breakers, budget and evidence are updated under this lock.
        self._lock = threading.RLock()
        self._http_transport = http_transport  # tests answer with an httpx.MockTransport
        self._http = self._new_http()

    def _new_http(self) -> httpx.Client:
        # trust_env: HTTP(S)_PROXY / NO_PROXY as httpx and curl read them (off only for the
        # embedded gateway); TLS trust comes from our own context, not from env variables.
        return httpx.Client(
            timeout=self.limits.timeouts.to_httpx(),
            verify=self._ssl,
            trust_env=self.transport.env_proxies,
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            transport=self._http_transport,
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
        if is_unexplained(exchange):
            raise UnexpectedRateLimit(exchange)
        wait_out(self.pacer, label, exchange)
        again = send().collect()
        if again.status == 429:
            raise UnexpectedRateLimit(again)
        return again

    def hold_stream(self, body: dict[str, Any], *, key: str = "main") -> Transfer:
        """Open a streamed completion and return once its headers (and first event, if it is a
        stream) arrived, without reading further: the stream holds a concurrency slot until
        `collect()` reads it to the end or `abort()` disconnects. Not paced: a check that holds
        streams paces for all of them at once (`pacer.before(key, needed=...)`)."""
        self.budget.reserve(max_tokens_of(body))
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
        self.budget.reserve(max_tokens_of(body))
        if stream:
            body = {**body, "stream": True}
        return self.request(
            "POST", "/chat/completions", key=key, json_body=body, stream=stream, **kwargs
        )

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
        self.endpoints.check(endpoint(method, path))
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
        worker) reads the body and closes the response.

        A connection the server had already closed (at its keep-alive timeout, or after a 5xx
        that another thread had just read off it) is reset before any answer: nothing was
        answered, so the request goes once more on a new pool, as urllib3, Go's net/http and the
        OpenAI SDKs resend it. The exchange says so; a target that resets every request is
        reset again, and that error is the exchange's."""
        try:
            return self._open(exchange)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            exchange.resent = f"{type(exc).__name__} before any answer: {exc}"[:200]
            self.discard_connections()
            label = exchange.key_label or "anonymous"
            self.pacer.sent(label)
            self._count(label)
            return self._open(exchange)

    def _open(self, exchange: Exchange) -> httpx.Response:
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
        self.endpoints.record(exchange)
        label = exchange.key_label or "anonymous"
        self.pacer.observe(label, exchange.status, exchange.headers, exchange.elapsed)
        if exchange.status == 429:
            judge_429(self.pacer, label, exchange)
        self.budget.account(exchange)
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
