"""Load-test samples as a profile's judgement reads them, built by hand for tests on data."""

from __future__ import annotations

from typing import Any

from opconform.metrics import Sample


def _sample(group: str, kind: str, sent: float, status: int, **more: Any) -> Sample:
    outcome = "ok" if status == 200 else "expected_429"
    return Sample(
        group=group, kind=kind, scheduled=None, sent=sent, status=status, outcome=outcome, **more
    )


def chat_sample(group: str, sent: float, status: int = 200, **more: Any) -> Sample:
    """A non-streamed request of `group`, answered `status` (a 429 is an expected one)."""
    return _sample(group, "chat", sent, status, **more)


def stream_sample(sent: float, e2e: float, phase: str, status: int = 200, **more: Any) -> Sample:
    """A stream of the main key in `phase`, open for `e2e` seconds."""
    return _sample(
        "main", "stream", sent, status, ttfb=min(e2e, 0.001), e2e=e2e, phase=phase, **more
    )
