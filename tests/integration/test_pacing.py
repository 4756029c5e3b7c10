"""Real limits, end to end: runs with one Free key against gateways that limit with, and
without, the contract's headers (the header conventions and the pacer have their unit tests in
tests/unit/test_rate_headers.py and tests/unit/test_ratelimit.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.conftest import SuiteRun, run_suite

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
