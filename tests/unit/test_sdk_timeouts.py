"""Every client of a run takes --connect-timeout, --read-timeout and --request-timeout from the
one `Target.timeouts`: the suite's client and the Python SDK as an httpx.Timeout (and the
request deadline), the Node and Go SDK runners as the environment they are started with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opconform.client import ApiClient
from opconform.conformance import gosdk, sdk
from opconform.conformance.run import limits_of
from opconform.target import Target
from opconform.timeouts import RUNNER_VARIABLES, Timeouts

DEADLINES = Timeouts(connect=1.5, read=3.0, request=12.0)
IN_MILLISECONDS = {
    RUNNER_VARIABLES["connect"]: "1500",
    RUNNER_VARIABLES["read"]: "3000",
    RUNNER_VARIABLES["request"]: "12000",
}


@pytest.fixture
def target() -> Target:
    return Target.from_values(
        {
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": "op_sk_unit",
            "connect_timeout": DEADLINES.connect,
            "read_timeout": DEADLINES.read,
            "request_timeout": DEADLINES.request,
        }
    )


@pytest.fixture
def api(target: Target) -> Iterator[ApiClient]:
    client = ApiClient(target.base_url, target.keys, limits_of(target))
    yield client
    client.close()


def test_the_target_carries_the_three_and_the_suite_client_takes_them(
    target: Target, api: ApiClient
) -> None:
    assert target.timeouts == DEADLINES
    assert api.limits.timeouts is target.timeouts  # handed over, not copied
    timeout = api._http.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (1.5, 3.0, 1.5, 1.5)


def test_the_python_sdk_takes_the_three(target: Target, api: ApiClient) -> None:
    client = sdk.python_client(api, target, "main")
    try:
        expected = target.timeouts.to_httpx(sdk._sdk_httpx())
        assert client.timeout == expected and client._client.timeout == expected
        assert client._client.deadline == DEADLINES.request  # the whole request, streams too
    finally:
        client.close()


def _started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The environments SDK runners are started with (nothing is started)."""
    envs: list[dict[str, str]] = []

    def run(*args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        envs.append(args[4])
        return [{}]

    monkeypatch.setattr(sdk, "_run_sdk_process", run)
    monkeypatch.setattr(sdk, "node_available", lambda: "/opconform/node")
    monkeypatch.setattr(gosdk, "binary", lambda _deadline=None: Path("/opconform/sdkcheck"))
    return envs


def test_the_node_and_go_runners_are_started_with_the_three(
    target: Target, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = _started(monkeypatch)
    sdk.run_node(api, target, "basic", key="main", model="m1")
    sdk.run_go(api, target, "go-openai", "basic", key="main", model="m1")
    sdk.run_go(api, target, "openai-go", "errors", key="main", model="m1")
    assert len(envs) == 3
    for env in envs:
        assert {name: env.get(name) for name in IN_MILLISECONDS} == IN_MILLISECONDS


@pytest.mark.parametrize("runner", ["node/sdk_check.mjs", "go/main.go"])
def test_each_runner_reads_every_declared_deadline(runner: str) -> None:
    """The names are declared once (RUNNER_VARIABLES); the runners spell them in their own
    language, so a renamed or forgotten one shows here rather than as a default in a run."""
    source = (Path(sdk.__file__).parent / runner).read_text(encoding="utf-8")
    for name in RUNNER_VARIABLES.values():
        assert f'"{name}"' in source, name
    assert "OP_SDK_TIMEOUT_MS" not in source  # the old name, request only
