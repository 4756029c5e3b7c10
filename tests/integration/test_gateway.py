"""The reference gateway on its own: what issue #2 promises beyond what the suite checks."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from opconform.gateway.embedded import EmbeddedGateway
from opconform.gateway.faults import FAULTS
from tests.conftest import opconform_cli
from tests.support.bodies import ask


def _client(gateway: EmbeddedGateway, key: str = "OP_PRO_API_KEY") -> httpx.Client:
    return httpx.Client(
        base_url=gateway.base_url,
        trust_env=False,
        timeout=10,
        headers={"authorization": f"Bearer {gateway.env[key]}"},
    )


def test_print_env_names_every_identity(clean_gateway: EmbeddedGateway) -> None:
    env = clean_gateway.env
    for name in (
        "OP_BASE_URL",
        "OP_API_KEY",
        "OP_PLAN",
        "OP_ALT_API_KEY",
        "OP_PRO_API_KEY",
        "OP_ENTERPRISE_API_KEY",
        "OP_RESTRICTED_API_KEY",
        "OP_RESTRICTED_MODEL",
    ):
        assert env.get(name), name
    assert env["OP_BASE_URL"].startswith("http://127.0.0.1:")
    assert all("test" in env[k] for k in env if k.endswith("_API_KEY"))
    assert env["OP_PLAN"] == "free"


def test_catalogue_is_realistic(clean_gateway: EmbeddedGateway) -> None:
    with _client(clean_gateway) as client:
        data = client.get("/models").json()["data"]
        assert len(data) >= 50 and len({m["owned_by"] for m in data}) == 9
        assert client.get("/models/claude-sonnet-4").json()["owned_by"] == "anthropic"


def test_same_request_same_text_and_usage_adds_up(clean_gateway: EmbeddedGateway) -> None:
    with _client(clean_gateway) as client:
        first = client.post("/chat/completions", json=ask()).json()
        second = client.post("/chat/completions", json=ask()).json()
        assert first["choices"][0]["message"] == second["choices"][0]["message"]
        usage = first["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        cut = client.post("/chat/completions", json=ask("Count from 1 to 99", max_tokens=3))
        assert cut.json()["choices"][0]["finish_reason"] == "length"
        assert cut.json()["usage"]["completion_tokens"] == 3


def test_special_models(clean_gateway: EmbeddedGateway) -> None:
    with _client(clean_gateway) as client:
        upstream = client.post(
            "/chat/completions", json={**ask(), "model": "op-test-upstream-error"}
        )
        assert upstream.status_code == 502 and "not billed" in upstream.json()["error"]["message"]
        unavailable = client.post(
            "/chat/completions", json={**ask(), "model": "op-test-unavailable"}
        )
        assert unavailable.status_code == 503 and unavailable.headers["retry-after"].isdigit()
        listed = {m["id"] for m in client.get("/models").json()["data"]}
        assert not {"op-test-upstream-error", "op-test-unavailable"} & listed


def test_latency_model_is_ground_truth() -> None:
    with (
        EmbeddedGateway(["--ttft-ms", "80", "--tpot-ms", "10"]) as gateway,
        _client(gateway) as client,
    ):
        body = ask("Count from 1 to 20", stream=True)
        arrivals = []
        start = time.perf_counter()
        with client.stream("POST", "/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if (
                    line.startswith("data: ")
                    and '"content":"' in line
                    and '"content":""' not in line
                ):
                    arrivals.append(time.perf_counter() - start)
        gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
        assert len(arrivals) == 20
        # Lower bounds are the model's (a gateway that ignored it would answer in ~1 ms); the
        # upper ones only catch a model off by an order of magnitude, as a shared machine's
        # scheduling delays add to both.
        assert 0.07 < arrivals[0] < 0.8, arrivals[0]
        assert 0.006 < gaps[len(gaps) // 2] < 0.1, gaps


def test_every_response_carries_rate_headers(fresh_gateway: EmbeddedGateway) -> None:
    with _client(fresh_gateway, "OP_API_KEY") as client:
        answers = [
            client.get("/models"),
            client.post("/chat/completions", content=b"{"),
            client.get("/nowhere"),
            client.delete("/models"),
            client.post("/chat/completions", json=ask(stream=True)),
            httpx.get(fresh_gateway.base_url + "/models", trust_env=False),
        ]
        for answer in answers:
            assert answer.headers.get("x-ratelimit-limit") == "60", answer
            assert answer.headers["x-ratelimit-remaining"].isdigit()
            assert int(answer.headers["x-ratelimit-reset"]) > time.time()


def test_requests_per_minute_exact_and_per_key(fresh_gateway: EmbeddedGateway) -> None:
    with (
        _client(fresh_gateway, "OP_API_KEY") as main,
        _client(fresh_gateway, "OP_ALT_API_KEY") as alt,
    ):
        statuses = [main.get("/models").status_code for _ in range(61)]
        assert statuses[:60] == [200] * 60 and statuses[60] == 429
        refused = main.get("/models")
        retry_after = int(refused.headers["retry-after"])
        reset = int(refused.headers["x-ratelimit-reset"])
        assert 1 <= retry_after <= 60 and time.time() + retry_after >= reset - 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert alt.get("/models").status_code == 200


def test_stream_holds_its_slot_until_it_ends(fresh_gateway: EmbeddedGateway) -> None:
    with _client(fresh_gateway, "OP_API_KEY") as client:
        streams = [
            client.stream(
                "POST",
                "/chat/completions",
                json=ask("Count from 1 to 20000", stream=True, max_tokens=8000),
            )
            for _ in range(5)
        ]
        opened = [s.__enter__() for s in streams]
        try:
            assert all(r.status_code == 200 for r in opened)
            assert client.post("/chat/completions", json=ask(max_tokens=2)).status_code == 429
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if client.post("/chat/completions", json=ask(max_tokens=2)).status_code == 200:
                break
            time.sleep(0.1)
        else:
            pytest.fail("slots were not freed after the clients disconnected")


def test_official_python_sdk(clean_gateway: EmbeddedGateway) -> None:
    import openai

    client = openai.OpenAI(
        base_url=clean_gateway.base_url, api_key=clean_gateway.env["OP_PRO_API_KEY"], max_retries=0
    )
    assert "claude-sonnet-4" in [m.id for m in client.models.list()]
    completion = client.chat.completions.create(
        model="claude-sonnet-4",
        messages=[{"role": "user", "content": "Explain quantum computing."}],
    )
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="claude-sonnet-4",
            stream=True,
            messages=[{"role": "user", "content": "Explain quantum computing."}],
        )
        if chunk.choices
    )
    assert streamed == completion.choices[0].message.content


def test_list_faults_and_bad_fault() -> None:
    listed = opconform_cli("serve", "--list-faults").stdout
    assert len(listed.splitlines()) == len(FAULTS) >= 30
    bad = opconform_cli("serve", "--fault", "nope")
    assert bad.returncode == 2 and "unknown fault" in bad.stderr
    assert "Traceback" not in bad.stderr


def _stream_with_arrivals(client: httpx.Client, body: dict[str, Any]) -> list[tuple[float, str]]:
    """(time.time() on arrival, data) of every event of one stream, read line by line."""
    arrivals = []
    with client.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.time(), line[6:]))
    return arrivals


def test_timing_log(tmp_path: Path) -> None:
    log = tmp_path / "timing.jsonl"
    body = ask(
        "Count from 1 to 10", stream=True, stream_options={"include_usage": True}, max_tokens=50
    )
    with (
        EmbeddedGateway(
            ["--timing-log", str(log), "--ttft-ms", "40", "--tpot-ms", "10"]
        ) as gateway,
        _client(gateway) as client,
    ):
        arrivals = _stream_with_arrivals(client, body)
        client.post("/chat/completions", json=ask())  # not a stream: not logged
        # Flushed when the stream ended, before the gateway stops.
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        _stream_with_arrivals(client, body)
    stream_id = json.loads(arrivals[0][1])["id"]
    assert [line["id"] for line in lines] == [stream_id] * len(arrivals)
    assert [line["seq"] for line in lines] == list(range(len(arrivals)))
    # role, 10 numbers, finish_reason, usage, [DONE]
    assert [line["content"] for line in lines] == [False] + [True] * 10 + [False] * 3
    assert [line["done"] for line in lines] == [False] * 13 + [True]
    for line, (arrived, _) in zip(lines, arrivals, strict=True):
        assert line["t"] <= arrived + 0.005 and arrived - line["t"] < 0.1, (line, arrived)
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(lines[1:11])]
    assert 0.005 < sorted(gaps)[len(gaps) // 2] < 0.02, gaps
    # The second stream was flushed when the gateway stopped, at the latest.
    assert len(log.read_text().splitlines()) == 2 * len(arrivals)


def test_answer_tokens_short_and_fast() -> None:
    args = ["--answer-tokens", "3", "--ttft-ms", "0", "--tpot-ms", "0"]
    with EmbeddedGateway(args) as gateway, _client(gateway) as client:
        start = time.perf_counter()
        answer = client.post("/chat/completions", json=ask("Count from 1 to 500")).json()
        assert answer["choices"][0]["message"]["content"] == "1\n2\n3"
        assert answer["choices"][0]["finish_reason"] == "stop"
        assert answer["usage"]["completion_tokens"] == 3
        long_prompt = ask("Explain quantum computing in detail. " * 20, stream=True)
        events = [data for _, data in _stream_with_arrivals(client, long_prompt)]
        content = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[1:-2]]
        assert len(content) == 3 and all(content)
        cut = client.post("/chat/completions", json=ask("Count from 1 to 9", max_tokens=2))
        assert cut.json()["choices"][0]["finish_reason"] == "length"
        assert time.perf_counter() - start < 2
    bad = opconform_cli("serve", "--answer-tokens", "0")
    assert bad.returncode == 2 and "--answer-tokens" in bad.stderr
