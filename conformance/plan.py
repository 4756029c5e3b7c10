"""The run's request plan, stated before anything is sent (issue #18): per identity, about how
many requests the selected checks will send, which checks need a fresh window of the main key,
and the floor the plan's requests/min puts under the rest (n paced requests need
ceil(n / requests-per-minute) - 1 whole minutes: no more than the limit in any minute).

A check costs one request on the bulk key unless `COSTS` says otherwise; a check that takes jobs
(opconform.conformance.prefetch) costs what its jobs send (`@job(sends=...)`, counted once per job
run),
plus what `COSTS` says it sends itself. A cost is a count or a run setting ("samples": --samples,
"models": the models checked, "cap": the plan's concurrency, "generated": the property run's
bodies, "rounds": a latency check's requests, "drive": what is left of the main key's window),
optionally "+N".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from opconform.contract import WINDOW_SECONDS

if TYPE_CHECKING:
    from opconform.client import ApiClient
    from opconform.target import Target

BULK = "bulk"  # the identity of bulk checks: Pro when given, else the main key
Cost = Mapping[str, int | str]

# A bulk identity allowed no more requests per minute than this is run frugally: measurements
# nothing judges are left out and generated cases are fewer (README: "One Free key").
FRUGAL_REQUESTS_PER_MIN = 60
ROUNDS = 5  # rounds of a latency check (and as many warm-up requests when sent at once)
GENERATED = 30  # bodies of the generated validation run (FRUGAL_GENERATED on a frugal key)
FRUGAL_GENERATED = 10
MARKER = "fresh_window"  # checks that need a window of the main key to themselves

# What a check sends itself, when not one request on the bulk key (or, for a check that takes
# jobs, nothing of its own). Keyed by the check's function name.
COSTS: dict[str, Cost] = {
    "test_request_without_key_is_refused": {"anonymous": 1},
    "test_key_with_other_scheme_is_refused": {"anonymous": 1},
    "test_key_without_prefix_is_refused": {"anonymous": 1},
    "test_invalid_key_is_refused": {"anonymous": 1},
    "test_401_has_documented_body": {"anonymous": 1},
    "test_key_without_permission_gets_403": {"restricted": 1},
    "test_configured_key_is_accepted": {"main": 1},
    "test_run_was_not_mostly_refused": {},
    "test_retrieve_model": {BULK: 2},
    "test_time_to_first_byte_of_models": {BULK: "rounds"},
    "test_small_completion_latency": {BULK: "rounds"},
    "test_time_to_first_token": {BULK: "rounds"},
    "test_midstream_failure_ends_with_error_event": {BULK: 1},  # the Python SDK's stream
    "test_headers_on_success": {"main": 2},
    "test_headers_on_errors": {"main": 3, "restricted": 1},
    "test_headers_on_stream": {"main": 1},
    "test_headers_on_401": {"anonymous": 1},
    "test_limit_matches_plan": {"main": 1, "pro": 1},
    "test_remaining_drops_by_one": {"main": 3},
    "test_reset_is_sane": {"main": 1},
    "test_concurrency_cap": {"main": "cap+1"},
    "test_slot_frees_on_disconnect_and_end": {"main": "cap+3"},
    "test_limit_onset_is_exact": {"main": "drive"},  # the `exhausted` fixture
    "test_retry_after_on_429": {},
    "test_other_key_unaffected": {"alt": 1},
    "test_python_sdk_raises_rate_limit_error": {"main": 1},
    "test_node_sdk_raises_rate_limit_error": {"main": 1},
    "test_go_openai_returns_rate_limit_error": {"main": 1},
    "test_openai_go_returns_rate_limit_error": {"main": 1},
    "test_request_succeeds_after_retry_after": {"main": 2},
    "test_tokens_per_day_cutoff": {"main": 8},
}
# Session fixtures that send: counted once when a selected check uses them.
FIXTURE_COSTS: dict[str, Cost] = {"listed_models": {BULK: 1}}


@dataclass
class Settings:
    """What the costs' names stand for in this run."""

    bulk: str
    samples: int
    models: int
    cap: int
    generated: int
    rounds: int
    limit: int | None  # the main key's requests/min

    def value(self, cost: int | str, main_other: int = 0) -> int:
        if isinstance(cost, int):
            return cost
        name, _, extra = cost.partition("+")
        if name == "drive":
            # What is left of the main key's window after its other requests, and one more.
            limit = self.limit or 0
            return max(2, limit + 1 - (main_other % limit if limit else 0))
        base = {
            "samples": self.samples,
            "models": self.models,
            "cap": self.cap,
            "generated": self.generated,
            "rounds": self.rounds,
        }[name]
        return base + (int(extra) if extra else 0)


def bulk_of(api: ApiClient) -> str:
    return "pro" if api.has_key("pro") else "main"


def is_frugal(api: ApiClient, bulk: str) -> bool:
    limit = api.pacer.limit_of(bulk)
    return limit is not None and limit <= FRUGAL_REQUESTS_PER_MIN


def room(api: ApiClient, key: str) -> int:
    """Requests at once the run allows itself on `key` for independent requests: its plan's
    concurrency less one slot, or one when the key's X-RateLimit-Limit states less than its plan
    (a Free key run as --plan pro: the plan's concurrency is not to be trusted either)."""
    stated, limit = api.pacer.stated_limit(key), api.pacer.limit_of(key)
    if stated is not None and limit is not None and stated < limit:
        return 1
    return api.concurrency.get(key, 1)


def settings_of(target: Target, api: ApiClient) -> Settings:
    bulk = bulk_of(api)
    frugal = is_frugal(api, bulk)
    measured = not frugal or bool(target.latency_slo)
    at_once = room(api, bulk) > ROUNDS
    return Settings(
        bulk=bulk,
        samples=target.samples,
        models=len(target.models) if target.models else target.model_count,
        cap=target.concurrent or 0,
        generated=FRUGAL_GENERATED if frugal else GENERATED,
        # at once: a warm-up round as wide as the measured one; else one warm-up request
        rounds=(2 * ROUNDS if at_once else ROUNDS + 1) if measured else 0,
        limit=target.requests_per_min,
    )


def floor_seconds(
    requests: int, requests_per_min: int | None, window: float = WINDOW_SECONDS
) -> float:
    """No more than the limit in any window: n requests need ceil(n / limit) - 1 whole
    windows."""
    if not requests_per_min or requests <= 0:
        return 0.0
    return window * (math.ceil(requests / requests_per_min) - 1)


def make_plan(items: list[pytest.Item], target: Target, api: ApiClient) -> dict[str, Any]:
    """The plan of the selected checks: per identity, requests, paced requests, floor."""
    from opconform.conformance.prefetch import SPECS, instance_key

    settings = settings_of(target, api)
    planned: dict[str, int] = {}
    unpaced: dict[str, int] = {}
    fresh: list[str] = []
    jobs_seen: set[tuple[str, str]] = set()
    fixtures_seen: set[str] = set()
    deferred: list[tuple[str, int | str, bool]] = []

    def add(costs: Cost, paced: bool = True) -> None:
        for identity, cost in costs.items():
            if isinstance(cost, str) and cost.startswith("drive"):
                deferred.append((identity, cost, paced))
                continue
            label = settings.bulk if identity == BULK else identity
            if label not in ("anonymous", settings.bulk, "main") and not api.has_key(label):
                continue
            n = settings.value(cost)
            planned[label] = planned.get(label, 0) + n
            if not paced:
                unpaced[label] = unpaced.get(label, 0) + n

    for item in items:
        if item.get_closest_marker("requirement") is None:
            continue
        name = getattr(item, "originalname", item.name)
        names = getattr(item, "fixturenames", ())
        takes_jobs = False
        for fixture in names:
            spec = SPECS.get(fixture)
            if spec is not None:
                takes_jobs = True
                key = instance_key(spec, item)
                if key not in jobs_seen:
                    jobs_seen.add(key)
                    add(spec.sends)
            elif fixture in FIXTURE_COSTS and fixture not in fixtures_seen:
                fixtures_seen.add(fixture)
                if not (fixture == "listed_models" and target.models):
                    add(FIXTURE_COSTS[fixture])
        fresh_window = item.get_closest_marker(MARKER) is not None
        if fresh_window:
            fresh.append(item.nodeid)
        add(COSTS.get(name, {} if takes_jobs else {BULK: 1}), paced=not fresh_window)
    for identity, cost, paced in deferred:
        label = settings.bulk if identity == BULK else identity
        n = settings.value(cost, planned.get(label, 0))
        planned[label] = planned.get(label, 0) + n
        if not paced:
            unpaced[label] = unpaced.get(label, 0) + n
    from opconform.conformance.run import plan_limits

    plans = plan_limits(target)
    identities = {}
    for label, n in planned.items():
        limit = None if label == "anonymous" else api.pacer.limit_of(label)
        paced_n = n - unpaced.get(label, 0)
        identities[label] = {
            "plan": None if label == "anonymous" else plans.get(label, ("unknown",))[0],
            "requests_per_min": limit,
            "requests": n,
            "paced": paced_n,
            "floor_s": floor_seconds(paced_n, limit, api.pacer.window),
            "fresh_window": fresh if label == "main" else [],
        }
    return {"requests": sum(planned.values()), "identities": identities}


def plan_lines(plan: Mapping[str, Any]) -> list[str]:
    """One console line per identity, e.g. "plan: main key (Free, 60 requests/min): ~112
    requests, at least 1 min of pacing; 3 checks need a fresh window"."""
    lines = []
    for label, row in sorted(plan["identities"].items(), key=lambda kv: -kv[1]["requests"]):
        if label == "anonymous":
            lines.append(f"plan: no key: ~{row['requests']} requests (not limited)")
            continue
        rate = f"{row['requests_per_min']} requests/min" if row["requests_per_min"] else "no limit"
        floor_s = row["floor_s"]
        floor = (
            "no pacing floor"
            if not floor_s
            else f"at least {floor_s / 60:.0f} min of pacing"
            if floor_s % 60 == 0
            else f"at least {floor_s:.0f} s of pacing"
        )
        requests = f"~{row['requests']} request{'s' * (row['requests'] != 1)}"
        plan_name = str(row["plan"]).capitalize()
        line = f"plan: {label} key ({plan_name}, {rate}): {requests}, {floor}"
        if row["fresh_window"]:
            count = len(row["fresh_window"])
            line += f"; {count} check{'s' * (count != 1)} need{'s' * (count == 1)} a fresh window"
        lines.append(line)
    return lines
