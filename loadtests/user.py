"""LLMUser: one client of the target, as a Locust user is: class attributes say who it is (key,
group), how it paces (a rate, or a share of the key's requests/min, on a pluggable arrival
strategy from loadtests/arrivals.py) and what it makes of a 429. Its StreamClient
(loadtests/stream_client.py) sends, reads and measures each request; the user counts it against
the run's ceilings, publishes its figures to Locust and records its Sample."""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
from locust import FastHttpUser
from locust.runners import WorkerRunner

from opconform.contract import KEY_VARIABLES
from opconform.loadtests.arrivals import ClosedLoopPacing, open_arrivals
from opconform.loadtests.settings import Settings
from opconform.loadtests.state import RUN, record, sleep, stop_run
from opconform.loadtests.stream_client import StreamClient
from opconform.loadtests.workload import Request
from opconform.metrics import Sample
from opconform.rate_headers import retry_after_seconds
from opconform.timeouts import DEFAULT_TIMEOUTS

_INDEX = itertools.count()  # users of this process, for spreading their start times


class LLMUser(FastHttpUser):
    """One client of the target. Subclasses set the identity, the pacing and the 429 policy."""

    abstract = True
    key_label = "main"
    group = "main"
    rate: float | None = None  # requests/s of this user; None: closed loop
    rpm_share: float | None = None  # or: this share of the key's requests/min, as requests/s
    honours_retry_after = True  # the profile's choice; --honour-retry-after overrides it
    expects_429 = False  # limit-probing users: a correct 429 is a pass, not a failure
    # The arrival strategies: when a closed-loop user sends (given its phase), and the send
    # times of an open-loop process (`open_loop`).
    closed_loop: Callable[[float], ClosedLoopPacing] = ClosedLoopPacing
    open_arrivals = staticmethod(open_arrivals)
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
        assert RUN.settings is not None
        self.settings: Settings = RUN.settings
        headers = {
            **self.settings.transport.headers,  # --header: e.g. an access proxy's
            "authorization": f"Bearer {key}",  # the key's own header wins
            "content-type": "application/json",
        }
        self.stream_client = StreamClient(self.client, headers, self.settings.model, redact=_redact)
        self.pending_wait = 0.0  # a Retry-After wait, recorded on the request that follows it
        if self.settings.honour_retry_after is not None:
            self.honours_retry_after = self.settings.honour_retry_after
        if self.rpm_share:
            self.rate = self.rpm_share * self.settings.limit("rpm") / self.settings.window
        # Users of one profile start together; each starts at its own phase of the interval,
        # so N users at rate r arrive every 1/(N r) instead of N at once every 1/r.
        self.index = self._slot(next(_INDEX))
        self.phase = (self.index % self.settings.users) / self.settings.users
        self.pacing = self.closed_loop(self.phase)

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
        scheduled = self.pacing.next(self.rate, now)
        sleep(scheduled - now)  # waking up late from here is generator delay
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
        # A client that honours Retry-After pauses as it says, then resumes the same process.
        blocked = self._blocked_until if self.honours_retry_after else None
        arrivals = self.open_arrivals(
            kind, rate, time.time(), random.Random(seed), self.phase, blocked
        )
        for moment, waited in arrivals:
            if sleep(moment - time.time()) or not self.within_ceilings():
                return
            pool.spawn(self._arrival, send, moment, waited)

    def _blocked_until(self) -> float:
        return RUN.blocked_until.get(self.key_label, 0.0)

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
            self.pacing.restart()

    # -- requests: the StreamClient sends and measures; the user accounts for the run -----
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
        self.stream_client.chat(request, sample, name=name, expects_429=self.expects_429)
        return self._done(sample)

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
        """A streamed completion (StreamClient.stream), counted among the key's open streams
        while it lasts. on_open is called once the first line of the body arrives, and again
        (callers wrap it to run once) when the request is settled otherwise."""
        request = self._request(prompt, max_tokens, long)
        sample = self._new_sample("stream", scheduled, request)
        sample.phase = phase
        label = self.key_label
        RUN.open_streams[label] = RUN.open_streams.get(label, 0) + 1
        try:
            self.stream_client.stream(
                request,
                sample,
                name=name,
                expects_429=self.expects_429,
                disconnect_after=disconnect_after,
                on_open=on_open,
            )
        finally:
            RUN.open_streams[label] -= 1
            if on_open is not None:
                on_open()
        return self._done(sample)

    def _done(self, sample: Sample) -> Sample:
        """Count its tokens against the run's ceiling, publish its figures, record it."""
        RUN.tokens += sample.total_tokens
        self._publish(sample)
        record(sample)
        return sample

    def _publish(self, sample: Sample) -> None:
        """TTFT, ITL and tokens/s as custom metrics, so the web UI shows them live (the figures
        sit in the response-time columns, in ms)."""
        if sample.outcome != "ok":
            return
        fire = self.environment.events.request.fire
        name = self.settings.model
        figures = [("TTFT", sample.ttft), ("ITL", sample.itl)]
        figures = [(kind, value * 1000) for kind, value in figures if value is not None]
        if sample.e2e and sample.output_tokens:
            figures.append(("TOKENS/S", sample.output_tokens / sample.e2e))
        for kind, value in figures:
            fire(
                request_type=kind,
                name=name,
                response_time=value,
                response_length=0,
                exception=None,
                context={},
            )


def _redact(text: str) -> str:
    return RUN.redactor.text(text)
