"""LLMUser: one client of the target. It paces (closed loop, or open-loop arrivals), sends a
chat completion, reads the SSE stream line by line as bytes arrive, and judges each answer into
a raw Sample."""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
from locust import FastHttpUser
from locust.runners import WorkerRunner

from loadtests import receive_time
from loadtests.arrivals import paused, schedule
from loadtests.event_lines import EventLines
from loadtests.settings import Settings
from loadtests.state import RUN, record, sleep, stop_run
from loadtests.workload import Request
from opconform.contract import KEY_VARIABLES
from opconform.metrics import Sample
from opconform.ratelimit import retry_after_seconds
from opconform.timeouts import DEFAULT_TIMEOUTS

GAPS_KEPT = 256  # inter-chunk gaps kept per request (the pooled distribution needs no more)
_INDEX = itertools.count()  # users of this process, for spreading their start times


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


class LLMUser(FastHttpUser):
    """One client of the target. Subclasses set the identity, the pacing and the 429 policy."""

    abstract = True
    key_label = "main"
    group = "main"
    rate: float | None = None  # requests/s of this user; None: closed loop
    rpm_share: float | None = None  # or: this share of the key's requests/min, as requests/s
    honours_retry_after = True  # the profile's choice; --honour-retry-after overrides it
    expects_429 = False  # limit-probing users: a correct 429 is a pass, not a failure
    # Locust's per-connection deadlines; each user takes the run's (Settings.timeouts).
    network_timeout = DEFAULT_TIMEOUTS.read
    connection_timeout = DEFAULT_TIMEOUTS.connect
    # Connections this user may hold at once: open-loop arrivals and the concurrency-cap rounds
    # send from one user concurrently (the pool opens connections lazily).
    concurrency = 512

    def __init__(self, environment: Any) -> None:
        # The run's transport (opconform/transport.py): verify certificates unless --insecure
        # (Locust's own default is not to), trust --ca-bundle, present --client-cert.
        if RUN.settings is not None:
            transport = RUN.settings.transport
            self.insecure = transport.insecure
            self.ssl_context_factory = transport.ssl_context
            self.connection_timeout = RUN.settings.timeouts.connect
            self.network_timeout = RUN.settings.timeouts.read
        super().__init__(environment)

    def on_start(self) -> None:
        variable = KEY_VARIABLES[self.key_label]
        key = os.environ.get(variable)
        if not key:
            raise RuntimeError(f"{variable} is not set")
        extra = dict(RUN.settings.transport.headers) if RUN.settings else {}
        self.headers = {
            **extra,  # --header: e.g. an access proxy's; the key's own header wins
            "authorization": f"Bearer {key}",
            "content-type": "application/json",
        }
        self.next_at: float | None = None
        self.pending_wait = 0.0  # a Retry-After wait, recorded on the request that follows it
        assert RUN.settings is not None
        self.settings: Settings = RUN.settings
        if self.settings.honour_retry_after is not None:
            self.honours_retry_after = self.settings.honour_retry_after
        if self.rpm_share:
            self.rate = self.rpm_share * self.settings.limit("rpm") / self.settings.window
        # Users of one profile start together; each starts at its own phase of the interval,
        # so N users at rate r arrive every 1/(N r) instead of N at once every 1/r.
        self.index = self._slot(next(_INDEX))
        self.phase = (self.index % self.settings.users) / self.settings.users

    def _slot(self, local: int) -> int:
        """This user's place among the run's users. A worker's users are numbered from 0 in
        each process: interleaved by worker index (Locust hands users to workers in turn), so
        phases and seeds differ across workers instead of repeating on each."""
        runner = self.environment.runner
        if not isinstance(runner, WorkerRunner) or runner.worker_index < 0:
            return local
        options = self.environment.parsed_options
        workers = max(1, int(getattr(options, "expect_workers", 1) or 1))
        return local * workers + runner.worker_index % workers

    # -- pacing ------------------------------------------------------------------------
    def pace(self) -> float | None:
        """Sleep until this user's next scheduled send; returns the scheduled time."""
        if not self.rate:
            return None
        now = time.time()
        if self.next_at is None:
            self.next_at = now + self.phase / self.rate
        elif self.next_at < now:
            # Behind because this user's own last request took longer than its interval: that
            # is the target's pace in a closed loop, not generator delay: restart from now.
            self.next_at = now
        scheduled = self.next_at
        sleep(scheduled - now)  # waking up late from here is generator delay
        self.next_at = scheduled + 1.0 / self.rate
        return scheduled

    def within_ceilings(self) -> bool:
        """Count one more request, unless the run is stopping or a ceiling is reached (then
        idle: a task that returns at once would spin a core until the runner stops)."""
        if not RUN.stopping and (
            RUN.requests >= self.settings.max_requests
            or RUN.tokens >= self.settings.max_tokens_total
        ):
            print("opconform: request or token ceiling reached; stopping", flush=True)
            stop_run()
        if RUN.stopping:
            gevent.sleep(0.2)  # a task that returns at once would spin until the user stops
            return False
        RUN.requests += 1
        return True

    def paced(self, kind: str = "stream", **kwargs: Any) -> Sample | None:
        """Wait for this user's next slot, count it against the ceilings, then send a stream or
        a plain completion. None when the run is stopping."""
        scheduled = self.pace()
        if not self.within_ceilings():
            return None
        send = self.stream if kind == "stream" else self.chat
        sample = send(scheduled=scheduled, **kwargs)
        if sample.status == 429:
            self.after_429(sample)
        return sample

    def open_loop(
        self, rate: float, send: Callable[[float], Any] | None = None, kind: str | None = None
    ) -> None:
        """Send at `rate` per second on the run's arrival process (constant or Poisson),
        whatever the answers take: each arrival gets its own greenlet. Returns when the run
        stops; the user's pool bounds how many are in flight."""
        send = send or (lambda scheduled: self.stream(scheduled=scheduled))
        pool = gevent.pool.Pool(self.concurrency)
        self.pools = [*getattr(self, "pools", []), pool]
        seed = None if self.settings.seed is None else self.settings.seed * 1000 + self.index

        if kind is None:
            kind = self.settings.arrival if self.settings.arrival != "closed" else "constant"
        moments = schedule(kind, rate, time.time(), random.Random(seed), self.phase)
        if self.honours_retry_after:  # pause as Retry-After says, then resume the same process
            arrivals = paused(moments, lambda: RUN.blocked_until.get(self.key_label, 0.0))
        else:
            arrivals = ((moment, 0.0) for moment in moments)
        for moment, waited in arrivals:
            if sleep(moment - time.time()) or not self.within_ceilings():
                return
            pool.spawn(self._arrival, send, moment, waited)

    def _arrival(self, send: Callable[[float], Any], scheduled: float, waited: float) -> None:
        self.pending_wait = waited  # read when the request's sample is made, before any switch
        sample = send(scheduled)
        if isinstance(sample, Sample) and sample.status == 429 and self.honours_retry_after:
            wait = retry_after_seconds({"retry-after": sample.retry_after})
            if wait is not None:
                until = time.time() + min(wait, self.settings.window + 1)
                RUN.blocked_until[self.key_label] = max(
                    until, RUN.blocked_until.get(self.key_label, 0.0)
                )

    def on_stop(self) -> None:
        for pool in getattr(self, "pools", []):
            pool.kill(block=False)

    def after_429(self, sample: Sample) -> None:
        """A closed-loop client that honours Retry-After waits as it says (at most a window)."""
        if not self.honours_retry_after:
            return
        wait = retry_after_seconds({"retry-after": sample.retry_after})
        if wait is not None:
            wait = min(wait, self.settings.window + 1)
            sleep(wait)
            self.pending_wait = wait
            self.next_at = None

    # -- requests ----------------------------------------------------------------------
    def body(self, request: Request, stream: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def _request(
        self, prompt: str | None, max_tokens: int | None, long: int | None = None
    ) -> Request:
        """An explicit prompt (limit probes), else the workload's next request; `long` asks
        the workload for an answer of that many tokens."""
        if prompt is not None:
            return Request(
                [{"role": "user", "content": prompt}], max_tokens or self.settings.max_tokens, None
            )
        request = self.settings.workload.next(long)
        if max_tokens:
            request = Request(request.messages, max_tokens, request.prompt_target)
        return request

    def _new_sample(self, kind: str, scheduled: float | None, request: Request) -> Sample:
        waited, self.pending_wait = getattr(self, "pending_wait", 0.0), 0.0
        return Sample(
            group=self.group,
            kind=kind,
            scheduled=scheduled,
            sent=time.time(),
            open_streams=RUN.open_streams.get(self.key_label, 0),
            max_tokens=request.max_tokens,
            retry_wait=waited,
        )

    def _read_headers(self, sample: Sample, headers: Any) -> None:
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

    def _judge_status(self, sample: Sample, body: bytes) -> None:
        if sample.status == 429:
            correct = (
                retry_after_seconds({"retry-after": sample.retry_after}) is not None
                and b'"error"' in body
            )
            if self.expects_429 and correct:
                sample.outcome = "expected_429"
            else:
                sample.outcome = "unexpected_status" if correct else "broken_429"
                sample.detail = "" if correct else "429 without Retry-After or error body"
        elif sample.status != 200:
            sample.outcome, sample.detail = (
                "unexpected_status",
                body[:200].decode("utf-8", "replace"),
            )

    def chat(
        self,
        *,
        prompt: str | None = None,
        max_tokens: int | None = None,
        scheduled: float | None = None,
        name: str = "chat",
    ) -> Sample:
        request = self._request(prompt, max_tokens)
        sample = self._new_sample("chat", scheduled, request)
        start = time.perf_counter()
        with self.client.post(
            "/chat/completions",
            data=json.dumps(self.body(request, stream=False)),
            headers=self.headers,
            catch_response=True,
            name=name,
        ) as response:
            sample.e2e = sample.ttfb = time.perf_counter() - start
            sample.status = response.status_code or None
            content = response.content or b""
            self._read_headers(sample, response.headers or {})
            if sample.status is None:
                sample.outcome, sample.detail = "transport_error", str(response.error)[:200]
            else:
                self._judge_status(sample, content)
            if sample.outcome == "ok":
                try:
                    usage = json.loads(content).get("usage") or {}
                    self._usage(sample, usage)
                except (ValueError, AttributeError):
                    sample.outcome, sample.detail = "broken_body", "body is not JSON"
            self._settle(response, sample)
        record(sample)
        return sample

    @staticmethod
    def _usage(sample: Sample, usage: dict[str, Any]) -> None:
        sample.output_tokens = int(usage.get("completion_tokens") or 0)
        sample.prompt_tokens = usage.get("prompt_tokens")
        sample.total_tokens = int(usage.get("total_tokens") or 0)
        RUN.tokens += sample.total_tokens

    def stream(
        self,
        *,
        prompt: str | None = None,
        max_tokens: int | None = None,
        long: int | None = None,
        scheduled: float | None = None,
        disconnect_after: float | None = None,
        name: str = "stream",
        phase: str = "",
        on_open: Callable[[], None] | None = None,
    ) -> Sample:
        """A streamed completion, timed per SSE line as it arrives. With disconnect_after
        (seconds), the client goes away then (as a user closing a tab). on_open is called once,
        when the first line of the body arrives or the request is settled otherwise."""
        request = self._request(prompt, max_tokens, long)
        sample = self._new_sample("stream", scheduled, request)
        sample.phase = phase
        label = self.key_label
        RUN.open_streams[label] = RUN.open_streams.get(label, 0) + 1
        start = time.perf_counter()
        try:
            with self.client.post(
                "/chat/completions",
                data=json.dumps(self.body(request)),
                headers=self.headers,
                stream=True,
                catch_response=True,
                name=name,
            ) as response:
                sample.status = response.status_code or None
                self._read_headers(sample, response.headers or {})
                if sample.status != 200:
                    body = response.content or b"" if sample.status else b""
                    if sample.status is None:
                        sample.outcome = "transport_error"
                        sample.detail = str(response.error)[:200]
                    else:
                        self._judge_status(sample, body)
                    sample.e2e = sample.ttfb = time.perf_counter() - start
                else:
                    self._read_stream(response, sample, start, disconnect_after, on_open)
                self._settle(response, sample)
        finally:
            RUN.open_streams[label] -= 1
            if on_open is not None:
                on_open()
        record(sample)
        return sample

    def _read_stream(
        self,
        response: Any,
        sample: Sample,
        start: float,
        disconnect_after: float | None,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        # readline returns each line as soon as it is buffered; block reads (read(n),
        # iter_content) would hand over several events at once and flatten the gaps.
        raw = response._response
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
            self._usage(sample, judge.usage)
        else:
            sample.output_tokens, sample.tokens_approximate = sample.content_events, True
        if not done and not sample.disconnected and sample.outcome == "ok":
            sample.outcome, sample.detail = "broken_stream", "the stream ended without [DONE]"

    def _settle(self, response: Any, sample: Sample) -> None:
        """Tell Locust the outcome, and publish TTFT, ITL and tokens/s as custom metrics so the
        web UI shows them live (the figures sit in the response-time columns, in ms)."""
        if sample.outcome in ("ok", "expected_429"):
            response.success()
        else:  # Locust writes failures to its console, CSV and HTML: redacted first
            sample.detail = RUN.redactor.text(sample.detail)
            response.failure(f"{sample.outcome}: {sample.detail}")
        fire = self.environment.events.request.fire
        name = self.settings.model
        for kind, value in (("TTFT", sample.ttft), ("ITL", sample.itl)):
            if value is not None and sample.outcome == "ok":
                fire(
                    request_type=kind,
                    name=name,
                    response_time=value * 1000,
                    response_length=0,
                    exception=None,
                    context={},
                )
        if sample.outcome == "ok" and sample.e2e and sample.output_tokens:
            fire(
                request_type="TOKENS/S",
                name=name,
                response_time=sample.output_tokens / sample.e2e,
                response_length=0,
                exception=None,
                context={},
            )
