"""Request bodies the gateway tests send."""

from __future__ import annotations

from typing import Any


def ask(content: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    """A chat completion body for gpt-4o with one user message, plus `extra` fields."""
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **extra}
