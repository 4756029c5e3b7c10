"""Rate limits per key and plan: headers, requests/min, concurrency, per-key isolation.

These checks run after every other area (the plugin orders them), on the main key, because the
last of them exhaust it. The concurrency checks come first in this file, the exhausting ones after.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from opconform.client import ApiClient, Exchange, Transfer
from opconform.conformance import expect
from opconform.conformance.concurrency import Measurement
from opconform.conformance.concurrency import judge as judge_cap
from opconform.conformance.run import Check
from opconform.conformance.skips import disabled
from opconform.contract import LONG_PROMPT, PLANS, WINDOW_SECONDS
from opconform.rate_headers import (
    EPOCH_AFTER,
    read_rate_headers,
    reset_in_seconds,
    retry_after_seconds,
)
from opconform.ratelimit import PacingStopped
from opconform.target import Target

requirement = pytest.mark.requirement

WINDOW = int(WINDOW_SECONDS)  # "Requests / min"
CLOCK_SKEW = 2  # seconds of tolerance between our clock and the target's
LONG_STREAM = LONG_PROMPT
MAX_DRIVEN_LIMIT = 2000  # a requests/min limit above this is not driven to exhaustion
# Seconds a server may take to notice that we closed a stream (LiteLLM frees its slot about
# 1.5 s after a disconnect): the first pause before streams are opened again.
NOTICE_DISCONNECT = 3.0


def _server_now(exchange: Exchange) -> float:
    date = exchange.header("date")
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return exchange.started_at


def _rpm(target: Target) -> int:
    if target.requests_per_min is None:
        disabled("the plan's requests/min is unknown: give --enterprise-requests-per-min")
    assert target.requests_per_min is not None
    return target.requests_per_min


# ---------------------------------------------------------------------------- headers
@requirement("OP-RL-001")
def test_headers_on_success(api: ApiClient, model: str) -> None:
    completion = api.chat(expect.chat_request(model, max_tokens=4), key="main")
    expect.status(completion, 200, about="OP-AUTH-006")  # a refused main key is that one's
    try:
        expect.rate_headers(completion)
    except expect.Deviation as exc:
        raise AssertionError(str(exc)) from None  # this is OP-RL-001's own check
    listed = api.request("GET", "/models", key="main")
    if listed.status == 200:  # the list endpoint is OP-MODELS-001's; judge it when it answers
        try:
            expect.rate_headers(listed)
        except expect.Deviation as exc:
            raise AssertionError(str(exc)) from None


@requirement("OP-RL-002")
def test_headers_on_errors(api: ApiClient, model: str, target: Target) -> None:
    exchanges = [
        api.request(
            "POST",
            "/chat/completions",
            key="main",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        api.chat(expect.chat_request("opconform-no-such-model"), key="main"),
        api.request("GET", "/opconform-no-such-path", key="main"),
    ]
    if api.has_key("restricted") and target.restricted_model:
        exchanges.append(
            api.chat(expect.chat_request(target.restricted_model, max_tokens=4), key="restricted")
        )
    # A request the target served is its own requirement's deviation (OP-VAL-001, OP-AUTH-005
    # ...), not evidence about the headers of error answers.
    errors = [e for e in exchanges if e.status is not None and e.status >= 400]
    if not errors:
        pytest.skip("the target refused none of the requests meant to provoke an error")
    for exchange in errors:
        expect.rate_headers(exchange)


@requirement("OP-RL-003")
def test_headers_on_stream(api: ApiClient, model: str) -> None:
    exchange = api.chat(expect.chat_request(model, max_tokens=8), key="main", stream=True)
    expect.status(exchange, 200)
    expect.rate_headers(exchange)


@requirement("OP-RL-014")
def test_headers_on_401(api: ApiClient) -> None:
    exchange = api.request("GET", "/models", key=None)
    expect.status(exchange, 401, about="OP-AUTH-001")  # no 401 to look at is that one's
    expect.rate_headers(exchange)


@requirement("OP-RL-004")
@pytest.mark.needs("OP-RL-001")  # it reads the limit from X-RateLimit-Limit
def test_limit_matches_plan(api: ApiClient, target: Target) -> None:
    rpm = _rpm(target)
    # A 429 carries the headers too: a key limited below its plan must show it here, once.
    answer = api.request("GET", "/models", key="main", allow_429=True)
    limit = expect.rate_headers(answer)["x-ratelimit-limit"]
    assert limit == rpm, (
        f"X-RateLimit-Limit is {limit} for a {target.plan} key; the plan allows {rpm} requests/min"
    )
    pro_rpm = PLANS["pro"].requests_per_min
    if api.has_key("pro") and target.plan != "pro":
        pro = expect.rate_headers(api.request("GET", "/models", key="pro"))["x-ratelimit-limit"]
        assert pro == pro_rpm, (
            f"X-RateLimit-Limit is {pro} for the Pro key; Pro allows {pro_rpm}/min"
        )


@requirement("OP-RL-005")
def test_remaining_drops_by_one(api: ApiClient) -> None:
    for _attempt in range(2):
        api.pacer.before("main", needed=4)
        headers = [expect.rate_headers(api.request("GET", "/models", key="main")) for _ in range(3)]
        if len({h["x-ratelimit-reset"] for h in headers}) > 1:
            continue  # a new window began in the middle: measure again
        remaining = [h["x-ratelimit-remaining"] for h in headers]
        assert remaining[1] == remaining[0] - 1 and remaining[2] == remaining[1] - 1, (
            f"X-RateLimit-Remaining over three requests in one window: {remaining}"
        )
        return
    pytest.skip("the window rolled over during both attempts")


@requirement("OP-RL-006")
def test_reset_is_sane(api: ApiClient) -> None:
    exchange = api.request("GET", "/models", key="main")
    reset = expect.rate_headers(exchange)["x-ratelimit-reset"]
    now = _server_now(exchange)
    if reset > EPOCH_AFTER:
        assert now - CLOCK_SKEW <= reset <= now + WINDOW + CLOCK_SKEW, (
            f"X-RateLimit-Reset {reset} reads as epoch seconds but is {reset - now:+.0f}s from "
            f"now; a requests/min window ends within {WINDOW}s"
        )
    else:
        assert 0 <= reset <= WINDOW + CLOCK_SKEW, (
            f"X-RateLimit-Reset {reset} reads as seconds until reset but is more than a "
            f"{WINDOW}s window"
        )


# ---------------------------------------------------------------------------- concurrency
def _hold(api: ApiClient, model: str, count: int) -> list[Transfer]:
    """Open `count` long streams on the main key, all at about the same time. A 429 with
    Remaining left is a slot that the server has not freed yet (e.g. the previous check's
    streams, just closed: LiteLLM frees one about 1.5 s after a disconnect): close what is
    held, pause as a client would and open them all again (twice at most); streams kept open
    through the pause could end on their own before the check is done with them. If opening
    one raises (the run stopped, the endpoint failed too often), the ones already open are
    closed and recorded."""
    body = expect.chat_request(model, LONG_STREAM, max_tokens=8000)
    held: list[Transfer] = []
    attempts = 3
    try:
        for attempt in range(attempts):
            for _ in range(count):
                transfer = api.hold_stream(body, key="main")
                held.append(transfer)
                exchange = transfer.exchange
                busy = exchange.status == 429 and exchange.header("x-ratelimit-remaining") != "0"
                if busy and attempt < attempts - 1:
                    break
            else:
                return held
            _close_all(held)
            held = []
            # First a short pause (a disconnect the server has not noticed yet); a slot still
            # taken after it is one the server keeps until the reset it names (LiteLLM, after
            # answering a 500, until its minute ends): its Retry-After, within one window.
            value = exchange.header("retry-after") or ""
            retry_after = float(value) if value.isdigit() else 1.0
            pause = NOTICE_DISCONNECT if attempt == 0 else api.pacer.window
            time.sleep(min(retry_after, pause) + 0.5 * attempt)
    except BaseException:
        _close_all(held)
        raise
    return held


def _cap(target: Target, api: ApiClient) -> int:
    if target.concurrent is None:
        disabled("the plan's concurrency cap is unknown: give --enterprise-concurrent")
    assert target.concurrent is not None
    stated = api.pacer.stated_limit("main")
    if stated is not None and target.requests_per_min and stated != target.requests_per_min:
        # A key that is not of --plan (a Free key run as Pro): holding the plan's streams on it
        # would spend its tokens and judge another plan's cap. OP-RL-004 says what is wrong.
        raise expect.Deviation(
            f"the main key's X-RateLimit-Limit is {stated}, not the {target.plan} plan's "
            f"{target.requests_per_min}: its concurrency cap is not judged against --plan",
            "OP-RL-004",
        )
    if target.concurrent > 64:
        disabled(f"a cap of {target.concurrent} streams is too many to hold from one client")
    return target.concurrent


def _none_ended(held: list[Transfer]) -> bool:
    """No held stream has ended on its own so far (what arrived is taken in first)."""
    return not any(h.drain().status == 200 and h.ended for h in held)


def _close_all(held: list[Transfer]) -> list[Exchange]:
    """Disconnect every held stream; the exchanges say whether each had already ended."""
    for transfer in held:
        transfer.drain()
    return [h.abort() for h in held]


def _still_open(closed: list[Exchange]) -> bool:
    """Every accepted stream was still open when we disconnected from it (what had arrived
    meanwhile was taken in first): only then do the streams prove anything about the cap."""
    return all(
        e.aborted and e.done_count == 0 and e.error is None for e in closed if e.status == 200
    )


def _until_served(
    api: ApiClient, model: str, held: list[Transfer], stream: bool = False
) -> tuple[Exchange, float, float]:
    """Ask until the server serves the main key again, within a bound derived from its own
    pace (at least 10 s, or 20 times its first answer): the reference gives the server no
    deadline to notice a disconnect, so the check must not invent a tight one. Stops early
    when one of the `held` streams ends on its own (its slot would free anyway: no evidence).
    Returns the last exchange, the seconds it took, and the bound."""
    began = time.monotonic()
    bound = 10.0
    pause = 0.1
    while True:
        # Not paced: streams are held while this polls, and a Retry-After the cap's 429 carries
        # (a minute, on some gateways) must not make them wait unread. The caller reserved room.
        exchange = api.chat(
            expect.chat_request(model, max_tokens=4),
            key="main",
            stream=stream,
            allow_429=True,
            pace=False,
        )
        elapsed = time.monotonic() - began
        bound = max(bound, 20 * exchange.elapsed)
        ended = any(h.drain().status == 200 and h.ended for h in held)
        if exchange.status != 429 or elapsed + pause > bound or ended:
            return exchange, elapsed, bound
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _measure_cap(
    api: ApiClient, model: str, target: Target, cap: int, again: bool = False
) -> Measurement:
    """Hold the plan's cap of streams on the main key and send one more request."""
    # Taken before the streams: the check's own answers are not what earlier requests left.
    troubled = api.pacer.troubled("main")
    # The streams twice (`_hold` may open them again; a third time only after the target's
    # Retry-After) and the extra request: a wait for room while streams are held would let
    # them end before the cap is judged.
    api.pacer.before("main", needed=2 * cap + 2)
    held = _hold(api, model, cap)
    try:
        refused = [h.exchange for h in held if h.exchange.status != 200]
        if refused:
            # Refused by requests/min (a limit below the plan's) is OP-RL-004/007's deviation.
            raise expect.Deviation(
                f"only {cap - len(refused)} of the plan's {cap} concurrent streams "
                f"were accepted: {expect.preview(refused[0])}",
                "OP-RL-004",
                "OP-RL-007",
            )
        extra = api.chat(
            expect.chat_request(model, max_tokens=4), key="main", allow_429=True, pace=False
        )
    finally:
        closed = _close_all(held)
    return Measurement(
        cap=cap,
        plan=target.plan,
        still_open=_still_open(closed),
        status=extra.status,
        headers=extra.headers,
        answer=expect.preview(extra),
        troubled=troubled,
        again=again,
    )


@pytest.mark.fresh_window
@requirement("OP-RL-010")
def test_concurrency_cap(api: ApiClient, model: str, target: Target, check: Check) -> None:
    cap = _cap(target, api)
    decision, why = judge_cap(_measure_cap(api, model, target, cap))
    if decision == "again":
        check.note(why)
        try:
            api.pacer.wait_quiet(
                "main", "a quiet window before the cap is measured again", settle=NOTICE_DISCONNECT
            )
        except PacingStopped as exc:
            pytest.skip(f"{why}, but {exc}: no evidence about the cap either way")
        decision, why = judge_cap(_measure_cap(api, model, target, cap, again=True))
    if decision == "fail":
        raise AssertionError(why)
    if decision != "pass":
        pytest.skip(why)
    # Its body and its Retry-After are judged with every other 429 (OP-ERR-001 and OP-RL-008
    # invariants): a cap that works is not broken by them.


@pytest.mark.fresh_window
@requirement("OP-RL-011")
def test_slot_frees_on_disconnect_and_end(
    api: ApiClient, model: str, target: Target, check: Check
) -> None:
    cap = _cap(target, api)
    # The streams twice (see test_concurrency_cap), and the polls while they are held.
    api.pacer.before("main", needed=2 * cap + 8)
    held = _hold(api, model, cap)
    short = after_end = None
    try:
        assert all(h.exchange.status == 200 for h in held), "could not open the plan's streams"
        gone = _close_all([held.pop(0)])[0]  # the client disconnects from one stream
        after_disconnect, waited, bound = _until_served(api, model, held)
        open_after_disconnect = _none_ended(held) and _still_open([gone])
        if after_disconnect.status == 200:
            # With cap - 1 streams held, a short stream takes the last slot and ends; the slot
            # must come back (the server may take a moment to notice: poll as above).
            short, _, _ = _until_served(api, model, held, stream=True)
            after_end, waited_end, bound_end = _until_served(api, model, held)
    finally:
        closed = _close_all(held)
    if not open_after_disconnect:
        pytest.skip(
            "the held streams ended on their own during the check (the target's answers are "
            "short): no evidence about freed slots either way"
        )
    assert after_disconnect.status == 200, (
        f"after a client disconnected from one of {cap} streams, requests still got "
        f"{expect.preview(after_disconnect)} for {waited:.1f}s (bound {bound:.0f}s, from the "
        "server's own pace) while the other streams stayed open: its slot was not freed"
    )
    check.note(f"slot back {waited:.2f}s after the disconnect")
    assert short is not None and after_end is not None
    if not _still_open(closed):
        pytest.skip(
            "the held streams ended on their own before the slot of the ended stream could be "
            "judged: no evidence either way"
        )
    check.note(f"slot back {waited_end:.2f}s after a stream ended")
    # Only that it was served and has ended: how it ended ([DONE] or not) is OP-STREAM-007's.
    assert short.status == 200 and short.error is None, (
        f"a short stream in the last free slot failed: {expect.preview(short)}"
    )
    assert after_end.status == 200, (
        f"after a stream ended, the next request got {expect.preview(after_end)} for "
        f"{waited_end:.1f}s (bound {bound_end:.0f}s): the stream's slot was not freed"
    )


# ---------------------------------------------------------------------------- requests/min
@pytest.fixture(scope="module")
def exhausted(api: ApiClient, target: Target, model: str) -> dict[str, Any]:
    """Drive the main key through its requests/min window with cheap GET /models requests:
    Remaining says how many are left; exactly those must pass, and the next one must not.
    Then look past GET /models (`_past_the_list`): whether completions share its count, or,
    when the list was never refused, whether completions are limited at all."""
    return _past_the_list(api, target, model, _drive_the_list(api, target))


def _drive_the_list(api: ApiClient, target: Target) -> dict[str, Any]:
    rpm = _rpm(target)
    if rpm > MAX_DRIVEN_LIMIT:
        disabled(f"a limit of {rpm} requests/min is too high to drive in a check")
    for _attempt in range(2):
        api.pacer.before("main", needed=2)
        first = api.request("GET", "/models", key="main", allow_429=True, pace=False)
        if first.header("x-ratelimit-remaining") is None:
            return _drive_blind(api, rpm, first)
        start = expect.rate_headers(first)
        sequence = []
        for _ in range(start["x-ratelimit-remaining"]):
            exchange = api.request("GET", "/models", key="main", allow_429=True, pace=False)
            sequence.append(exchange)
            if exchange.status == 429:
                break
        over = api.request("GET", "/models", key="main", allow_429=True, pace=False)
        resets = {e.header("x-ratelimit-reset") for e in [first, *sequence]}
        if len(resets) == 1:
            return {"first": first, "start": start, "sequence": sequence, "over": over}
    pytest.skip("the window rolled over while the key was being driven to its limit")


def _drive_blind(api: ApiClient, rpm: int, first: Exchange) -> dict[str, Any]:
    """No X-RateLimit-Remaining to count down: send the plan's requests/min and one more, as
    fast as the target answers. No 429 among them, within one minute, means no limit."""
    began = time.monotonic()
    sequence = [first]
    while len(sequence) <= rpm and sequence[-1].status != 429:
        sequence.append(api.request("GET", "/models", key="main", allow_429=True, pace=False))
    elapsed = time.monotonic() - began
    over = sequence.pop()
    return {
        "first": first,
        "start": None,
        "sequence": sequence[1:],
        "over": over,
        "blind": elapsed,
        "sent": len(sequence) + 1,
    }


def _cheap_completion(api: ApiClient, model: str, key: str = "main") -> Exchange:
    return api.chat(
        expect.chat_request(model, "Say hi.", max_tokens=1), key=key, allow_429=True, pace=False
    )


def _past_the_list(
    api: ApiClient, target: Target, model: str, drive: dict[str, Any]
) -> dict[str, Any]:
    """A limiter may count each endpoint on its own (openai-forward: per key and path) or only
    LLM calls (LiteLLM): the plan's requests/min is per key, whatever is asked.

    - GET /models refused: one completion right after, then the list once more. A completion
      served while the list is still refused means the key has a count per endpoint, so it
      gets more than the plan's requests/min (`per_endpoint`).
    - GET /models never refused within a window: drive cheap completions (max_tokens 1, at
      most the plan's requests/min and one more) to find the limit there (`refused`), so the
      checks that inspect a 429 (Retry-After, isolation, the SDKs' errors) still have one.
    """
    over = drive["over"]
    drive["refused"] = over if over.status == 429 else None
    if over.status == 429:
        completion = _cheap_completion(api, model)
        if completion.status == 200:
            again = api.request("GET", "/models", key="main", allow_429=True, pace=False)
            if again.status == 429:
                drive["per_endpoint"] = (completion, again)
        return drive
    blind_too_long = drive.get("blind") is not None and drive["blind"] > target.window_seconds
    if over.status not in (200, 404) or blind_too_long:
        return drive  # refused some other way (OP-RL-007's), or no evidence either way
    began = time.monotonic()
    completions: list[Exchange] = []
    rpm = _rpm(target)
    while len(completions) <= rpm and time.monotonic() - began < target.window_seconds:
        completions.append(_cheap_completion(api, model))
        if completions[-1].status != 200:
            break
    drive["completions"] = completions
    if completions and completions[-1].status == 429:
        drive["refused"] = completions[-1]
    return drive


def _refused(exhausted: dict[str, Any], target: Target) -> Exchange:
    """The 429 the drive met (on GET /models, else on completions). Without one, the limit
    is not enforced (OP-RL-007's root cause), or the drive took longer than a window (no
    evidence either way)."""
    refused: Exchange | None = exhausted.get("refused")
    if refused is not None:
        return refused
    over = exhausted["over"]
    if exhausted.get("blind") is not None and exhausted["blind"] > target.window_seconds:
        pytest.skip("the drive took longer than a window: no 429 to inspect (see OP-RL-007)")
    raise expect.Deviation(
        f"no 429 to inspect: the request past the limit got {expect.preview(over)}",
        "OP-RL-007",
    )


def _is_completion(exchange: Exchange) -> bool:
    return exchange.method == "POST"


@pytest.mark.fresh_window
@requirement("OP-RL-007")
def test_limit_onset_is_exact(exhausted: dict[str, Any], attach: Any, target: Target) -> None:
    first, sequence, over = exhausted["first"], exhausted["sequence"], exhausted["over"]
    for exchange in (first, *sequence[-3:], over):
        attach(exchange)
    if exhausted.get("blind") is not None:
        if over.status == 429:
            # An earlier 429 is judged over the whole run (the trailing-minute count).
            _counted_per_key(exhausted, target, attach)
            return
        if exhausted["blind"] > target.window_seconds:
            pytest.skip(
                f"{exhausted['sent']} requests took {exhausted['blind']:.0f}s, longer than a "
                "window: no evidence either way"
            )
        raise AssertionError(
            f"{exhausted['sent']} GET /models on the {target.plan} key within "
            f"{exhausted['blind']:.0f}s, none refused: the plan's {_rpm(target)} requests/min "
            f"is not enforced on them{_completions_seen(exhausted, attach)} (and no "
            "X-RateLimit-Remaining was sent to count down)"
        )
    early = [i for i, e in enumerate(sequence) if e.status == 429]
    if early:
        # Counted against what X-RateLimit-Remaining promised: a Remaining that does not count
        # down (OP-RL-005) promises requests no limit gives.
        raise expect.Deviation(
            f"429 after {early[0] + 1} of the {len(sequence)} requests that "
            f"X-RateLimit-Remaining {exhausted['start']['x-ratelimit-remaining']} allowed",
            "OP-RL-005",
        )
    message = (
        f"the request past the {target.plan} plan's limit (Remaining was 0) got "
        f"{expect.preview(over)}, not 429{_completions_seen(exhausted, attach)}"
    )
    if over.status == 401:
        raise expect.Deviation(message, "OP-AUTH-006")  # the key refused outright is that one's
    if over.status != 429:
        raise expect.failure(message, over)
    _counted_per_key(exhausted, target, attach)


def _completions_seen(exhausted: dict[str, Any], attach: Any) -> str:
    """What the completions driven after an unrefused list showed (see _past_the_list)."""
    completions: list[Exchange] = exhausted.get("completions") or []
    if not completions:
        return ""
    attach(completions[-1])
    if completions[-1].status == 429:
        return f"; completions are limited: 429 after {len(completions) - 1} served in a row"
    return f"; nor on {len(completions)} completions in a row (last: {completions[-1].status})"


def _counted_per_key(exhausted: dict[str, Any], target: Target, attach: Any) -> None:
    """The key's limit covers every request, not each endpoint on its own."""
    if "per_endpoint" not in exhausted:
        return
    completion, again = exhausted["per_endpoint"]
    attach(completion)
    attach(again)
    raise AssertionError(
        f"with GET /models refused (429), POST /chat/completions on the same key got "
        f"{completion.status} and GET /models right after 429 again: the limit is counted per "
        f"endpoint, so one {target.plan} key gets more than the plan's {_rpm(target)} "
        "requests/min"
    )


# The checks that inspect the drive's 429 take it where the drive found it (`_refused`): a limit
# that is wrong in another way (per endpoint, only on completions, off by one) still refuses,
# and that 429 is evidence; only a drive that met none is blocked by OP-RL-007.
@requirement("OP-RL-008")
def test_retry_after_on_429(exhausted: dict[str, Any], attach: Any, target: Target) -> None:
    over = _refused(exhausted, target)
    attach(over)
    value = over.header("retry-after")
    assert value is not None, "the 429 has no Retry-After header"
    assert value.strip().isdigit(), f"Retry-After {value!r} is not an integer number of seconds"
    retry_after = int(value)
    assert 1 <= retry_after <= WINDOW, f"Retry-After {retry_after} is outside 1..{WINDOW}"
    reset = over.header("x-ratelimit-reset")
    until_reset = reset_in_seconds(reset, now=_server_now(over)) if reset else None
    if until_reset is not None and retry_after + CLOCK_SKEW < until_reset:
        # Judged against Reset: a Reset in the wrong unit (OP-RL-006) is that one's deviation.
        raise expect.Deviation(
            f"Retry-After {retry_after}s points before X-RateLimit-Reset "
            f"({until_reset:.0f}s away): a client that obeys it comes back too early",
            "OP-RL-006",
        )


def _window_may_have_reset(over: Exchange) -> bool:
    """Has the refused key's window perhaps reset since `over` was refused (its Retry-After,
    else its Reset, has passed)? Then a later request being served is no evidence."""
    wait = retry_after_seconds(over.headers)
    info = read_rate_headers(over.headers)
    if wait is None and info is not None:
        wait = info.reset_seconds
    return wait is None or time.time() - over.started_at - over.elapsed >= wait - CLOCK_SKEW / 2


@pytest.fixture
def alt_key(api: ApiClient) -> str:
    if not api.has_key("alt"):
        disabled("needs --alt-api-key (a second key of the same plan)")
    return "alt"


@pytest.mark.fresh_window
@requirement("OP-RL-012")
def test_other_key_unaffected(
    alt_key: str, exhausted: dict[str, Any], api: ApiClient, attach: Any, target: Target, model: str
) -> None:
    # alt_key comes first: without the identity the check is DISABLED before anything is sent.
    over = _refused(exhausted, target)
    attach(over)
    # The same request the main key was refused (a limiter may count only completions).
    other = (
        api.chat(expect.chat_request(model, "Say hi.", max_tokens=1), key="alt", allow_429=True)
        if _is_completion(over)
        else api.request("GET", "/models", key="alt", allow_429=True)
    )
    assert other.status == 200, (
        f"while the main key was exhausted, the alt key got {expect.preview(other)}: limits "
        "must apply per key"
    )


@requirement("OP-SDK-002")
def test_python_sdk_raises_rate_limit_error(
    exhausted: dict[str, Any], api: ApiClient, target: Target, model: str
) -> None:
    from opconform.conformance.sdk import python_client, raised

    over = _refused(exhausted, target)
    client = python_client(api, target, "main")
    request = expect.chat_request(model, "Say hi.", max_tokens=1)
    on_429 = raised(
        (lambda: client.chat.completions.create(**request))
        if _is_completion(over)
        else client.models.list
    )
    if on_429 != "RateLimitError" and _window_may_have_reset(over):
        pytest.skip(f"the key's window may have reset before the SDK asked (it got {on_429})")
    assert on_429 == "RateLimitError", f"Python SDK on a 429 raised {on_429}"


@requirement("OP-SDK-004")
def test_node_sdk_raises_rate_limit_error(
    exhausted: dict[str, Any], api: ApiClient, target: Target, model: str
) -> None:
    from opconform.conformance.sdk import run_node

    over = _refused(exhausted, target)
    mode = "errors-429-chat" if _is_completion(over) else "errors-429"
    result = run_node(api, target, mode, key="main", model=model)
    if result.get("rate_limit") != "RateLimitError" and _window_may_have_reset(over):
        pytest.skip(f"the key's window may have reset before the SDK asked: {result}")
    assert result.get("rate_limit") == "RateLimitError", f"Node SDK on a 429: {result}"


@requirement("OP-SDK-007")
def test_go_openai_returns_rate_limit_error(
    exhausted: dict[str, Any], api: ApiClient, target: Target, model: str
) -> None:
    _go_sdk_on_429(exhausted, api, target, model, "go-openai")


@requirement("OP-SDK-009")
def test_openai_go_returns_rate_limit_error(
    exhausted: dict[str, Any], api: ApiClient, target: Target, model: str
) -> None:
    _go_sdk_on_429(exhausted, api, target, model, "openai-go")


def _go_sdk_on_429(
    exhausted: dict[str, Any], api: ApiClient, target: Target, model: str, sdk: str
) -> None:
    from opconform.conformance.sdk import go_typed_error, run_go

    over = _refused(exhausted, target)
    mode = "errors-429-chat" if _is_completion(over) else "errors-429"
    result = run_go(api, target, sdk, mode, key="main", model=model)
    seen = result["rate_limit"]
    if seen.get("status") != 429 and _window_may_have_reset(over):
        pytest.skip(f"the key's window may have reset before {sdk} asked: {seen}")
    go_typed_error(sdk, "the key over its limit", seen, 429, "OP-RL-007")


@requirement("OP-RL-009")
@pytest.mark.needs("OP-RL-008")  # it waits out the Retry-After it got
@pytest.mark.slow
def test_request_succeeds_after_retry_after(
    exhausted: dict[str, Any], api: ApiClient, attach: Any, model: str
) -> None:
    over = exhausted.get("refused") or exhausted["over"]
    attach(over)
    value = over.header("retry-after") or ""
    if over.status != 429 or not value.isdigit():
        pytest.skip("no 429 with an integer Retry-After to obey (see OP-RL-007/008)")
    time.sleep(min(int(value), WINDOW) + 0.5)
    again = (
        _cheap_completion(api, model)
        if _is_completion(over)
        else api.request("GET", "/models", key="main", allow_429=True, pace=False)
    )
    assert again.status == 200, (
        f"after waiting Retry-After {value}s the request got {expect.preview(again)}"
    )
