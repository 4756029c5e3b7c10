"""Messages shortened for a report line (opconform/text.py)."""

from __future__ import annotations

import json

from opconform.text import elide


def test_a_long_message_loses_its_middle_not_its_end() -> None:
    body = json.dumps({"error": {"message": "x" * 400, "type": "invalid_request_error"}})
    short = elide(f"bad body {body} [request: POST /chat/completions]", 200)
    assert len(short) <= 200 and "[...]" in short
    assert short.startswith("bad body {") and short.endswith("[request: POST /chat/completions]")
    assert elide("fits\n as is") == "fits as is"
