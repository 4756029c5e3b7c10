"""One conformance run's wiring: the target (the embedded gateway started when none is given),
the client with its pacing, breaker and budget, the evidence recorder and the whole-run
invariants. Made from resolved settings (conformance/settings.py) and handed to pytest as a
plugin object by `opconform run`; the plugin's hooks read and feed it."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from opconform.conformance.settings import RunSettings
from opconform.contract import PLANS
from opconform.target import Target

if TYPE_CHECKING:  # the client is imported when a run starts, not when pytest loads plugins
    import pytest

    from opconform.client import ApiClient, Limits
    from opconform.conformance.results import CheckResult
    from opconform.conformance.verdicts import RunState


class ConformanceRun:
    """Everything a run shares: target, client, evidence, invariants, results."""

    def __init__(self, settings: RunSettings) -> None:
        from opconform.conformance.evidence import Recorder
        from opconform.redact import Redactor

        self.settings = settings
        self.baseline = settings.baseline
        self.report_dir = settings.report_dir
        self.config: pytest.Config | None = None  # the pytest run it serves, once configured
        self.redactor = Redactor()
        self.recorder = Recorder(self.redactor, observe=self._observe)
        self.invariants: Any = None
        self.context: Any = None
        self.results: list[CheckResult] = []
        self.started = time.time()
        self.gateway: Any = None
        self.target: Target | None = None
        self.client: ApiClient | None = None
        self.disabled_items: list[pytest.Item] = []
        self.warnings: dict[str, list[str]] = {}
        self.notes: dict[str, list[str]] = {}
        self.unreachable: str | None = None  # why the target could not be reached at all
        self.collected = 0  # checks collected, before any selection
        self.selection: str | None = None  # "selected --area auth (12 of 121 checks)"
        self.summary: dict[str, Any] | None = None  # the verdict and its counts, once judged
        self.plan: dict[str, Any] | None = (
            None  # the requests the run plans (opconform.conformance.plan)
        )

    def start(self) -> Target:
        if self.target is not None:
            return self.target
        from opconform.client import ApiClient, Budget, TargetBreaker
        from opconform.conformance.invariants import Context, Invariants
        from opconform.preflight import reach
        from opconform.ratelimit import Pacer

        if self.settings.embedded:
            from opconform.gateway.embedded import EmbeddedGateway

            self.gateway = EmbeddedGateway(self.settings.values.get("gateway_args"))
            self.target = self.settings.embedded_target(self.gateway.start())
        else:
            self.target = self.settings.remote_target()
        self.redactor.add_labelled(self.target.keys)
        self.redactor.add(*self.target.secrets())
        self.recorder.keys = {label: key for label, key in self.target.keys.items() if key}
        limits = limits_of(self.target)
        self.invariants = Invariants()
        self.context = Context()
        breaker = TargetBreaker(limits, time.monotonic() + self.target.deadline)
        self.client = ApiClient(
            self.target.base_url,
            self.target.keys,
            limits,
            budget=Budget(self.target.max_tokens_total),
            pacer=Pacer(
                plan_limits(self.target),
                window=self.target.window_seconds,
                time_left=breaker.remaining,
                on_wait=self.say,
            ),
            on_exchange=self.recorder,
            transport=self.target.transport,
        )
        self.client.breaker = breaker
        self.client.concurrency = concurrency_limits(self.target)
        self.unreachable = reach(self.target.base_url, self.target.transport, self.target.timeouts)
        return self.target

    def say(self, message: str) -> None:
        """A line on the console while checks run (pytest's capture does not hide it)."""
        if self.config is None:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"opconform: {self.redactor.text(message)}")

    def announce_plan(self, items: list[pytest.Item]) -> None:
        """The requests the run plans, per identity, said before the first is sent."""
        if self.client is None or self.target is None or self.unreachable:
            return
        from opconform.conformance.plan import make_plan, plan_lines

        self.plan = make_plan(items, self.target, self.client)
        for line in plan_lines(self.plan):
            self.say(line)

    def _observe(self, exchange: Any) -> None:
        if self.invariants is not None:
            from opconform.conformance.prefetch import context_or

            self.invariants.observe(exchange, context_or(self.context))

    def state(self) -> RunState:
        """The run so far, as the verdict functions read it."""
        from opconform.conformance.verdicts import RunState

        broken: dict[str, str] = {}
        if self.invariants is not None:
            tallies = list(self.invariants.all_tallies())
            for rid in self.invariants.broken():
                tally = next(t for t in tallies if t.requirement == rid)
                first = tally.examples[0][0] if tally.examples else tally.rule
                broken[rid] = f"{first} ({tally.rate})"
        return RunState(self.results, self.baseline, broken, self.recorder.replay)

    @property
    def stopped(self) -> str | None:
        """Why the run sends nothing more (deadline, target-level breaker), if it stopped."""
        return None if self.client is None else self.client.breaker.reason

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.gateway is not None:
            self.gateway.stop()


def limits_of(target: Target) -> Limits:
    """What bounds every exchange with the target: the target's own deadlines (handed over,
    not copied), the rest as declared in opconform.limits."""
    from opconform.client import Limits

    return Limits(timeouts=target.timeouts)


def plan_limits(target: Target) -> dict[str, tuple[str, int | None]]:
    """Each identity's plan and its documented requests/min, for the pacer. The main and alt
    keys are of --plan (the restricted key too: nothing says otherwise); --pro-api-key is Pro."""
    own = (target.plan, target.requests_per_min)
    return {
        "main": own,
        "alt": own,
        "restricted": own,
        "pro": ("pro", PLANS["pro"].requests_per_min),
    }


def concurrency_limits(target: Target) -> dict[str, int]:
    """Requests at once per identity for independent requests: the plan's concurrency less one
    slot (a server may free a finished stream's slot a moment late); one where it is unknown."""
    own = max(1, (target.concurrent or 2) - 1)
    pro = max(1, (PLANS["pro"].concurrent or 2) - 1)
    return {"main": own, "alt": own, "restricted": own, "pro": pro}


def quiet_benchmarks(config: pytest.Config) -> None:
    """pytest-benchmark's table and "Wrote benchmark data" only when asked (-v or
    --benchmark-verbose): the perf checks report their figures themselves."""
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.verbose or config.get_verbosity() > 0:
        return
    session.quiet = True
    session.logger.level = session.logger.QUIET


class Check:
    """What a running check may say besides pass/fail: warnings (allowed by the contract but
    likely to hurt a client) end up as WARN."""

    def __init__(self, run: ConformanceRun, nodeid: str) -> None:
        self._run = run
        self._nodeid = nodeid

    def warn(self, message: str) -> None:
        self._run.warnings.setdefault(self._nodeid, []).append(message)

    def note(self, message: str) -> None:
        """A measurement worth reporting whatever the status (e.g. how long a slot took to
        come back): attached to the check's evidence."""
        self._run.notes.setdefault(self._nodeid, []).append(message)
