"""Real limits: the header conventions, the plan-paced Pacer, and runs with one Free key against
gateways that limit with, and without, the contract's headers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from opconform.gateway.embedded import EmbeddedGateway
from opconform.rate_headers import (
    CONTRACT,
    IETF,
    OPENAI,
    duration_seconds,
    other_convention,
    read_rate_headers,
    retry_after_seconds,
)
from opconform.ratelimit import Pacer, PacingStopped
from tests.conftest import SuiteRun, run_suite
from tests.support.fakes import FakeClock


def _pacer(clock: FakeClock, limit: int = 3, **extra: Any) -> Pacer:
    return Pacer({"main": ("free", limit)}, window=60, clock=clock, sleep=clock.sleep, **extra)


# ---------------------------------------------------------------------------- conventions
def test_three_conventions_read_alike() -> None:
    contract = read_rate_headers(
        {
            "x-ratelimit-limit": "60",
            "x-ratelimit-remaining": "59",
            "x-ratelimit-reset": "1700000030",
        },
        now=1700000000.0,
    )
    assert contract is not None and contract.convention == CONTRACT
    assert (contract.limit, contract.remaining, contract.reset_seconds) == (60, 59, 30)
    openai = read_rate_headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6m0s",
        }
    )
    assert openai is not None and openai.convention == OPENAI
    assert (openai.limit, openai.remaining, openai.reset_seconds) == (60, 0, 360)
    ietf = read_rate_headers(
        {"ratelimit-policy": '"permin";q=60;w=60', "ratelimit": '"permin";r=12;t=41'}
    )
    assert ietf is not None and ietf.convention == IETF
    assert (ietf.limit, ietf.remaining, ietf.reset_seconds) == (60, 12, 41)
    assert read_rate_headers({"content-type": "application/json"}) is None


def test_other_convention_is_named_with_its_mapping() -> None:
    found = other_convention(
        {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "7"}
    )
    assert found is not None and "OpenAI" in found and "X-RateLimit-Remaining 7" in found
    assert other_convention({"x-ratelimit-limit": "60"}) is None  # the contract's own
    assert other_convention({}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("1h2m3.5s", 3723.5), ("20", 20.0)],
)
def test_openai_reset_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


def test_openai_reset_duration_garbage() -> None:
    assert duration_seconds("soon") is None
    assert duration_seconds("5x") is None


def test_retry_after_as_the_sdks_read_it() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    date = "Wed, 21 Oct 2015 07:28:30 GMT"
    assert retry_after_seconds({"retry-after": date}, now=1445412480.0) == 30
    assert retry_after_seconds({}) is None


# ---------------------------------------------------------------------------- the pacer
def test_pacer_keeps_the_plan_in_any_trailing_window() -> None:
    clock = FakeClock()
    pacer = _pacer(clock)
    for _ in range(3):
        pacer.before("main")
        pacer.sent("main")
        clock.now += 1
    assert clock.slept == []
    pacer.before("main")  # the fourth waits until the first leaves the window
    assert clock.slept == [pytest.approx(57.0)]
    assert "waiting 57s for the main key (Free: 3 requests/min)" in pacer.waits[0]


def test_pacer_goes_slower_on_headers_never_faster() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=100)
    pacer.sent("main")
    pacer.observe("main", 200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "10"})
    pacer.before("main")
    assert clock.slept == [pytest.approx(10.25)]
    # A Remaining above what the plan allows does not let it send more than the plan.
    pacer.observe("main", 200, {"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "999"})
    assert pacer.recent("main") == 1


def test_only_the_contracts_limit_lets_a_key_go_faster_than_its_plan() -> None:
    """A gateway may pass an upstream's OpenAI-named headers through (LiteLLM: llmock's 100000
    on a 60/min key): the key is still paced at its plan, not at the upstream's figure."""
    clock = FakeClock()
    pacer = _pacer(clock, limit=3)
    pacer.observe("main", 200, {"x-ratelimit-limit-requests": "100000"})
    pacer.sent("main", 3)
    pacer.before("main")
    assert clock.slept == [pytest.approx(60.0)]
    pro_as_free = _pacer(FakeClock(), limit=3)  # the contract's own statement: another plan
    pro_as_free.observe("main", 200, {"x-ratelimit-limit": "600", "x-ratelimit-remaining": "5"})
    pro_as_free.sent("main", 3)
    pro_as_free.before("main")
    assert pro_as_free.waits == []


def test_pacer_never_waits_past_the_deadline() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60, time_left=lambda: 5.0)
    pacer.sent("main", 60)
    with pytest.raises(PacingStopped, match="deadline"):
        pacer.before("main")


def test_threads_taking_room_never_overfill_the_window() -> None:
    """Requests sent at once from several threads (ApiClient.gather) each take their place in
    the window as they are admitted."""
    clock = FakeClock()
    pacer = _pacer(clock, limit=10)
    pacer.sent("main", 8)
    admitted = [clock.now] * 8
    lock = threading.Lock()

    def admit() -> None:
        with lock:  # one sleeper at a time: the fake clock is shared
            pacer.before("main", take=True)
            admitted.append(clock.now)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(admit) for _ in range(4)]:
            future.result()
    # Two fit at once; the other two waited until the first eight left the window.
    assert sorted(admitted)[-2:] == [1060.0, 1060.0]
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + 60) <= 10


def test_a_429_is_explained_until_the_run_has_seen_a_whole_window() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.sent("main")
    # In the run's first minute, another client (or an earlier run) may have spent the window.
    assert "earlier run" in (pacer.explains_429("main") or "")
    clock.now += 61
    pacer.sent("main", 3)
    assert pacer.explains_429("main") is None  # 3 of 60 in a window the run saw: below plan
    pacer.sent("main", 57)
    assert "the run sent 60" in (pacer.explains_429("main") or "")


def test_a_429_only_the_other_keys_explain_is_a_shared_limit() -> None:
    clock = FakeClock()
    pacer = Pacer(
        {"main": ("free", 60), "pro": ("pro", 600)}, window=60, clock=clock, sleep=clock.sleep
    )
    clock.now += 61
    pacer.sent("main", 5)
    assert pacer.shared_window("main") is None  # 5 in all: below the plan, not shared
    pacer.sent("pro", 55)
    shared = pacer.shared_window("main")
    assert shared is not None and "together had sent 60" in shared
    assert pacer.shared_window("pro") is None  # 60 of Pro's 600


def test_waiting_out_a_429_makes_the_next_window_observed() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.sent("main")
    pacer.wait_out_429("main", {"retry-after": "20"})
    assert clock.slept and clock.slept[0] == pytest.approx(20.25)
    assert pacer.explains_429("main") is None  # a second 429 now is evidence


def _refusal(pacer: Pacer, clock: FakeClock, headers: dict[str, str]) -> str | None:
    """A requests/min 429 on the main key, sent just now (the run counts it as sent)."""
    pacer.sent("main")
    clock.now += 0.01
    return pacer.not_reset("main", headers, sent_ago=0.005)


def test_a_429_after_the_named_reset_shows_the_window_did_not_reset() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None  # the first: wait it out
    clock.now += 2
    assert _refusal(pacer, clock, {"retry-after": "3"}) is None  # early: the reset is ahead
    clock.now += 5
    note = _refusal(pacer, clock, {"retry-after": "5"})
    assert note is not None and "its window did not reset" in note


def test_an_answer_sent_after_the_refusals_ends_them() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None
    pacer.observe("main", 200, {}, sent_ago=30)  # a stream opened before them: no news
    clock.now += 6
    pacer.observe("main", 200, {}, sent_ago=0.01)  # served after the reset: the window reset
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None


def test_an_epoch_reset_counts_by_the_targets_clock_not_ours() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"x-ratelimit-reset": "1700000010"}) is None
    clock.now += 30
    # Long after by our clock, but the same Reset: the target's window is the same one (its
    # clock may be behind ours), so this refusal is no evidence.
    assert _refusal(pacer, clock, {"x-ratelimit-reset": "1700000010"}) is None
    note = _refusal(pacer, clock, {"x-ratelimit-reset": "1700000013"})
    assert note is not None  # a later window by the target's own clock, and still refused


def test_nothing_named_needs_a_whole_quiet_window() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {}) is None
    clock.now += 30
    pacer.sent("main")  # the run sent on the key within the window: a limiter may count it
    clock.now += 31
    assert _refusal(pacer, clock, {}) is None
    clock.now += 61
    assert _refusal(pacer, clock, {}) is not None


def test_a_window_the_run_refilled_or_another_limit_is_no_evidence() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None
    clock.now += 6
    pacer.sent("main", 60)  # the run filled the new window itself
    assert _refusal(pacer, clock, {"retry-after": "5"}) is None
    other = _pacer(FakeClock(), limit=60)
    assert other.not_reset("main", {"retry-after": "3600"}, sent_ago=0) is None  # tokens/day
    assert other.not_reset("main", {"retry-after": "3600"}, sent_ago=0) is None


def test_errors_in_the_window_trouble_the_key_until_it_leaves() -> None:
    """What the concurrency check asks before it trusts a served extra request."""
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.sent("main")
    pacer.observe("main", 200, {})
    assert pacer.troubled("main") is None
    clock.now += 5
    pacer.observe("main", 500, {})
    clock.now += 10
    pacer.observe("main", None, {})  # no answer at all
    assert pacer.troubled("main") == (
        "2 answer(s) on the main key in the last 60s were errors, the last 0s ago"
    )
    clock.now += 56  # the 500 left the window, the failed exchange not yet
    left = pacer.troubled("main")
    assert left is not None and left.startswith("1 answer(s)")
    clock.now += 5
    assert pacer.troubled("main") is None


def test_a_quiet_window_counts_from_the_last_send_or_answer() -> None:
    clock = FakeClock()
    pacer = _pacer(clock, limit=60)
    pacer.wait_quiet("main", "nothing sent yet")
    assert clock.slept == []
    pacer.sent("main")
    clock.now += 10
    pacer.observe("main", 200, {})  # a stream that ended 10 s after it was sent
    clock.now += 20
    pacer.wait_quiet("main", "measure again", settle=3)
    assert clock.slept == [pytest.approx(43.0)]
    assert "measure again" in pacer.waits[0]
    late = _pacer(FakeClock(), limit=60, time_left=lambda: 5.0)
    late.sent("main")
    with pytest.raises(PacingStopped, match="deadline"):
        late.wait_quiet("main", "measure again")


# ---------------------------------------------------------------------------- whole runs
# The gateway's and the run's window are 4 s instead of 60 (both options exist for tests):
# the run paces exactly as with the contract's minute, only 15 times faster.
WINDOW = "4"


def _free_run(
    gateway: EmbeddedGateway, folder: Path, *extra: str, window: str = WINDOW
) -> SuiteRun:
    env = {
        "OP_BASE_URL": gateway.env["OP_BASE_URL"],
        "OP_API_KEY": gateway.env["OP_API_KEY"],
        "OP_PLAN": "free",
    }
    return run_suite(env, folder, "--window-seconds", window, *extra, timeout=240)


def _spend_window(gateway: EmbeddedGateway) -> None:
    """Another client uses up the main key's window (a bounded loop, loopback only)."""
    headers = {"authorization": f"Bearer {gateway.env['OP_API_KEY']}"}
    with httpx.Client(base_url=gateway.env["OP_BASE_URL"], timeout=5) as http:
        for _ in range(100):
            if http.get("/models", headers=headers).status_code == 429:
                return
    raise AssertionError("the gateway never refused the main key")


def _not_judged(run: SuiteRun, *, short_window: bool = False) -> list[str]:
    """ERROR and INCONCLUSIVE checks; with `short_window`, not the SDK 429 checks that find the
    test's few-second window reset before the SDK asked (a real minute leaves time)."""
    return [
        f"{c['status']} {c['id']}: {c['message'][:160]}"
        for c in run.results["checks"]
        if c["status"] == "ERROR"
        or (
            c["status"] == "INCONCLUSIVE"
            and not (short_window and "may have reset" in c["message"])
        )
    ]


@pytest.mark.slow
def test_one_free_key_twice_in_a_row(tmp_path: Path) -> None:
    """The CI user's configuration: one URL, one Free key. Both runs reach a verdict, the
    second although the first spent the key's window; identities it lacks are DISABLED."""
    # A window long enough that the one another client spends is still spent when the second
    # run (a new process) sends its first request.
    window = "6"
    with EmbeddedGateway(["--window-seconds", window]) as gateway:
        first = _free_run(gateway, tmp_path / "first", window=window)
        _spend_window(gateway)  # as another client would, right before the second run
        second = _free_run(gateway, tmp_path / "second", window=window)
    for run in (first, second):
        assert run.code == 0, (run.stdout[-2000:], _not_judged(run))
        assert not _not_judged(run)
    disabled = {c["id"]: c["message"] for c in first.results["checks"] if c["status"] == "DISABLED"}
    assert any("--alt-api-key" in why for why in disabled.values())
    assert any("--restricted-api-key" in why for why in disabled.values())
    assert first.results["requests_sent"].get("main", 0) > 60  # more than one window's worth
    # The plan said so before sending: a floor of whole windows, and about the requests sent
    # (15%: with one Free key the drive's share depends on what the pacing left in its window).
    planned = first.results["plan"]["identities"]["main"]
    assert planned["floor_s"] >= float(window), planned
    main_sent = sum(n for label, n in first.results["requests_sent"].items() if "main" in label)
    assert abs(planned["requests"] - main_sent) <= 0.15 * main_sent, (planned, main_sent)
    assert "opconform: plan: main key (Free, 60 requests/min): ~" in first.stdout
    # The earlier run's window: waited for, and said so (console and results.json).
    assert any("429" in wait for wait in second.results["pacing"]["waits"]), second.results[
        "pacing"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["ratelimit-headers-off", "ratelimit-headers-openai"])
def test_limits_without_the_contract_headers(tmp_path: Path, fault: str) -> None:
    """A gateway that limits as the plan says but without X-RateLimit-*: only the header
    requirement is a root cause; nothing ERRORs and the limit itself still passes."""
    with EmbeddedGateway(["--window-seconds", WINDOW, "--fault", fault]) as gateway:
        run = _free_run(gateway, tmp_path / fault)
    assert run.code == 1, run.stdout[-2000:]
    assert not _not_judged(run)
    roots = {cause["requirement"] for cause in run.results["root_causes"]}
    assert roots == {"OP-RL-001"}
    statuses = {r["id"]: r["status"] for r in run.results["requirements"]}
    assert statuses["OP-RL-007"] == "PASS"
    if fault == "ratelimit-headers-openai":
        message = next(c for c in run.results["root_causes"])["message"]
        assert "found OpenAI's x-ratelimit-*-requests instead" in message


@pytest.mark.slow
@pytest.mark.parametrize(("key", "plan"), [("OP_PRO_API_KEY", "free"), ("OP_API_KEY", "pro")])
def test_a_key_run_as_another_plan_fails_the_limit_not_the_run(
    tmp_path: Path, key: str, plan: str
) -> None:
    """--plan that does not match the key: the limit requirement says so (one root cause), no
    ERROR cascade, no hang, and no Pro-sized set of streams held on a Free key."""
    with EmbeddedGateway(["--window-seconds", WINDOW]) as gateway:
        env = {
            "OP_BASE_URL": gateway.env["OP_BASE_URL"],
            "OP_API_KEY": gateway.env[key],
            "OP_PLAN": plan,
        }
        run = run_suite(env, tmp_path / plan, "--window-seconds", WINDOW, timeout=240)
    assert run.code == 1, run.stdout[-2000:]
    assert not _not_judged(run, short_window=True)
    roots = {cause["requirement"] for cause in run.results["root_causes"]}
    assert roots == {"OP-RL-004"}  # X-RateLimit-Limit is not the plan's
    cap = next(c for c in run.results["checks"] if c["name"] == "test_concurrency_cap")
    assert cap["status"] == "BLOCKED" and cap["blocked_by"] == "OP-RL-004"
