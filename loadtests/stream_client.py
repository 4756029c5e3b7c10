"""StreamClient: sends one chat completion, reads its SSE stream line by line as the bytes
arrive, stamps each line with its receive time, and fills in the request's Sample.

Kept apart from the user as Locust keeps FastHttpSession apart from FastHttpUser: the user says
who sends and when (identity, pacing, the 429 policy, ceilings), this says how one request is
sent and measured. It reads through a Locust FastHttpSession (geventhttpclient underneath) but
imports no Locust itself, and touches no run state: tests drive it on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent

from opconform.loadtests import receive_time
from opconform.loadtests.event_lines import EventLines
from opconform.loadtests.workload import Request
from opconform.metrics import Sample
from opconform.rate_headers import retry_after_seconds

GAPS_KEPT = 256  # inter-chunk gaps kept per request (the pooled distribution needs no more)


class StreamClient:
    """One identity's requests through `session` (Locust's FastHttpSession, or anything with
    its `post(..., catch_response=True)`): `stream` and `chat` fill in a Sample and report it to
    Locust as a success or a (redacted) failure."""

    def __init__(
        self,
        session: Any,
        headers: Mapping[str, str],
        model: str,
        *,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.session = session
        self.headers = dict(headers)
        self.model = model
        self.redact = redact

    def body(self, request: Request, stream: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def chat(
        self, request: Request, sample: Sample, *, name: str = "chat", expects_429: bool = False
    ) -> Sample:
        """A plain completion: its status, rate-limit headers, usage and time."""
        start = time.perf_counter()
        with self.session.post(
            "/chat/completions",
            data=json.dumps(self.body(request, stream=False)),
            headers=self.headers,
            catch_response=True,
            name=name,
        ) as response:
            sample.e2e = sample.ttfb = time.perf_counter() - start
            sample.status = response.status_code or None
            content = response.content or b""
            read_headers(sample, response.headers or {})
            if sample.status is None:
                sample.outcome, sample.detail = "transport_error", str(response.error)[:200]
            else:
                judge_status(sample, content, expects_429)
            if sample.outcome == "ok":
                try:
                    usage = json.loads(content).get("usage") or {}
                    read_usage(sample, usage)
                except (ValueError, AttributeError):
                    sample.outcome, sample.detail = "broken_body", "body is not JSON"
            self._report(response, sample)
        return sample

    def stream(
        self,
        request: Request,
        sample: Sample,
        *,
        name: str = "stream",
        expects_429: bool = False,
        disconnect_after: float | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> Sample:
        """A streamed completion, timed per SSE line as it arrives. With disconnect_after
        (seconds), the client goes away then (as a user closing a tab). on_open is called when
        the first line of the body arrives."""
        start = time.perf_counter()
        with self.session.post(
            "/chat/completions",
            data=json.dumps(self.body(request)),
            headers=self.headers,
            stream=True,
            catch_response=True,
            name=name,
        ) as response:
            sample.status = response.status_code or None
            read_headers(sample, response.headers or {})
            if sample.status != 200:
                body = response.content or b"" if sample.status else b""
                if sample.status is None:
                    sample.outcome = "transport_error"
                    sample.detail = str(response.error)[:200]
                else:
                    judge_status(sample, body, expects_429)
                sample.e2e = sample.ttfb = time.perf_counter() - start
            else:
                _read_stream(response._response, sample, start, disconnect_after, on_open)
            self._report(response, sample)
        return sample

    def _report(self, response: Any, sample: Sample) -> None:
        if sample.outcome in ("ok", "expected_429"):
            response.success()
        else:  # Locust writes failures to its console, CSV and HTML: redacted first
            sample.detail = self.redact(sample.detail)
            response.failure(f"{sample.outcome}: {sample.detail}")


def read_headers(sample: Sample, headers: Any) -> None:
    """The rate-limit headers of an answer (its status is known), whatever its status."""

    def number(name: str) -> int | None:
        value = headers.get(name)
        return int(value) if value and str(value).isdigit() else None

    sample.retry_after = headers.get("retry-after")
    sample.ratelimit_limit = number("x-ratelimit-limit")
    sample.ratelimit_remaining = number("x-ratelimit-remaining")
    sample.ratelimit_reset = number("x-ratelimit-reset")
    sample.ratelimit_headers = sample.status is not None and None not in (
        sample.ratelimit_limit,
        sample.ratelimit_remaining,
        sample.ratelimit_reset,
    )


def judge_status(sample: Sample, body: bytes, expects_429: bool) -> None:
    """An answer that is not a 200: a correct 429 (Retry-After and an error body) is what a
    limit-probing user expects; anything else is a finding."""
    if sample.status == 429:
        correct = (
            retry_after_seconds({"retry-after": sample.retry_after}) is not None
            and b'"error"' in body
        )
        if expects_429 and correct:
            sample.outcome = "expected_429"
        else:
            sample.outcome = "unexpected_status" if correct else "broken_429"
            sample.detail = "" if correct else "429 without Retry-After or error body"
    elif sample.status != 200:
        sample.outcome, sample.detail = (
            "unexpected_status",
            body[:200].decode("utf-8", "replace"),
        )


def read_usage(sample: Sample, usage: dict[str, Any]) -> None:
    sample.output_tokens = int(usage.get("completion_tokens") or 0)
    sample.prompt_tokens = usage.get("prompt_tokens")
    sample.total_tokens = int(usage.get("total_tokens") or 0)


class _StreamJudge:
    """TTFT, gaps, ITL, content events and usage of one stream, event by event."""

    def __init__(self, sample: Sample, start: float) -> None:
        self.sample = sample
        self.start = start
        self.first: float | None = None
        self.previous: float | None = None
        self.usage: dict[str, Any] | None = None

    def event(self, data: str, at: float) -> None:
        sample = self.sample
        try:
            payload = json.loads(data)
        except ValueError:
            sample.outcome, sample.detail = "broken_stream", "event is not JSON"
            return
        if not isinstance(payload, dict):
            return
        if payload.get("error"):
            sample.outcome = "broken_stream"
            sample.detail = f"in-stream error: {str(payload['error'])[:150]}"
            return
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        for choice in payload.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                if self.first is None:
                    self.first = at
                    sample.ttft = at - self.start
                elif len(sample.gaps) < GAPS_KEPT:
                    sample.gaps.append(at - (self.previous or at))
                self.previous = at
                sample.content_events += 1

    def finish(self) -> None:
        sample, first, previous = self.sample, self.first, self.previous
        if first is not None and previous is not None and sample.content_events > 1:
            sample.itl = (previous - first) / (sample.content_events - 1)


def _read_stream(
    raw: Any,
    sample: Sample,
    start: float,
    disconnect_after: float | None,
    on_open: Callable[[], None] | None = None,
) -> None:
    # readline returns each line as soon as it is buffered; block reads (read(n),
    # iter_content) would hand over several events at once and flatten the gaps.
    readline = raw.readline
    clock = time.perf_counter
    lines = EventLines()
    judge = _StreamJudge(sample, start)
    # Each line is stamped when its bytes were received, not when this greenlet got to it.
    # A greenlet that waited for its line is woken once the event loop polled the socket
    # readable, in a batch with every other stream whose bytes came at the same time: the
    # loop's time of that poll is when the bytes were there (the greenlet's own clock would
    # add the work of every greenlet woken before it: at 50 streams, milliseconds). A line
    # already buffered (an event's blank line comes with its data line) came with the
    # previous one.
    # Better still, where the socket allows it: the kernel's own receive time of the bytes
    # (loadtests/receive_time.py), whatever the loop and the machine were doing meanwhile.
    loop = gevent.get_hub().loop
    wall_to_clock = time.time() - clock()  # the loop's wall time -> perf_counter
    buffer = getattr(raw, "_body_buffer", None)
    sock = getattr(raw, "_sock", None)
    kernel = buffer is not None and sock is not None and receive_time.enable(sock)
    now: float | None = None
    done = False
    try:
        while not done:
            iteration = loop.iteration
            buffered = now is not None and buffer is not None and b"\n" in buffer
            received = _receive_line(raw, buffer) if kernel and not buffered else None
            line = readline(b"\n")
            if received is not None:
                now = received - wall_to_clock
            elif not buffered or now is None:
                now = clock()
                if loop.iteration != iteration:
                    now = min(now, loop.now() - wall_to_clock)
            if not line:
                break
            if sample.ttfb is None:
                sample.ttfb = now - start
                if on_open is not None:
                    on_open()
            for data in lines.feed(line):
                if data == "[DONE]":
                    done = True
                    break
                judge.event(data, now)
            if disconnect_after is not None and now - start >= disconnect_after and not done:
                _disconnect(raw)
                sample.disconnected = True
                break
    except Exception as exc:  # a reset or timeout mid-stream
        sample.outcome, sample.detail = "broken_stream", f"{type(exc).__name__}: {exc}"[:200]
    sample.e2e = clock() - start
    judge.finish()
    if judge.usage is not None:
        read_usage(sample, judge.usage)
    else:
        sample.output_tokens, sample.tokens_approximate = sample.content_events, True
    if not done and not sample.disconnected and sample.outcome == "ok":
        sample.outcome, sample.detail = "broken_stream", "the stream ended without [DONE]"


def _receive_line(raw: Any, buffer: bytearray | None) -> float | None:
    """Read from the response's socket until its body holds a whole line, as geventhttpclient's
    readline would, but through recvmsg: the kernel's receive time of the last bytes (wall
    clock), or None if nothing was stamped (readline then reads on, as before)."""
    sock = raw._sock
    received = None
    try:
        while buffer is not None and b"\n" not in buffer and not raw.message_complete:
            data, stamped = receive_time.receive(sock, raw.block_size)
            raw.feed(data)
            received = stamped if stamped is not None else received
            if not data:
                break
    except BaseException:
        raw.release()
        raise
    return received


def _disconnect(raw: Any) -> None:
    """Close the socket of a half-read response (never hand it back to the pool)."""
    pool, sock = getattr(raw, "_pool", None), getattr(raw, "_sock", None)
    if sock is not None:
        if pool is not None:
            pool.release_socket(sock)
        else:
            sock.close()
    raw._sock = None
    raw._pool = None
