"""Expectations and the end-of-run verdict: load.json, samples.jsonl and the exit code.

Every expectation says what evidence it needs. A run that did not produce that evidence (the
streams ended before the disconnect phase, no window was filled to the limit...) leaves the
expectation INCONCLUSIVE, naming what was missing: "could not judge" (exit 3), never "broken".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from opconform.contract import KEY_VARIABLES
from opconform.loadtests.catalogue import ProfileSpec
from opconform.loadtests.settings import MissingLimit, Settings
from opconform.loadtests.state import RUN, cpu_fraction, stop_run
from opconform.metrics import Sample, judge_slo, percentile, summarise
from opconform.outcome import CONFORMANT, HARNESS, NOT_CONFORMANT, USAGE
from opconform.outcome import LOAD_FAIL as FAIL
from opconform.outcome import LOAD_INCONCLUSIVE as INCONCLUSIVE
from opconform.outcome import LOAD_PASS as PASS

SEND_LAG_LIMIT = 0.1  # s: requests leaving later than this at p95 means the generator lagged


def expectation(
    name: str, passed: bool, detail: str = "", *, needs: str = "", evidence: bool = True
) -> dict[str, Any]:
    """One expectation. `needs` says what evidence judging it takes; without that evidence
    (`evidence` False) it is inconclusive whatever `passed` says."""
    status = (PASS if passed else FAIL) if evidence else INCONCLUSIVE
    if status == INCONCLUSIVE:
        detail = f"not judged: the run had no {needs}" + (f" ({detail})" if detail else "")
    return {
        "name": name,
        "status": status,
        "passed": status == PASS,
        "needs": needs,
        "detail": detail,
    }


@dataclass
class Profile(ProfileSpec):
    """A profile: what it declares (ProfileSpec, which `opconform load` reads before Locust
    starts) and its judgement: expectations over all samples, which groups the SLOs apply to,
    what rate it aimed to offer, and what it did (load.json's `extra`)."""

    expectations: Any = None  # Callable[[list[Sample], Settings], list[dict]]
    slo_groups: tuple[str, ...] = ("main",)
    target_rps: Any = None  # Callable[[Settings], float | None]
    extra: Any = None  # Callable[[list[Sample], Settings], dict]
    judges_slo: bool = True  # ramp and sweep use the thresholds to find capacity instead
    notes: dict[str, Any] = field(default_factory=dict)


def use_profile(profile: Profile) -> None:
    RUN.profile = profile


@events.test_start.add_listener
def _check_limits(environment: Environment, **_: Any) -> None:
    """A profile that needs a limit nobody stated stops before it sends anything."""
    settings = RUN.settings
    if RUN.profile is None or settings is None:
        return
    needed = RUN.profile.needed_limits(settings.explicit_rate)
    missing = [name for name in needed if getattr(settings, name) is None]
    if missing:
        try:
            settings.limit(missing[0])
        except MissingLimit as exc:
            RUN.usage_error = str(exc)
        print(f"opconform load {RUN.profile.name}: {RUN.usage_error}", flush=True)
        stop_run()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or RUN.profile is None:
        return
    if RUN.settings is None:  # the test never started (e.g. --help)
        return
    environment.process_exit_code = USAGE if RUN.usage_error else finish(environment)


def generator_validity(
    environment: Environment, samples: list[Sample], target: float | None
) -> tuple[bool, list[str]]:
    """A saturated generator measures itself, not the target: say so instead of a verdict."""
    reasons = []
    runner = environment.runner
    if runner is not None and (
        runner.cpu_warning_emitted or getattr(runner, "worker_cpu_warning_emitted", False)
    ):
        reasons.append("Locust's CPU warning fired")
    cpus = list(RUN.worker_cpu.values()) if isinstance(runner, MasterRunner) else [cpu_fraction()]
    if cpus and max(cpus) > 0.9:
        reasons.append(f"a generator process used {max(cpus):.0%} of a core")
    lags = [s.send_lag for s in samples if s.send_lag is not None]
    lag = percentile(lags, 95)
    if lag is not None and lag > SEND_LAG_LIMIT:
        reasons.append(f"requests left {lag * 1000:.0f} ms late at p95 (client-side delay)")
    return not reasons, reasons


def verdict_of(expectations: list[dict[str, Any]], valid: bool) -> tuple[str, int]:
    statuses = {e["status"] for e in expectations}
    if not valid:
        return "invalid", HARNESS
    if FAIL in statuses:
        return FAIL, NOT_CONFORMANT
    if INCONCLUSIVE in statuses or not expectations:
        return INCONCLUSIVE, HARNESS
    return PASS, CONFORMANT


def finish(environment: Environment) -> int:
    profile, settings = RUN.profile, RUN.settings
    assert profile is not None and settings is not None
    samples = sorted(RUN.samples, key=lambda s: s.sent)
    groups = sorted({s.group for s in samples})
    target = profile.target_rps(settings) if profile.target_rps else settings.rate
    primary = [s for s in samples if s.group in profile.slo_groups]
    summary = summarise(primary, target, settings.slo)
    expectations = list(profile.expectations(samples, settings))
    if profile.judges_slo:
        expectations += judge_slo(summary, settings.slo)
    if RUN.breaker:
        answered = [s for s in samples if s.status is not None]
        expectations.append(
            expectation(
                "the target kept answering",
                False,
                f"the breaker stopped the run: {RUN.breaker}",
                needs="answers from the target",
                evidence=bool(answered),
            )
        )
    valid, reasons = generator_validity(environment, primary, target)
    verdict, code = verdict_of(expectations, valid)
    if samples and all(s.status is None for s in samples):
        # Not one answer: nothing about the target can be judged (exit 3, as for `run`).
        verdict, code = "unreachable", HARNESS
    document = {
        "kind": "load",
        "profile": profile.name,
        "target": {"host": environment.host, "plan": settings.plan, "model": settings.model},
        "settings": settings.describe(),
        "verdict": verdict,
        "exit_code": code,
        "valid": valid,
        "invalid_reasons": reasons,
        "expectations": expectations,
        "metrics": summary,
        "groups": {g: summarise([s for s in samples if s.group == g]) for g in groups},
        "extra": {**(profile.extra(samples, settings) if profile.extra else {}), **RUN.notes},
        "requests_recorded": len(samples),
        "breaker": RUN.breaker or None,
    }
    write(document, samples, settings)
    unjudged = [e["name"] for e in expectations if e["status"] == INCONCLUSIVE]
    failed = [e["name"] for e in expectations if e["status"] == FAIL]
    print(
        f"opconform load {profile.name}: {verdict}"
        + (f" (broken: {', '.join(failed)})" if failed else "")
        + (f" (not judged: {', '.join(unjudged)})" if unjudged else "")
        + (f" (invalid run: {'; '.join(reasons)})" if reasons else ""),
        flush=True,
    )
    return code


def write(document: dict[str, Any], samples: list[Sample], settings: Settings) -> None:
    if settings.report_dir is None:
        return
    redactor = settings.redactor()
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    (settings.report_dir / "load.json").write_text(
        redactor.text(json.dumps(document, indent=2, default=str))
    )
    with (settings.report_dir / "samples.jsonl").open("w") as out:
        for sample in samples:
            out.write(redactor.text(json.dumps(sample.to_dict())) + "\n")


# ---------------------------------------------------------------------------- profile helpers
def present(key_label: str) -> int:
    """fixed_count for a user whose key may be missing: one user if its variable is set."""
    return 1 if os.environ.get(KEY_VARIABLES[key_label]) else 0


def group(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.group == name]


def no_failures(samples: list[Sample], who: str) -> list[dict[str, Any]]:
    """The expectations of a well-behaved client inside its limits."""
    limited = [s for s in samples if s.status == 429]
    failed = [s for s in samples if s.outcome not in ("ok", "expected_429")]
    # "Rate limit headers are included in every response": every answer, whatever its status.
    answered = [s for s in samples if s.ratelimit_headers is not None]
    missing = [s for s in answered if not s.ratelimit_headers]
    first = f": first {failed[0].outcome} {failed[0].detail}" if failed else ""
    statuses = sorted({s.status for s in missing if s.status is not None})
    sent = bool(samples)
    return [
        expectation(
            f"{who}: no 429",
            not limited,
            f"{len(limited)} of {len(samples)} got 429",
            needs="requests",
            evidence=sent,
        ),
        expectation(
            f"{who}: no errors or broken streams",
            not failed,
            f"{len(failed)} of {len(samples)} failed{first}",
            needs="requests",
            evidence=sent,
        ),
        expectation(
            f"{who}: rate-limit headers on every response",
            not missing,
            f"{len(missing)} of {len(answered)} answers without X-RateLimit-Limit, -Remaining "
            "and -Reset" + (f" (status {', '.join(map(str, statuses))})" if missing else ""),
            needs="answers",
            evidence=bool(answered),
        ),
    ]
