"""The SDK checks' judgement (conformance/sdk.py), on what an SDK runner reported: a Go SDK's
error is judged against what was on the wire."""

from __future__ import annotations

from typing import Any

import pytest


def _judged(seen: dict[str, Any], status: int = 401) -> tuple[str, tuple[str, ...]]:
    """('pass' | 'skip' | the deviation's message, the requirements it stands on)."""
    from opconform.conformance import expect
    from opconform.conformance.sdk import go_typed_error

    try:
        go_typed_error("go-openai", "an error", seen, status, "OP-AUTH-004")
    except expect.Deviation as deviation:
        return str(deviation), deviation.prerequisites
    except pytest.skip.Exception:
        return "skip", ()
    return "pass", ()


def test_a_go_sdk_error_is_judged_against_the_wire() -> None:
    typed = {"status": 401, "type": "*openai.APIError", "sdk_status": 401, "message": "bad key"}
    assert _judged({**typed, "sent": True}) == ("pass", ())
    # Another status on the wire is the wire requirement's deviation, not the SDK's.
    message, on = _judged({**typed, "status": 200, "type": "no error"})
    assert on == ("OP-AUTH-004",) and "200" in message
    # A body the SDK could not read: the body's requirement when that is broken, else this
    # check's; a 401's body is documented on its own (OP-AUTH-007), other errors' OP-ERR-001.
    message, on = _judged({**typed, "type": "*openai.RequestError"})
    assert on == ("OP-AUTH-007",) and "*openai.RequestError" in message
    assert _judged({**typed, "message": ""})[1] == ("OP-AUTH-007",)
    forbidden = {**typed, "status": 403, "sdk_status": 403}
    assert _judged({**forbidden, "sdk_status": 0}, status=403)[1] == ("OP-ERR-001",)
    # Refused by the SDK before anything was sent: no evidence about the target.
    assert _judged({**typed, "sent": False, "status": 0}) == ("skip", ())
