"""stream: true: server-sent events in the OpenAI chunk format, ending with [DONE]."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from opconform.client import ApiClient, Exchange, StreamsDoNotEnd
from opconform.conformance import expect
from opconform.conformance.prefetch import BULK, Pending, job
from opconform.conformance.run import Check
from opconform.contract import COUNTING_PROMPT, SHORT_PROMPT
from opconform.target import Target

requirement = pytest.mark.requirement

HAIKU = SHORT_PROMPT


def _stream(api: ApiClient, key: str, model: str, **extra: Any) -> Exchange:
    return api.chat(expect.chat_request(model, HAIKU, max_tokens=24, **extra), key=key, stream=True)


@job(slots=5, sends={BULK: "samples"}, streams=True)
def sampled_streams(api: ApiClient, bulk_key: str, model: str, target: Target) -> list[Exchange]:
    """--samples streams of the same request: a property that fails in one stream of five is
    not missed by judging one. Once one never ends, the others would only wait out their cap:
    the ones read to their end are the sample (none: blocked by OP-STREAM-007)."""

    def one() -> Exchange | None:
        try:
            return _stream(api, bulk_key, model)
        except StreamsDoNotEnd:
            return None

    sampled = [e for e in api.gather([one] * target.samples, key=bulk_key) if e is not None]
    if not sampled and api.unended is not None:
        raise StreamsDoNotEnd(api.unended)
    return sampled


@pytest.fixture
def streams(sampled_streams: Pending) -> list[Exchange]:
    """The sampled streams, attached to the check that judges them."""
    taken: list[Exchange] = sampled_streams.take()
    return taken


def _each(streams: list[Exchange], judge: Callable[[Exchange], None]) -> None:
    """Judge every sampled stream; fail with the rate and the first problem."""
    problems = []
    for exchange in streams:
        try:
            judge(exchange)
        except AssertionError as exc:
            problems.append((exchange, exc))
    if problems:
        first = problems[0][1]
        message = f"{first} (in {len(problems)} of {len(streams)} streams)"
        if isinstance(first, expect.Deviation):
            raise expect.Deviation(message, *first.prerequisites)
        raise AssertionError(message)


@requirement("OP-STREAM-001")
def test_stream_is_event_stream(streams: list[Exchange]) -> None:
    def judge(exchange: Exchange) -> None:
        expect.status(exchange, 200)
        assert exchange.content_type == "text/event-stream", (
            f"stream: Content-Type is {exchange.header('content-type')!r}, not text/event-stream"
        )

    _each(streams, judge)


@requirement("OP-STREAM-002")
def test_every_event_is_one_json_object(streams: list[Exchange]) -> None:
    def judge(exchange: Exchange) -> None:
        expect.status(exchange, 200)
        assert exchange.events, f"no events: {expect.preview(exchange)}"
        assert not exchange.incomplete_tail, (
            f"the stream ended inside an event (no blank line): {exchange.incomplete_tail[:120]!r}"
        )
        assert exchange.sse is not None and not exchange.sse.invalid_utf8, "stream is not UTF-8"
        try:
            payloads = exchange.json_events()
        except ValueError as exc:
            raise AssertionError(f"stream: {exc}") from None
        for index, payload in enumerate(payloads):
            assert isinstance(payload, dict), f"event {index} is JSON but not an object"

    _each(streams, judge)


@requirement("OP-STREAM-003")
def test_chunks_match_schema(streams: list[Exchange]) -> None:
    def judge(exchange: Exchange) -> None:
        for index, chunk in enumerate(expect.stream_chunks(exchange)):
            expect.matches(chunk, "chat-completion-chunk", f"chunk {index}")

    _each(streams, judge)


@requirement("OP-STREAM-004")
def test_chunks_share_id_created_model(streams: list[Exchange]) -> None:
    def judge(exchange: Exchange) -> None:
        chunks = expect.stream_chunks(exchange)
        for field in ("id", "created", "model"):
            values = {str(c.get(field)) for c in chunks}
            assert len(values) == 1, (
                f"chunks carry {len(values)} different {field} values: {sorted(values)[:4]}"
            )

    _each(streams, judge)


@requirement("OP-STREAM-005")
def test_first_delta_has_role(streams: list[Exchange]) -> None:
    def judge(exchange: Exchange) -> None:
        chunks = expect.stream_chunks(exchange)
        first = chunks[0].get("choices") or [{}]
        role = (first[0].get("delta") or {}).get("role")
        assert role == "assistant", f"first chunk's delta role is {role!r}, not 'assistant'"

    _each(streams, judge)


@requirement("OP-STREAM-006")
def test_exactly_one_finish_reason(streams: list[Exchange]) -> None:
    def judge(exchange: Exchange) -> None:
        reasons = [
            choice.get("finish_reason")
            for c in expect.stream_chunks(exchange)
            for choice in c.get("choices") or []
            if choice.get("finish_reason") is not None
        ]
        assert len(reasons) == 1, f"{len(reasons)} chunks carry a finish_reason: {reasons}"

    _each(streams, judge)


@requirement("OP-STREAM-007")
def test_done_once_and_last(streams: list[Exchange]) -> None:
    def judge(exchange: Exchange) -> None:
        expect.status(exchange, 200)
        if exchange.past_event_cap:
            # Cut for running past max_tokens: that it had not ended by then is OP-CHAT-004's
            # deviation when max_tokens is ignored; else a stream that does not end is ours.
            raise expect.Deviation(f"no [DONE]: {exchange.error}", "OP-CHAT-004")
        assert exchange.done_count == 1, (
            f"data: [DONE] came {exchange.done_count} times; the stream must end with it once"
            + (f" ({exchange.error})" if exchange.error else "")
        )
        last_is_done = exchange.events and exchange.events[-1].is_done
        assert last_is_done and exchange.events_after_done == 0, (
            f"{exchange.events_after_done} events after [DONE]"
        )

    _each(streams, judge)


@requirement("OP-STREAM-008")
def test_connection_closes_after_done(streams: list[Exchange], api: ApiClient) -> None:
    ended = [e for e in streams if e.status == 200 and e.done_count]
    if not ended:
        pytest.skip(
            "no [DONE] arrived, so there is no close after it to judge (OP-STREAM-007 "
            "fails for that)"
        )

    def judge(exchange: Exchange) -> None:
        assert exchange.closed_after_done, (
            f"the connection stayed open {api.limits.close_grace:g}s after [DONE]; the Python "
            "SDK up to 2.6 reads until the server closes"
        )

    _each(ended, judge)


# No needs(OP-STREAM-002): this check judges its own stream, which stream_chunks blocks by
# OP-STREAM-002 only when that stream itself cannot be read.
@job(streams=True)
def usage_stream(api: ApiClient, bulk_key: str, model: str) -> Exchange:
    return _stream(api, bulk_key, model, stream_options={"include_usage": True})


@requirement("OP-STREAM-009")
def test_include_usage_adds_final_usage_chunk(usage_stream: Pending) -> None:
    exchange: Exchange = usage_stream.take()
    chunks = expect.stream_chunks(exchange)
    with_usage = [i for i, c in enumerate(chunks) if c.get("usage")]
    assert len(with_usage) == 1, f"{len(with_usage)} chunks carry usage; expected exactly one"
    last = chunks[with_usage[0]]
    assert with_usage[0] == len(chunks) - 1, "the usage chunk is not the last before [DONE]"
    assert last.get("choices") == [], f"the usage chunk has choices {last.get('choices')!r}"
    # Whether its numbers add up is OP-CHAT-003's (an invariant over every usage, streamed or
    # not): one wrong total is one root cause, not two.


@job(slots=2, sends={BULK: 2}, streams=True)
def plain_and_streamed(api: ApiClient, bulk_key: str, model: str) -> list[Exchange]:
    """The same deterministic request without and with stream, at once."""
    body = expect.chat_request(model, HAIKU, max_tokens=24, temperature=0)
    return api.gather(
        [lambda: api.chat(body, key=bulk_key), lambda: api.chat(body, key=bulk_key, stream=True)],
        key=bulk_key,
    )


@requirement("OP-STREAM-010")
def test_streamed_text_equals_completion(
    plain_and_streamed: Pending, target: Target, check: Check
) -> None:
    plain, stream = plain_and_streamed.take()
    expect.status(plain, 200)
    text = plain.json()["choices"][0]["message"]["content"]
    streamed = expect.streamed_text(expect.stream_chunks(stream))
    if streamed != text and not target.deterministic:
        check.warn(
            "streamed text differs from the non-streamed text (the target does not say "
            "it is deterministic, so this may be sampling)"
        )
        return
    assert streamed == text, (
        f"streamed text {streamed[:80]!r} differs from the completion "
        f"{text[:80]!r} of the same deterministic request"
    )


@job(slots=2, sends={BULK: "models"}, streams=True)
def stream_per_model(api: ApiClient, bulk_key: str, models: list[str]) -> list[Exchange]:
    calls = [functools.partial(_stream, api, bulk_key, m) for m in models]
    return api.gather(calls, key=bulk_key)


@requirement("OP-STREAM-011")
def test_every_selected_model_streams(stream_per_model: Pending, models: list[str]) -> None:
    failures = []
    for model_id, exchange in zip(models, stream_per_model.take(), strict=True):
        if exchange.status != 200 or exchange.done_count != 1:
            failures.append(
                f"{model_id}: {expect.preview(exchange, 100)} ([DONE] x{exchange.done_count})"
            )
    assert not failures, "models that do not stream to [DONE]: " + "; ".join(failures)


@job(slots=5, sends={BULK: "samples"}, streams=True)
def cut_streams(api: ApiClient, bulk_key: str, model: str, target: Target) -> list[Exchange]:
    body = expect.chat_request(
        model, COUNTING_PROMPT, max_tokens=5, stream_options={"include_usage": True}
    )
    return api.gather(
        [lambda: api.chat(body, key=bulk_key, stream=True)] * target.samples, key=bulk_key
    )


@requirement("OP-CHAT-004")
@pytest.mark.needs("OP-STREAM-002")  # it reads usage from the chunks
@pytest.mark.area("streaming")  # judged with the streams, though OP-CHAT-004 is chat's
def test_stream_honours_max_tokens(cut_streams: Pending) -> None:
    exchanges: list[Exchange] = cut_streams.take()

    def judge(exchange: Exchange) -> None:
        chunks = expect.stream_chunks(exchange)
        usage = next((c["usage"] for c in chunks if c.get("usage")), None)
        content_events = sum(
            1
            for c in chunks
            for ch in c.get("choices") or []
            if (ch.get("delta") or {}).get("content")
        )
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if tokens is None:
            # A chunk is not a token: without usage only an absurd count is evidence.
            assert content_events <= 5 * 8, (
                f"max_tokens 5, but the stream sent {content_events} content chunks (no usage "
                "chunk to count tokens by)"
            )
            return
        assert isinstance(tokens, int) and tokens <= 5, (
            f"max_tokens 5, but the stream's usage says {tokens} completion tokens"
        )

    _each(exchanges, judge)
