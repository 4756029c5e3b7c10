"""The reference gateway's answers under a fault (gateway/app.py), in-process through
Starlette's TestClient: these faults are about answers, not the transport."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from opconform.gateway.app import create_app
from opconform.gateway.faults import Faults
from opconform.gateway.settings import default_config
from tests.support.bodies import ask


# An app of its own per test: the faults that strike every fifth time count from zero.
def _in_process(*faults: str, **options: Any) -> TestClient:
    config = replace(default_config(), faults=frozenset(faults), **options)
    return TestClient(create_app(config), headers={"authorization": "Bearer op_sk_test_pro"})


def _events(text: str) -> list[Any]:
    return [
        line[6:] if line == "data: [DONE]" else json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


@pytest.mark.parametrize(
    "broken",
    [
        {"temperature": 5},
        {"messages": None},
        {"messages": []},
        {"max_tokens": 0},
        {"model": 7},
        {"messages": "hello"},
    ],
    ids=["temperature", "no-messages", "empty-messages", "max-tokens-0", "model-type", "types"],
)
def test_stream_invalid_body_accepted(broken: dict[str, Any]) -> None:
    body = {k: v for k, v in {**ask(stream=True), **broken}.items() if v is not None}
    with _in_process(Faults.STREAM_INVALID_BODY_ACCEPTED) as faulty:
        streamed = faulty.post("/v1/chat/completions", json=body)
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert _events(streamed.text)[-1] == "[DONE]"
        plain = faulty.post("/v1/chat/completions", json={**body, "stream": False})
        assert plain.status_code == 400
    with _in_process() as clean:
        assert clean.post("/v1/chat/completions", json=body).status_code == 400


def test_model_list_faults() -> None:
    with _in_process(Faults.MODELS_SINGLE_PROVIDER) as client:
        data = client.get("/v1/models").json()["data"]
        assert len(data) == 51 and {m["owned_by"] for m in data} == {"openai"}
    with _in_process(Faults.MODELS_TOO_FEW) as client:
        data = client.get("/v1/models").json()["data"]
        assert len(data) == 20 and len({m["owned_by"] for m in data}) == 9
        assert len({m["id"] for m in data}) == 20


def test_stream_role_missing_every_fifth_stream() -> None:
    with _in_process(Faults.STREAM_ROLE_MISSING_SOMETIMES) as client:
        roles = [
            "role"
            in _events(client.post("/v1/chat/completions", json=ask(stream=True)).text)[0][
                "choices"
            ][0]["delta"]
            for _ in range(10)
        ]
    assert roles == [True] * 4 + [False] + [True] * 4 + [False]


def test_usage_over_max_tokens_every_fifth_completion() -> None:
    plain = ask("Count from 1 to 20", max_tokens=3)
    streamed = {**plain, "stream": True, "stream_options": {"include_usage": True}}
    usages = []
    with _in_process(Faults.USAGE_OVER_MAX_TOKENS_SOMETIMES) as client:
        for n in range(10):
            if n % 2:
                usages.append(client.post("/v1/chat/completions", json=plain).json()["usage"])
            else:
                events = _events(client.post("/v1/chat/completions", json=streamed).text)
                usages.append(events[-2]["usage"])
    assert [u["completion_tokens"] for u in usages] == [3] * 4 + [4] + [3] * 4 + [4]
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] for u in usages)
