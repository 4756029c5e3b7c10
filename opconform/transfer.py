"""One request in flight: a worker thread reads, the caller consumes with deadlines.

Bytes are read on a worker thread and handed over with their arrival times, so a target that
hangs, trickles or streams forever is cut off at the deadline by the caller's clock, never by the
target's good will.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from typing import Any, Protocol

import httpx

from opconform.breakers import TargetBreaker
from opconform.budget import max_tokens_of
from opconform.exchange import Exchange
from opconform.limits import Limits
from opconform.sse import SSEDecoder, SSEEvent


class Sender(Protocol):
    """What a Transfer asks of its client (opconform.client.ApiClient): a response to read, a
    fresh connection pool when the old one may be spoiled, and to settle the exchange once it
    has ended."""

    base_url: str
    limits: Limits
    breaker: TargetBreaker

    def open_response(self, exchange: Exchange) -> httpx.Response: ...

    def discard_connections(self) -> None: ...

    def settle(self, exchange: Exchange) -> None: ...


class Transfer:
    """One request in flight: `start` sends it on a worker thread; `collect`, `abort`,
    `wait_first_event`... consume what arrived, within the request's and the run's deadlines."""

    def __init__(
        self,
        client: Sender,
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
        self._max_tokens = max_tokens_of(_json_or_none(content)) if stream else 0
        self._event_cap = self.limits.stream_event_cap(self._max_tokens) if stream else None
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
        deadline = self._start + self.limits.timeouts.request
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
                                f"the stream did not end within {self.limits.timeouts.request:g}s "
                                f"({len(exchange.events)} events, no [DONE]; --request-timeout)"
                            )
                            exchange.error_kind = "stream-cap"
                        else:
                            exchange.error = (
                                f"timed out after {self.limits.timeouts.request:g}s "
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
                    f"{self.limits.timeouts.read:g}s)",
                    time.perf_counter(),
                )
            )
        except httpx.HTTPError as exc:
            inbox.put(("error", _describe_transport_error(exc), time.perf_counter()))
        except Exception as exc:  # the worker must always report, whatever broke
            inbox.put(("error", f"{exc.__class__.__name__}: {exc}", time.perf_counter()))


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
