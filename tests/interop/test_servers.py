"""Smoke test of the interop matrix servers: each installs, starts and answers a completion.

The suite-vs-expectation comparison builds on the same launcher (tests/interop/servers.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from opconform.conformance.catalogue import requirements
from tests.interop.servers import (
    REAL_LIMITERS,
    SERVERS,
    InteropUnavailable,
    RunningServer,
    start,
)


def _post(running: RunningServer, body: dict[str, Any]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        running.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {running.api_key}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.nightly] if name in REAL_LIMITERS else [])
        for name in sorted(SERVERS)
    ],
)
def test_server_answers_chat_completions(name: str) -> None:
    try:
        with start(name) as running:
            assert running.start_seconds < 60
            assert running.base_url.startswith("http://127.0.0.1:")
            for model in running.models:
                body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
                status, ctype, raw = _post(running, body)
                assert status == 200, raw[:300]
                assert ctype.startswith("application/json")
                answer = json.loads(raw)
                assert answer["choices"][0]["message"]["content"]

                status, ctype, raw = _post(running, {**body, "stream": True})
                assert status == 200, raw[:300]
                assert ctype.startswith("text/event-stream")
                events = [line for line in raw.decode().splitlines() if line.startswith("data:")]
                assert events and events[-1].strip() == "data: [DONE]"
    except InteropUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SERVERS))
def test_expectation_file_covers_every_testable_requirement(name: str) -> None:
    server = SERVERS[name]
    expected = yaml.safe_load(server.expected_file.read_text())
    assert expected["server"] == name and expected["version"] == server.version
    listed = list(expected["requirements"])  # root-cause format (see tests/interop/test_matrix.py)
    testable = {r.id for r in requirements().values() if r.testable}
    assert set(listed) == testable
    for rid, entry in expected["requirements"].items():
        if entry["status"] in ("FAIL", "WARN"):
            assert entry["evidence"], rid
