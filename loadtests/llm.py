"""What every load profile shares: options, the LLM user, raw samples across workers, and the
end-of-run verdict (load.json, exit code).

Profiles are plain locustfiles (`locust -f loadtests/profiles/steady.py`); `opconform load` runs
them headless with the right options. Keys come only from the environment (OP_API_KEY,
OP_ALT_API_KEY, OP_PRO_API_KEY), never from the command line, where `ps` would show them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import psutil
from locust import FastHttpUser, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.metrics import Sample, judge_slo, parse_slo, summarise
from opconform.redact import Redactor
from opconform.sse import SSEDecoder

KEY_VARIABLES = {
    "main": "OP_API_KEY",
    "alt": "OP_ALT_API_KEY",
    "pro": "OP_PRO_API_KEY",
    "enterprise": "OP_ENTERPRISE_API_KEY",
}
PLAN_LIMITS = {"free": (60, 5), "pro": (600, 50), "enterprise": (1_000_000, 10_000)}
LONG_PROMPT = "Count from 1 to 20000, one number per line."
SHORT_PROMPT = "Write a haiku about APIs."
GAPS_KEPT = 256  # inter-chunk gaps kept per request (the pooled distribution needs no more)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("opconform")
    group.add_argument(
        "--op-plan",
        default=os.environ.get("OP_PLAN", "free"),
        choices=sorted(PLAN_LIMITS),
        help="plan of the main key",
    )
    group.add_argument("--op-model", default=os.environ.get("OP_MODEL", "gpt-4o-mini"))
    group.add_argument("--op-max-tokens", type=int, default=64, help="max_tokens per request")
    group.add_argument(
        "--op-slo", default="", help="thresholds, e.g. ttft_p95=800ms,error_rate=0.01"
    )
    group.add_argument(
        "--op-max-requests", type=int, default=20_000, help="request ceiling per generator process"
    )
    group.add_argument(
        "--op-max-tokens-total",
        type=int,
        default=2_000_000,
        help="token ceiling per generator process (summed from usage)",
    )
    group.add_argument(
        "--op-window-seconds",
        type=float,
        default=60.0,
        help="the requests/min window (the contract says 60)",
    )
    group.add_argument(
        "--op-rpm", type=int, default=0, help="requests/min of the main key (default: the plan's)"
    )
    group.add_argument(
        "--op-concurrent",
        type=int,
        default=0,
        help="concurrent requests of the main key (default: the plan's)",
    )
    group.add_argument("--op-report-dir", default="", help="write load.json and samples here")
    group.add_argument(
        "--op-profile-option",
        action="append",
        default=[],
        help="NAME=VALUE for the profile (see its docstring)",
    )


# ---------------------------------------------------------------------------- settings
@dataclass
class Settings:
    plan: str
    model: str
    max_tokens: int
    slo: dict[str, float]
    max_requests: int
    max_tokens_total: int
    window: float
    rpm: int
    concurrent: int
    report_dir: Path | None
    profile_options: dict[str, str]
    users: int

    @classmethod
    def from_environment(cls, environment: Environment) -> Settings:
        options = environment.parsed_options
        assert options is not None, "the profiles run under Locust's command line"
        rpm, concurrent = PLAN_LIMITS[options.op_plan]
        return cls(
            plan=options.op_plan,
            model=options.op_model,
            max_tokens=options.op_max_tokens,
            slo=parse_slo(options.op_slo),
            max_requests=options.op_max_requests,
            max_tokens_total=options.op_max_tokens_total,
            window=options.op_window_seconds,
            rpm=options.op_rpm or rpm,
            concurrent=options.op_concurrent or concurrent,
            report_dir=Path(options.op_report_dir) if options.op_report_dir else None,
            profile_options=dict(
                item.split("=", 1) for item in options.op_profile_option if "=" in item
            ),
            users=max(1, int(getattr(options, "num_users", 1) or 1)),
        )


# ---------------------------------------------------------------------------- the profile
@dataclass
class Profile:
    """A profile's judgement: expectations over all samples, which groups the SLOs apply to,
    and what rate it offered (for achieved-vs-offered)."""

    name: str
    expectations: Callable[[list[Sample], Settings], list[dict[str, Any]]]
    slo_groups: tuple[str, ...] = ("main",)
    offered_rps: Callable[[Settings], float | None] = lambda settings: None
    extra: Callable[[list[Sample], Settings], dict[str, Any]] = lambda samples, settings: {}
    judges_slo: bool = True  # ramp uses the thresholds to find capacity instead


@dataclass
class Run:
    profile: Profile | None = None
    settings: Settings | None = None
    samples: list[Sample] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)  # a worker's, for the master
    is_worker: bool = False
    requests: int = 0
    tokens: int = 0
    open_streams: dict[str, int] = field(default_factory=dict)
    cpu_start: tuple[float, float] = (0.0, 0.0)
    worker_cpu: dict[str, float] = field(default_factory=dict)
    stopping: bool = False


RUN = Run()


def use_profile(profile: Profile) -> None:
    RUN.profile = profile


def record(sample: Sample) -> None:
    if RUN.is_worker:
        RUN.pending.append(sample.to_dict())
    else:
        RUN.samples.append(sample)


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    RUN.settings = Settings.from_environment(environment)
    RUN.is_worker = isinstance(environment.runner, WorkerRunner)
    RUN.cpu_start = (_cpu_seconds(), time.monotonic())


CPU_MIN_WALL = 3.0  # a CPU share over a shorter run says nothing about saturation


def _cpu_fraction() -> float:
    cpu, wall = RUN.cpu_start
    elapsed = time.monotonic() - wall
    return (_cpu_seconds() - cpu) / elapsed if elapsed >= CPU_MIN_WALL else 0.0


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["opconform_samples"], RUN.pending = RUN.pending, []
    data["opconform_cpu"] = _cpu_fraction()


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    RUN.samples.extend(Sample.from_dict(d) for d in data.get("opconform_samples", []))
    if "opconform_cpu" in data:
        RUN.worker_cpu[client_id] = data["opconform_cpu"]


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or RUN.profile is None:
        return
    if RUN.settings is None:  # the test never started (e.g. --help)
        return
    environment.process_exit_code = finish(environment)


# ---------------------------------------------------------------------------- the verdict
def generator_validity(
    environment: Environment, samples: list[Sample], offered: float | None
) -> tuple[bool, list[str]]:
    """A saturated generator measures itself, not the target: say so instead of a verdict."""
    reasons = []
    runner = environment.runner
    if runner is not None and (
        runner.cpu_warning_emitted or getattr(runner, "worker_cpu_warning_emitted", False)
    ):
        reasons.append("Locust's CPU warning fired")
    cpus = list(RUN.worker_cpu.values()) if isinstance(runner, MasterRunner) else [_cpu_fraction()]
    if cpus and max(cpus) > 0.9:
        reasons.append(f"a generator process used {max(cpus):.0%} of a core")
    lags = sorted(s.send_lag for s in samples if s.send_lag is not None)
    if lags:
        p95 = lags[max(0, int(0.95 * len(lags)) - 1)]
        if p95 > 0.1:
            reasons.append(f"requests left {p95 * 1000:.0f} ms late at p95 (client-side delay)")
    if offered:
        window = max(s.end for s in samples) - min(s.sent for s in samples) if samples else 0
        achieved = len(samples) / window if window > 0 else 0
        if achieved < 0.8 * offered and lags and lags[-1] > 0.1:
            reasons.append(f"achieved {achieved:.1f} req/s of the {offered:.1f} offered")
    return not reasons, reasons


def finish(environment: Environment) -> int:
    profile, settings = RUN.profile, RUN.settings
    assert profile is not None and settings is not None
    samples = sorted(RUN.samples, key=lambda s: s.sent)
    groups = sorted({s.group for s in samples})
    offered = profile.offered_rps(settings)
    primary = [s for s in samples if s.group in profile.slo_groups]
    summary = summarise(primary, offered, settings.slo)
    expectations = profile.expectations(samples, settings)
    if profile.judges_slo:
        expectations += judge_slo(summary, settings.slo)
    valid, reasons = generator_validity(environment, primary, offered)
    passed = all(e["passed"] for e in expectations)
    verdict = "invalid" if not valid else ("pass" if passed else "fail")
    code = 3 if not valid else (0 if passed else 1)
    document = {
        "kind": "load",
        "profile": profile.name,
        "target": {"host": environment.host, "plan": settings.plan, "model": settings.model},
        "settings": {
            "rpm": settings.rpm,
            "concurrent": settings.concurrent,
            "window_s": settings.window,
            "max_tokens": settings.max_tokens,
            "users": settings.users,
            "slo": settings.slo,
            "max_requests": settings.max_requests,
        },
        "verdict": verdict,
        "exit_code": code,
        "valid": valid,
        "invalid_reasons": reasons,
        "expectations": expectations,
        "metrics": summary,
        "groups": {g: summarise([s for s in samples if s.group == g]) for g in groups},
        "extra": profile.extra(samples, settings),
        "requests_recorded": len(samples),
        "locust_requests": environment.stats.total.num_requests if environment.stats else None,
    }
    text = Redactor([os.environ.get(v) for v in KEY_VARIABLES.values()]).text(
        json.dumps(document, indent=2, default=str)
    )
    if settings.report_dir is not None:
        settings.report_dir.mkdir(parents=True, exist_ok=True)
        (settings.report_dir / "load.json").write_text(text)
        with (settings.report_dir / "samples.jsonl").open("w") as out:
            for sample in samples:
                out.write(json.dumps(sample.to_dict()) + "\n")
    failed = [e["name"] for e in expectations if not e["passed"]]
    print(
        f"opconform load {profile.name}: {verdict}"
        + (f" (broken: {', '.join(failed)})" if failed else "")
        + (f" (invalid run: {'; '.join(reasons)})" if reasons else ""),
        flush=True,
    )
    return code


def expectation(name: str, passed: bool, detail: str = "") -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def present(variable: str) -> int:
    """fixed_count for a user whose key may be missing: one user if the variable is set."""
    return 1 if os.environ.get(variable) else 0


def group(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.group == name]


def no_failures(samples: list[Sample], who: str) -> list[dict[str, Any]]:
    """The expectations of a well-behaved client inside its limits."""
    limited = [s for s in samples if s.status == 429]
    failed = [s for s in samples if s.outcome not in ("ok", "expected_429")]
    missing = [s for s in samples if s.outcome == "missing_headers"]
    first = f": first {failed[0].outcome} {failed[0].detail}" if failed else ""
    return [
        expectation(f"{who}: no 429", not limited, f"{len(limited)} of {len(samples)} got 429"),
        expectation(
            f"{who}: no errors or broken streams",
            not failed,
            f"{len(failed)} of {len(samples)} failed{first}",
        ),
        expectation(
            f"{who}: rate-limit headers on every response",
            not missing,
            f"{len(missing)} without them",
        ),
        expectation(f"{who}: requests were sent", bool(samples), f"{len(samples)} requests"),
    ]


def option(settings: Settings, name: str, default: float) -> float:
    value = settings.profile_options.get(name)
    return float(value) if value else default


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


# ---------------------------------------------------------------------------- the user
class LLMUser(FastHttpUser):
    """One client of the target. Subclasses set the identity, the pacing and the 429 policy."""

    abstract = True
    key_label = "main"
    group = "main"
    rate: float | None = None  # requests/s of this user; None: closed loop
    rpm_share: float | None = None  # or: this share of the key's requests/min, as requests/s
    honours_retry_after = True
    expects_429 = False  # limit-probing users: a correct 429 is a pass, not a failure
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        variable = KEY_VARIABLES[self.key_label]
        key = os.environ.get(variable)
        if not key:
            raise RuntimeError(f"{variable} is not set")
        self.headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        self.next_at: float | None = None
        assert RUN.settings is not None
        self.settings: Settings = RUN.settings
        if self.rpm_share:
            self.rate = self.rpm_share * self.settings.rpm / self.settings.window

    # -- pacing ------------------------------------------------------------------------
    def pace(self) -> float | None:
        """Sleep until this user's next scheduled send; returns the scheduled time."""
        if not self.rate:
            return None
        now = time.time()
        if self.next_at is None or self.next_at < now:
            # Behind because this user's own last request took longer than its interval: that
            # is the target's pace, not generator delay, so the schedule restarts from now.
            self.next_at = now
        scheduled = self.next_at
        if scheduled > now:
            gevent.sleep(scheduled - now)  # waking up late from here is generator delay
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
            self.stop_run()
        if RUN.stopping:
            gevent.sleep(1)
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
        return send(scheduled=scheduled, **kwargs)

    def stop_run(self) -> None:
        RUN.stopping = True
        runner = self.environment.runner
        if runner is not None:
            gevent.spawn(runner.quit)

    def after_429(self, sample: Sample) -> None:
        if self.honours_retry_after and sample.retry_after and sample.retry_after.isdigit():
            gevent.sleep(min(float(sample.retry_after), self.settings.window + 1))
            self.next_at = None

    # -- requests ----------------------------------------------------------------------
    def body(
        self, prompt: str = SHORT_PROMPT, max_tokens: int | None = None, stream: bool = True
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens or self.settings.max_tokens,
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def _new_sample(self, kind: str, scheduled: float | None) -> Sample:
        return Sample(
            group=self.group,
            kind=kind,
            scheduled=scheduled,
            sent=time.time(),
            open_streams=RUN.open_streams.get(self.key_label, 0),
        )

    def _read_headers(self, sample: Sample, headers: Any) -> bool:
        def number(name: str) -> int | None:
            value = headers.get(name)
            return int(value) if value and str(value).isdigit() else None

        sample.retry_after = headers.get("retry-after")
        sample.ratelimit_limit = number("x-ratelimit-limit")
        sample.ratelimit_remaining = number("x-ratelimit-remaining")
        sample.ratelimit_reset = number("x-ratelimit-reset")
        return None not in (
            sample.ratelimit_limit,
            sample.ratelimit_remaining,
            sample.ratelimit_reset,
        )

    def _judge_status(self, sample: Sample, body: bytes, has_headers: bool) -> None:
        if sample.status == 429:
            correct = (
                bool(sample.retry_after and sample.retry_after.isdigit()) and b'"error"' in body
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
        elif not has_headers:
            sample.outcome, sample.detail = "missing_headers", "no X-RateLimit-* headers"

    def chat(
        self,
        *,
        prompt: str = SHORT_PROMPT,
        max_tokens: int | None = None,
        scheduled: float | None = None,
        name: str = "chat",
    ) -> Sample:
        sample = self._new_sample("chat", scheduled)
        start = time.perf_counter()
        with self.client.post(
            "/chat/completions",
            data=json.dumps(self.body(prompt, max_tokens, stream=False)),
            headers=self.headers,
            catch_response=True,
            name=name,
        ) as response:
            sample.e2e = sample.ttfb = time.perf_counter() - start
            sample.status = response.status_code or None
            content = response.content or b""
            has_headers = self._read_headers(sample, response.headers or {})
            if sample.status is None:
                sample.outcome, sample.detail = "transport_error", str(response.error)[:200]
            else:
                self._judge_status(sample, content, has_headers)
            if sample.outcome == "ok":
                try:
                    usage = json.loads(content).get("usage") or {}
                    sample.output_tokens = int(usage.get("completion_tokens", 0))
                    sample.total_tokens = int(usage.get("total_tokens", 0))
                    RUN.tokens += sample.total_tokens
                except (ValueError, AttributeError):
                    sample.outcome, sample.detail = "broken_body", "body is not JSON"
            self._settle(response, sample)
        record(sample)
        return sample

    def stream(
        self,
        *,
        prompt: str = SHORT_PROMPT,
        max_tokens: int | None = None,
        scheduled: float | None = None,
        disconnect_after: float | None = None,
        name: str = "stream",
    ) -> Sample:
        """A streamed completion, timed per SSE line as it arrives. With disconnect_after
        (seconds), the client goes away then (as a user closing a tab)."""
        sample = self._new_sample("stream", scheduled)
        label = self.key_label
        RUN.open_streams[label] = RUN.open_streams.get(label, 0) + 1
        start = time.perf_counter()
        try:
            with self.client.post(
                "/chat/completions",
                data=json.dumps(self.body(prompt, max_tokens)),
                headers=self.headers,
                stream=True,
                catch_response=True,
                name=name,
            ) as response:
                sample.status = response.status_code or None
                has_headers = self._read_headers(sample, response.headers or {})
                if sample.status != 200:
                    body = response.content or b"" if sample.status else b""
                    if sample.status is None:
                        sample.outcome = "transport_error"
                        sample.detail = str(response.error)[:200]
                    else:
                        self._judge_status(sample, body, has_headers)
                    sample.e2e = sample.ttfb = time.perf_counter() - start
                else:
                    if not has_headers:
                        sample.outcome, sample.detail = "missing_headers", "stream without headers"
                    self._read_stream(response, sample, start, disconnect_after)
                self._settle(response, sample)
        finally:
            RUN.open_streams[label] -= 1
        record(sample)
        return sample

    def _read_stream(
        self, response: Any, sample: Sample, start: float, disconnect_after: float | None
    ) -> None:
        # readline returns each line as soon as it is buffered; block reads (read(n),
        # iter_content) would hand over several events at once and flatten the gaps.
        raw = response._response
        decoder = SSEDecoder(keep_raw=False)
        first = previous = None
        done = False
        usage_tokens = None
        try:
            while not done:
                line = raw.readline(b"\n")
                now = time.perf_counter()
                if not line:
                    break
                if sample.ttfb is None:
                    sample.ttfb = now - start
                for event in decoder.feed(line, now):
                    if event.is_done:
                        done = True
                        break
                    try:
                        payload = json.loads(event.data)
                    except ValueError:
                        sample.outcome, sample.detail = "broken_stream", "event is not JSON"
                        continue
                    if isinstance(payload, dict) and payload.get("error"):
                        sample.outcome = "broken_stream"
                        sample.detail = f"in-stream error: {str(payload['error'])[:150]}"
                        continue
                    if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                        usage_tokens = payload["usage"].get("completion_tokens")
                        sample.total_tokens = int(payload["usage"].get("total_tokens", 0))
                        RUN.tokens += sample.total_tokens
                    for choice in (
                        (payload.get("choices") or []) if isinstance(payload, dict) else []
                    ):
                        if (choice.get("delta") or {}).get("content"):
                            if first is None:
                                first = now
                                sample.ttft = now - start
                            elif len(sample.gaps) < GAPS_KEPT:
                                sample.gaps.append(now - (previous or now))
                            previous = now
                            sample.content_events += 1
                if disconnect_after is not None and now - start >= disconnect_after:
                    _disconnect(raw)
                    sample.detail = "client disconnected on purpose"
                    break
        except Exception as exc:  # a reset or timeout mid-stream
            sample.outcome, sample.detail = "broken_stream", f"{type(exc).__name__}: {exc}"[:200]
        sample.e2e = time.perf_counter() - start
        if first is not None and previous is not None and sample.content_events > 1:
            sample.itl = (previous - first) / (sample.content_events - 1)
        if usage_tokens is not None:
            sample.output_tokens = int(usage_tokens)
        else:
            sample.output_tokens, sample.tokens_approximate = sample.content_events, True
        if not done and disconnect_after is None and sample.outcome == "ok":
            sample.outcome, sample.detail = "broken_stream", "the stream ended without [DONE]"

    def _settle(self, response: Any, sample: Sample) -> None:
        """Tell Locust the outcome, and publish TTFT, ITL and tokens/s as custom metrics so the
        web UI shows them live (the figures sit in the response-time columns, in ms)."""
        if sample.outcome in ("ok", "expected_429"):
            response.success()
        else:
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
