"""The verdict engine as pure functions: statuses, prerequisites, roll-up order, root causes,
whole-run invariants and replay lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opconform.client import Exchange
from opconform.conformance.evidence import curl_command
from opconform.conformance.invariants import Context, Invariants
from opconform.conformance.results import (
    BLOCKED,
    DISABLED,
    ERROR,
    FAIL,
    INCONCLUSIVE,
    PASS,
    WARN,
    Baseline,
    CheckResult,
    roll_up,
    root_causes,
    verdict,
)
from opconform.conformance.verdicts import (
    Blocked,
    Disabled,
    Observed,
    Outcome,
    Raised,
    RunState,
    Shown,
    apply_prerequisites,
    broken_prerequisite,
    judge,
    only_assertions,
    status_of,
    transport_failure,
)
from opconform.redact import Redactor
from opconform.sse import SSEEvent


def _result(rid: str, status: str, needs: tuple[str, ...] = (), name: str = "") -> CheckResult:
    return CheckResult(
        id=name or f"check-{rid}",
        name=name or f"check-{rid}",
        area="x",
        requirements=[rid],
        level="MUST",
        status=status,
        message=f"{rid} says {status}",
        needs=list(needs),
    )


def test_status_of_maps_every_outcome() -> None:
    passed = Outcome(passed=True, skipped=False, failed_assertion=False, message="")
    assert status_of(passed, "MUST")[0] == PASS
    warned = Outcome(True, False, False, "", warnings=("careful",))
    assert status_of(warned, "MUST")[0] == WARN
    assert status_of(Outcome(False, False, True, "bad"), "MUST")[0] == FAIL
    assert status_of(Outcome(False, False, True, "bad"), "SHOULD")[0] == WARN
    assert status_of(Outcome(False, False, False, "KeyError: x"), "MUST")[0] == ERROR
    assert status_of(Outcome(False, True, False, "no evidence"), "MUST")[0] == INCONCLUSIVE
    off = Outcome(False, True, False, "[disabled] needs a key", skip=Disabled("needs a key"))
    assert status_of(off, "MUST")[:2] == (DISABLED, "needs a key")
    stopped = Outcome(False, True, False, "x", skip=Blocked("OP-RL-001", "why"))
    assert status_of(stopped, "MUST") == (BLOCKED, "why", "OP-RL-001")
    # A skip's text alone carries no status: only the typed outcome does.
    assert status_of(Outcome(False, True, False, "[disabled] x"), "MUST")[0] == INCONCLUSIVE


def test_a_group_of_counter_examples_is_a_failure_not_an_error() -> None:
    group = ExceptionGroup("hypothesis", [AssertionError("a"), AssertionError("b")])
    assert only_assertions(group)
    assert not only_assertions(ExceptionGroup("mixed", [AssertionError("a"), KeyError("b")]))


def test_a_consequence_is_blocked_by_its_root_cause() -> None:
    root = _result("OP-RL-001", FAIL)
    consequence = _result("OP-RL-004", FAIL, needs=("OP-RL-001",))
    errored = _result("OP-SDK-002", ERROR, needs=("OP-RL-004", "OP-RL-001"))
    unrelated = _result("OP-CHAT-001", FAIL, needs=("OP-STREAM-001",))
    results = [errored, consequence, root, unrelated]
    apply_prerequisites(results)
    assert root.status == FAIL
    assert (consequence.status, consequence.blocked_by) == (BLOCKED, "OP-RL-001")
    assert errored.status == BLOCKED
    assert unrelated.status == FAIL  # its prerequisite is not broken
    causes = root_causes(results)
    assert [c["requirement"] for c in causes] == ["OP-RL-001", "OP-CHAT-001"]
    assert sorted(causes[0]["blocked"]) == ["check-OP-RL-004", "check-OP-SDK-002"]


def test_a_passing_consequence_stays_passed() -> None:
    root = _result("OP-RL-001", FAIL)
    fine = _result("OP-RL-004", PASS, needs=("OP-RL-001",))
    apply_prerequisites([root, fine])
    assert fine.status == PASS


def test_fail_outranks_error_and_blocked_outranks_pass() -> None:
    rows = {
        row["id"]: row
        for row in roll_up(
            [
                _result("OP-CHAT-001", ERROR, name="a"),
                _result("OP-CHAT-001", FAIL, name="b"),
                _result("OP-CHAT-002", PASS, name="c"),
                _result("OP-CHAT-002", BLOCKED, name="d"),
                _result("OP-CHAT-003", INCONCLUSIVE, name="e"),
            ]
        )
    }
    assert rows["OP-CHAT-001"]["status"] == FAIL
    assert rows["OP-CHAT-002"]["status"] == BLOCKED
    assert rows["OP-CHAT-003"]["status"] == INCONCLUSIVE  # never reads as passed
    assert rows["OP-MODELS-002"]["status"] == "RETIRED"


def test_verdict_never_fails_for_lack_of_evidence() -> None:
    assert verdict([_result("OP-CHAT-001", PASS)]) == ("conformant", 0)
    assert verdict([_result("OP-CHAT-001", FAIL)])[1] == 1
    assert verdict([_result("OP-CHAT-001", PASS), _result("OP-CHAT-002", ERROR)])[1] == 3
    assert verdict([_result("OP-CHAT-001", PASS)], partial="deadline")[1] == 3
    assert verdict([_result("OP-CHAT-001", BLOCKED)])[1] == 3
    assert verdict([_result("OP-CHAT-001", FAIL)], partial="deadline")[1] == 1


# ---------------------------------------------------------------------------- invariants
def _stream(
    role: str | None = "assistant", done: bool = True, request: dict[str, object] | None = None
) -> Exchange:
    chunks = [
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"role": role, "content": ""} if role else
                      {"content": ""}, "finish_reason": None}]},
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
    ]  # fmt: skip
    events = [SSEEvent(data=json.dumps(c), data_lines=1, at=0.0) for c in chunks]
    if done:
        events.append(SSEEvent(data="[DONE]", data_lines=1, at=0.0))
    body = request or {"model": "m", "messages": [], "stream": True, "max_tokens": 8}
    return _post(
        json.dumps(body).encode(),
        "pro",
        headers={
            "content-type": "text/event-stream",
            "x-ratelimit-limit": "600",
            "x-ratelimit-remaining": "5",
            "x-ratelimit-reset": "9",
        },
        events=events,
        done_count=int(done),
        closed_after_done=True if done else None,
    )


def test_invariants_catch_an_intermittent_defect_with_its_rate() -> None:
    invariants = Invariants()
    for index in range(10):
        invariants.observe(_stream(role=None if index % 5 == 4 else "assistant"), Context())
    tally = invariants.tallies["OP-STREAM-005"]
    assert (tally.seen, tally.broken, tally.rate) == (10, 2, "2 of 10 streams")
    assert invariants.broken() == {"OP-STREAM-005"}


def test_invariants_leave_a_situation_to_the_checks_that_provoke_it() -> None:
    invariants = Invariants()
    invariants.observe(_stream(done=False), Context(frozenset({"OP-ERR-008"})))
    assert "OP-STREAM-007" not in invariants.broken()
    invariants.observe(_stream(done=False), Context(frozenset({"OP-CHAT-001"})))
    assert "OP-STREAM-007" in invariants.broken()


def test_only_a_429_the_plan_does_not_explain_is_a_limit_below_the_plan() -> None:
    """The client's pacer judges each 429 (below_plan, limit_note); the invariant counts only
    those it could not explain, and never a tokens/day refusal."""
    invariants = Invariants()
    explained = _stream()
    explained.key_label, explained.status, explained.body = "main", 429, b'{"error":{}}'
    explained.limit_note = "the plan explains it: the run sent 60 requests in the last minute"
    invariants.observe(explained, Context())
    assert "OP-RL-007" not in invariants.broken()
    below = _stream()
    below.key_label, below.status, below.body = "main", 429, b'{"error":{}}'
    below.below_plan, below.limit_note = True, "429 after 3 requests on the main key"
    invariants.observe(below, Context())
    assert "OP-RL-007" in invariants.broken()
    owned = Invariants()
    owned.observe(below, Context(frozenset({"OP-RL-010"})))  # the concurrency cap's own 429
    assert "OP-RL-007" not in owned.broken()


@pytest.mark.parametrize("scheme", ["Bearer", "Basic"])
def test_replay_line_names_the_variable_never_the_key(scheme: str) -> None:
    key = "op_sk_test_free_main_secret"
    exchange = _stream()
    exchange.request_headers = {"authorization": f"{scheme} {key}", "accept": "text/event-stream"}
    redactor = Redactor()
    redactor.add_labelled({"main": key})
    line = curl_command(exchange, {"main": key}, redactor)
    assert key not in line and "secret" not in line
    assert f'"authorization: {scheme} $OP_API_KEY"' in line and line.startswith("curl ")
    assert redactor.text(f"{scheme} {key}") == f"{scheme} <main key>"


# ---------------------------------------------------------------------------- one fault, one root
def test_a_transport_failure_is_no_evidence_about_the_answer() -> None:
    reset = _stream()
    reset.status, reset.events, reset.body = None, None, b""
    reset.error, reset.error_kind = "connection reset while reading: peer closed", "transport"
    why = transport_failure(reset)
    assert why is not None and "connection reset" in why
    judged = status_of(
        Outcome(False, False, True, "expected 400, got reset", transport=why), "MUST"
    )
    assert judged[0] == ERROR and "no evidence" in judged[1]
    capped = _stream(done=False)
    capped.error, capped.error_kind = "the stream did not end", "stream-cap"
    assert transport_failure(capped) is None  # a stream past its cap is the target's doing
    mine = _stream()
    mine.error, mine.error_kind, mine.aborted = "closed", "transport", True
    assert transport_failure(mine) is None  # a check disconnected on purpose


def test_body_rules_skip_an_answer_cut_in_transport_and_header_rules_do_not() -> None:
    cut = _stream()
    cut.events, cut.headers = None, {"content-type": "application/json"}
    cut.error, cut.error_kind, cut.body = "connection reset", "transport", b'{"id": "x", "obj'
    cut.request_body = json.dumps({"model": "m", "messages": [], "max_tokens": 8}).encode()
    invariants = Invariants()
    invariants.observe(cut, Context())
    assert invariants.tallies["OP-CHAT-001"].seen == 0  # half a body is not a completion
    assert invariants.broken() == {"OP-RL-001"}  # its headers arrived whole: still evidence


def test_every_429_needs_retry_after_whatever_its_body() -> None:
    refused = _stream()
    refused.status, refused.events, refused.body = 429, None, b"<html>busy</html>"
    refused.headers = {**refused.headers, "content-type": "text/html"}
    invariants = Invariants()
    invariants.observe(refused, Context(frozenset({"OP-RL-010"})))
    assert {"OP-RL-008", "OP-ERR-001"} <= invariants.broken()
    refused.headers["retry-after"] = "7"
    fine = Invariants()
    fine.observe(refused, Context(frozenset({"OP-RL-010"})))
    assert "OP-RL-008" not in fine.broken()


def test_streamed_usage_that_does_not_add_up_is_the_usage_requirement() -> None:
    stream = _stream()
    assert stream.events is not None
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 6}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [], "usage": usage}  # fmt: skip
    stream.events.insert(-1, SSEEvent(data=json.dumps(chunk), data_lines=1, at=0.0))
    invariants = Invariants()
    invariants.observe(stream, Context(frozenset({"OP-STREAM-009"})))
    assert "OP-CHAT-003" in invariants.broken()


def test_a_deviation_judged_later_in_the_run_still_blocks() -> None:
    consequence = _result("OP-CHAT-004", FAIL)
    consequence.implied = ["OP-CHAT-006"]
    root = _result("OP-CHAT-006", FAIL)
    results = [consequence, root]  # the root's own check ran after the consequence
    apply_prerequisites(results)
    assert (consequence.status, consequence.blocked_by) == (BLOCKED, "OP-CHAT-006")
    assert [c["requirement"] for c in root_causes(results)] == ["OP-CHAT-006"]
    alone = _result("OP-CHAT-004", FAIL)
    alone.implied = ["OP-CHAT-006"]
    apply_prerequisites([alone, _result("OP-CHAT-006", PASS)])
    assert alone.status == FAIL  # the situation was fine: the deviation is its own


# ---------------------------------------------------------------------------- one check, judged
def _post(body: bytes = b'{"model": "m"}', key_label: str = "main", **extra: Any) -> Exchange:
    """A POST /chat/completions answered 200, with whatever else the test gives."""
    return Exchange(
        method="POST",
        url="http://x/v1/chat/completions",
        path="/chat/completions",
        key_label=key_label,
        request_headers={},
        request_body=body,
        started_at=0.0,
        status=200,
        **extra,
    )


def _seen(
    outcome: Outcome,
    *,
    rid: str = "OP-CHAT-001",
    level: str = "MUST",
    needs: tuple[str, ...] = (),
    raised: Raised | None = None,
    exchanges: tuple[Exchange, ...] = (),
) -> Observed:
    return Observed(
        id=f"conformance/test_x.py::check_{rid}",
        name=f"check_{rid}",
        area="chat",
        requirements=[rid],
        level=level,
        needs=list(needs),
        outcome=outcome,
        raised=raised or Raised(),
        exchanges=list(exchanges),
    )


def _state(*results: CheckResult, baseline: tuple[str, ...] = (), **broken: str) -> RunState:
    entries = {entry: "" for entry in baseline}
    invariants = {rid.replace("_", "-"): why for rid, why in broken.items()}
    return RunState(list(results), Baseline(entries), invariants, replay=lambda e: f"curl {e.path}")


FAILED = Outcome(passed=False, skipped=False, failed_assertion=True, message="no id")


def test_a_failure_names_its_request_and_carries_replay_lines() -> None:
    result, shown = judge(_seen(FAILED, exchanges=(_post(),)), _state())
    assert (result.status, shown) == (FAIL, Shown())
    assert result.message == 'no id [request: POST /chat/completions {"model": "m"}]'
    assert result.replay == ["curl /chat/completions"]
    should, shown = judge(_seen(FAILED, level="SHOULD"), _state())
    assert (should.status, shown.outcome, should.warnings) == (WARN, "passed", ["no id"])


def test_a_failure_on_a_broken_prerequisite_is_blocked_by_it_before_or_after() -> None:
    root = _result("OP-RL-001", FAIL)
    result, shown = judge(_seen(FAILED, needs=("OP-RL-001",)), _state(root))
    assert (result.status, result.blocked_by) == (BLOCKED, "OP-RL-001")
    assert result.message == "blocked by OP-RL-001: OP-RL-001 says FAIL; here: no id"
    assert shown == Shown("skipped", skipped_because=result.message)
    by_invariant, _ = judge(_seen(FAILED, needs=("OP-RL-001",)), _state(OP_RL_001="late (1 of 9)"))
    assert by_invariant.message == "blocked by OP-RL-001: late (1 of 9); here: no id"
    # An invariant the baseline expects to fail blocks nothing: the check's failure is its own.
    known = _state(baseline=("OP-RL-001",), OP_RL_001="late (1 of 9)")
    assert judge(_seen(FAILED, needs=("OP-RL-001",)), known)[0].status == FAIL
    assert broken_prerequisite(["OP-RL-001"], ["OP-RL-001"], _state(root)) is None
    # A prerequisite blocked by the check's own requirement does not block the check itself.
    consequence = _result("OP-RL-004", BLOCKED)
    consequence.blocked_by = "OP-RL-001"
    assert broken_prerequisite(["OP-RL-001"], ["OP-RL-004"], _state(consequence)) is None
    assert broken_prerequisite(["OP-X"], ["OP-RL-004"], _state(consequence)) == (
        "OP-RL-001",
        "OP-RL-004 says BLOCKED",
    )


def test_the_baseline_turns_an_expected_failure_into_a_skip_and_a_pass_into_stale() -> None:
    state = _state(baseline=("OP-CHAT-001",))
    result, shown = judge(_seen(FAILED), state)
    assert (result.status, result.baseline, shown.outcome) == (FAIL, "expected", "skipped")
    assert shown.wasxfail == "expected failure (OP-CHAT-001 in the baseline)"
    passed, shown = judge(_seen(Outcome(True, False, False, "")), state)
    assert (passed.baseline, shown.outcome) == ("stale", "failed")
    assert state.baseline.used == {"OP-CHAT-001"}


def test_what_the_exception_says_about_the_run_decides_over_the_status() -> None:
    error = Outcome(False, False, False, "RunStopped: deadline")
    stopped, _ = judge(_seen(error, raised=Raised("deadline", stopped=True)), _state())
    assert (stopped.status, stopped.blocked_by, stopped.message) == (
        BLOCKED,
        "run",
        "not sent: deadline",
    )
    limited = Raised("429", rate_limited=True, limit_root="OP-RL-007")
    assert judge(_seen(error, raised=limited), _state())[0].status == ERROR  # pacing failed
    below, _ = judge(_seen(error, raised=limited), _state(OP_RL_007="429 at 12 of 60"))
    assert (below.status, below.blocked_by) == (BLOCKED, "OP-RL-007")
    # A key still refused after the reset it named blocks what the check wanted from it.
    stuck = _post(window_not_reset=True)
    refused = _state(OP_RL_009="429 after the named reset (1 of 1)")
    kept, _ = judge(_seen(error, exchanges=(stuck,)), refused)
    assert (kept.status, kept.blocked_by) == (BLOCKED, "OP-RL-009")
    assert judge(_seen(error, exchanges=(_post(),)), refused)[0].status == ERROR


def test_a_typed_skip_keeps_its_fields_through_the_judgement() -> None:
    skip = Blocked("OP-MODELS-001", "no model list")
    result, _ = judge(_seen(Outcome(False, True, False, str(skip), skip=skip)), _state())
    assert (result.status, result.blocked_by, result.message) == (
        BLOCKED,
        "OP-MODELS-001",
        "no model list",
    )
    assert str(skip) == "[blocked OP-MODELS-001] no model list"  # what pytest shows
    off = Disabled("needs --alt-api-key")
    result, _ = judge(_seen(Outcome(False, True, False, str(off), skip=off)), _state())
    assert (result.status, result.message) == (DISABLED, "needs --alt-api-key")
