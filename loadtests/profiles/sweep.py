"""sweep: open-loop arrivals at rising rates; the highest rate that still meets --slo is the
capacity, reported with the whole curve.

One user sends at each rate of `rates` (profile option, requests/s, e.g. rates=1,2,4,8; default
doubling from `start`=1 up to `max`=64) for `step_seconds` (default 5), with the run's arrival
process (Poisson unless --arrival constant), then lets the step's streams finish and judges it:
ttft_p95 and error_rate from --slo (defaults 1 s and 0.01), and achieved at least 90% of offered.
A step that breaks ends the sweep (`keep_going=1` runs every rate). Use a key whose limits are
far above the load (`opconform load sweep` uses the embedded gateway's Enterprise key).
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust import task

from opconform.loadtests.llm import (
    RUN,
    LLMUser,
    Profile,
    Sample,
    Settings,
    expectation,
    stop_run,
    use_profile,
)
from opconform.metrics import summarise


def rates(settings: Settings) -> list[float]:
    given = settings.profile_options.get("rates")
    if given:
        return [float(r) for r in given.split(",") if r.strip()]
    rate, top, result = settings.option("start", 1.0), settings.option("max", 64.0), []
    while rate <= top:
        result.append(rate)
        rate *= 2
    return result


def thresholds(settings: Settings) -> dict[str, float]:
    return {
        "ttft_p95": settings.slo.get("ttft_p95", 1.0),
        "error_rate": settings.slo.get("error_rate", 0.01),
    }


class SweepUser(LLMUser):
    fixed_count = 1
    group = "main"

    @task
    def sweep(self) -> None:
        step_seconds = self.settings.option("step_seconds", 5.0)
        keep_going = bool(self.settings.option("keep_going", 0))
        steps: list[dict[str, Any]] = RUN.notes.setdefault("steps", [])
        for rate in rates(self.settings):
            phase = f"rate-{rate:g}"
            started = time.time()
            sender = gevent.spawn(
                self.open_loop,
                rate,
                lambda scheduled, phase=phase: self.stream(scheduled=scheduled, phase=phase),
                # an open loop always; Poisson unless --arrival constant says otherwise
                "constant" if self.settings.arrival == "constant" else "poisson",
            )
            sender.join(timeout=step_seconds)
            sender.kill()
            for pool in getattr(self, "pools", []):  # let the step's streams finish
                pool.join(timeout=self.network_timeout)
            step = judge([s for s in RUN.samples if s.phase == phase], rate, self.settings, started)
            steps.append(step)
            if RUN.stopping or (step["broken"] and not keep_going):
                break
        stop_run()
        gevent.sleep(1)


def judge(samples: list[Sample], rate: float, settings: Settings, started: float) -> dict[str, Any]:
    summary = summarise(samples, rate, settings.slo)
    limits = thresholds(settings)
    ttft = (summary.get("ttft") or {}).get("p95")
    achieved = summary.get("achieved_rps") or 0.0
    reasons = []
    if not samples:
        reasons.append("no requests")
    if summary.get("error_rate", 0) > limits["error_rate"]:
        reasons.append(f"error rate {summary['error_rate']:.3f}")
    if ttft is not None and ttft > limits["ttft_p95"]:
        reasons.append(f"TTFT p95 {ttft * 1000:.0f} ms")
    if samples and achieved < 0.9 * rate:
        reasons.append(f"achieved {achieved:.2f}/s of {rate:g}/s")
    return {
        "rate": rate,
        "requests": len(samples),
        "offered_rps": summary.get("offered_rps"),
        "achieved_rps": achieved,
        "goodput_rps": summary.get("goodput_rps"),
        "ttft_p50": (summary.get("ttft") or {}).get("p50"),
        "ttft_p95": ttft,
        "itl_p50": (summary.get("itl") or {}).get("p50"),
        "error_rate": summary.get("error_rate"),
        "broken": bool(reasons),
        "why": "; ".join(reasons),
        "started": started,
    }


def capacity(samples: list[Sample], settings: Settings) -> dict[str, Any]:
    steps = RUN.notes.get("steps", [])
    good = [s for s in steps if not s["broken"]]
    return {
        "capacity_rps": good[-1]["rate"] if good else None,
        "capacity_is_lower_bound": bool(steps) and not any(s["broken"] for s in steps),
        "broke_at": next((s for s in steps if s["broken"]), None),
        "thresholds": thresholds(settings),
    }


use_profile(
    Profile(
        "sweep",
        duration="60s",
        capacity=True,
        open_loop="own",
        expectations=lambda samples, settings: [
            expectation(
                "at least one rate was measured",
                bool(RUN.notes.get("steps")),
                f"{len(RUN.notes.get('steps', []))} rates",
                needs="step long enough to measure",
                evidence=bool(RUN.notes.get("steps")),
            )
        ],
        extra=capacity,
        judges_slo=False,
    )
)
