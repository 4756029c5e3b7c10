"""The faults that bend an answer the contract already built: a completion's fields and usage,
and the events of a stream (read back from their wire form: only faulty gateways pay for the
parsing)."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import orjson

from opconform.gateway.catalogue import Latency, MockModel
from opconform.gateway.completion import Completion
from opconform.gateway.faults import Faults
from opconform.gateway.wire import DONE_EVENT

# chaos-endless-stream: 10 ms a piece for at most 10 minutes.
_ENDLESS_PIECES = 60_000
_ENDLESS_TPOT_MS = 10.0
_NEVER_ENDS_TPOT_MS = 50.0
# Every fault is switched on and off per process, so "every fifth" counts per process too.
_EVERY = 5


class AnswerFaults:
    """The switched-on answer faults of one gateway process, and what they count."""

    def __init__(self, on: Callable[[str], bool]) -> None:
        self.on = on
        self._streams = 0
        self._completions = 0

    # ------------------------------------------------------------------ completions
    def _over_max_tokens(self, max_tokens: int | None) -> int | None:
        """Count one completion, streamed or not; the completion_tokens that this one reports
        above max_tokens (usage-over-max-tokens-sometimes), or None."""
        self._completions += 1
        if (
            max_tokens is not None
            and self._completions % _EVERY == 0
            and self.on(Faults.USAGE_OVER_MAX_TOKENS_SOMETIMES)
        ):
            return max_tokens + 1
        return None

    def _reported_usage(self, usage: dict[str, Any], over_max: int | None) -> None:
        if over_max is not None:
            usage["completion_tokens"] = over_max
            usage["total_tokens"] = usage["prompt_tokens"] + over_max
        if self.on(Faults.CHAT_USAGE_MISMATCH):
            usage["total_tokens"] += 1

    def _echoed(self, model: MockModel) -> str:
        return f"{model.owned_by}/{model.id}" if self.on(Faults.CHAT_MODEL_NOT_ECHOED) else model.id

    def _finish_reason(self, reason: str) -> str:
        if reason == "length" and self.on(Faults.CHAT_FINISH_REASON_STOP_WHEN_CUT):
            return "stop"
        return reason

    def completion(self, body: dict[str, Any], model: MockModel, max_tokens: int | None) -> None:
        """A non-streamed completion's body, bent in place."""
        if self.on(Faults.CHAT_WRONG_OBJECT):
            body["object"] = "text_completion"
        body["model"] = self._echoed(model)
        choice = body["choices"][0]
        choice["finish_reason"] = self._finish_reason(choice["finish_reason"])
        self._reported_usage(body["usage"], self._over_max_tokens(max_tokens))

    # ------------------------------------------------------------------ streams
    def streamed(self, completion: Completion) -> Completion:
        """chaos-endless-stream: the answer repeated, 10 ms a piece, for up to 10 minutes;
        stream-never-ends: the same at 50 ms a piece (a pace no event cap catches quickly)."""
        if self.on(Faults.CHAOS_ENDLESS_STREAM):
            tpot = _ENDLESS_TPOT_MS
        elif self.on(Faults.STREAM_NEVER_ENDS):
            tpot = _NEVER_ENDS_TPOT_MS
        else:
            return completion
        count = int(_ENDLESS_PIECES * _ENDLESS_TPOT_MS / tpot)  # 10 minutes at either pace
        pieces: Sequence[str] = completion.pieces or (" x",)
        endless = tuple(itertools.islice(itertools.cycle(pieces), count))
        latency = Latency(completion.model.latency.ttft_ms, tpot)
        return replace(completion, pieces=endless, model=replace(completion.model, latency=latency))

    async def stream(
        self,
        events: AsyncIterator[bytes],
        completion: Completion,
        include_usage: bool,
        state: dict[str, bool],
    ) -> AsyncIterator[bytes]:
        """The contract's stream (`data: <chunk>` events, then `data: [DONE]`), bent by every
        switched-on stream fault."""
        on, model = self.on, completion.model
        prompt_tokens = completion.prompt_tokens
        self._streams += 1
        no_role = on(Faults.STREAM_NO_ROLE) or (
            self._streams % _EVERY == 0 and on(Faults.STREAM_ROLE_MISSING_SOMETIMES)
        )
        over_max = self._over_max_tokens(completion.max_tokens)
        number = 0  # JSON events framed so far (the id: of sse-id-field)
        contents = 0
        last: dict[str, Any] = {}  # the latest chunk as the contract built it
        final: dict[str, Any] = {}  # the final choice as sent

        def frame(payload: dict[str, Any]) -> bytes:
            nonlocal number
            number += 1
            head = ""
            if on(Faults.SSE_EVENT_FIELD):
                head += "event: message\n"
            if on(Faults.SSE_ID_FIELD):
                head += f"id: {number}\n"
            if on(Faults.SSE_MULTILINE_DATA):
                lines = json.dumps(payload, indent=1).splitlines()
                return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode()
            return head.encode() + b"data: " + orjson.dumps(payload) + b"\n\n"

        def sent_chunk(payload: dict[str, Any]) -> bytes:
            if on(Faults.STREAM_CHUNK_WRONG_OBJECT):
                payload["object"] = "chat.completion"
            if on(Faults.STREAM_ID_CHANGES):
                payload["id"] = f"chatcmpl-{secrets.token_hex(12)}"
            payload["model"] = self._echoed(model)
            return frame(payload)

        def bend(payload: dict[str, Any]) -> Iterator[bytes]:
            nonlocal contents, final
            if "error" in payload:
                if on(Faults.SSE_ERROR_KEY_NOT_FIRST):
                    payload = {"type": "error", "error": payload["error"]}
                yield frame(payload)
                return
            choices = payload["choices"]
            if "usage" in payload:
                if on(Faults.STREAM_USAGE_CHUNK_MISSING):
                    return
                if on(Faults.STREAM_USAGE_WITH_CHOICES):
                    payload["choices"] = [final]
                self._reported_usage(payload["usage"], over_max)
                yield sent_chunk(payload)
                return
            choice = choices[0]
            if choice["finish_reason"] is not None:
                choice["finish_reason"] = self._finish_reason(choice["finish_reason"])
                final = choice
                yield sent_chunk(payload)
                if on(Faults.STREAM_FINISH_REASON_TWICE):
                    yield sent_chunk(dict(payload))
                return
            if "role" in choice["delta"]:
                if no_role:
                    del choice["delta"]["role"]
                yield sent_chunk(payload)
                if on(Faults.SSE_KEEPALIVE_FLOOD):
                    yield b": ping\n\n" * 200
                return
            contents += 1
            yield sent_chunk(payload)
            if contents == 1 and on(Faults.STREAM_BAD_JSON_EVENT):
                yield b"data: keep-alive\n\n"

        def done() -> Iterator[bytes]:
            if not on(Faults.STREAM_NO_DONE):
                yield DONE_EVENT
                if on(Faults.STREAM_DONE_TWICE):
                    yield DONE_EVENT

        async for event in events:
            if event == DONE_EVENT:
                for out in done():
                    yield out
                continue
            payload = orjson.loads(event[6:-2])
            if "error" in payload and on(Faults.MIDSTREAM_ERROR_SWALLOWED):
                # End as if the answer were complete: finish "stop", usage of what was sent.
                ending = [{**last, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
                if include_usage:
                    usage = {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": contents,
                        "total_tokens": prompt_tokens + contents,
                    }
                    ending.append({**last, "choices": [], "usage": usage})
                for chunk in ending:
                    for out in bend(chunk):
                        yield out
                for out in done():
                    yield out
                state["finished"] = True
                continue
            if "error" not in payload:
                last = {k: v for k, v in payload.items() if k not in ("choices", "usage")}
            for out in bend(payload):
                yield out
        if state.get("finished") and on(Faults.STREAM_NO_CLOSE):
            await asyncio.sleep(30)
