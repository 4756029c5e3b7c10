"""Deterministic mock generation: same request, same text; token counts that add up."""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")
_COUNT = re.compile(r"count from (\d+) to (\d+)", re.IGNORECASE)
# Longest counting answer the mock produces: enough to hold a stream open for the concurrency
# checks, bounded so that a hostile prompt cannot make the gateway work forever.
MAX_NATURAL_TOKENS = 20_000

_VOCABULARY = tuple(
    """
    the a of and to in is it that for on as with by this be are from at or an was which
    model answer request token stream gateway provider latency system value result data
    response question context example simple clear short long first next last each every
    paris france capital city river quantum computing state bit superposition entangled
    measure probability wave particle energy light time space world language code api haiku
    poem line word rhythm calm quiet bright open fast slow small large new old good
    therefore however because while when where what how why also only still even very
    """.split()
)


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    # Like OpenAI's accounting: a few tokens of framing per message and per reply.
    return sum(count_tokens(message_text(m)) + 3 for m in messages) + 3


def _seed(model: str, messages: list[dict[str, Any]], temperature: float | None) -> int:
    material = json.dumps([model, messages, temperature], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


def generate(model: str, messages: list[dict[str, Any]], temperature: float | None) -> list[str]:
    """The model's natural answer as a list of token pieces (one streamed delta each).

    "Count from A to B" in the last user message gives the numbers (a long, predictable
    answer); anything else gives 12 to 63 words picked by a hash of the request.
    """
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    match = _COUNT.search(message_text(last_user)) if last_user else None
    if match:
        start, end = int(match.group(1)), int(match.group(2))
        end = min(end, start + MAX_NATURAL_TOKENS - 1)
        return [str(n) if n == start else f"\n{n}" for n in range(start, end + 1)]
    rng = random.Random(_seed(model, messages, temperature))
    words = rng.choices(_VOCABULARY, k=12 + rng.randrange(52))
    pieces = [words[0].capitalize()] + [" " + word for word in words[1:]]
    pieces.append(".")
    return pieces


# Load tests repeat their prompts, and a request's answer never changes: remember recent ones.
# Bounded in entries and in answer length, so memory stays small whatever clients send.
_MEMO: dict[tuple[str, str, float | None], tuple[tuple[str, ...], int]] = {}
MEMO_ENTRIES = 4096
MEMO_MAX_PIECES = 512


def answer(
    model: str, messages: list[dict[str, Any]], temperature: float | None
) -> tuple[tuple[str, ...], int]:
    """(generate(...), prompt_tokens(messages)) of a request, memoised."""
    key = (model, repr(messages), temperature)
    known = _MEMO.get(key)
    if known is not None:
        return known
    result = (tuple(generate(model, messages, temperature)), prompt_tokens(messages))
    if len(result[0]) <= MEMO_MAX_PIECES:
        if len(_MEMO) >= MEMO_ENTRIES:
            _MEMO.clear()
        _MEMO[key] = result
    return result
