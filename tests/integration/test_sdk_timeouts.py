"""The Node and Go SDK runners honour --read-timeout, not only --request-timeout: against a
target that accepts the connection and never answers, each gives up with its transport's
read-silence error (the request deadline, much longer, would end it with another error)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from opconform.client import ApiClient
from opconform.conformance import gosdk, sdk
from opconform.conformance.run import limits_of
from opconform.target import Target
from tests.support.hostile import serve

# What each runner's transport says when its read deadline (not the request's) ended the call:
# undici's headersTimeout as the Node SDK reports it, net/http's ResponseHeaderTimeout.
READ_TIMEOUT_ERRORS = {
    "node": "timed out waiting for response headers",
    "openai-go": "timeout awaiting response headers",
}


@pytest.fixture
def silent_target() -> Iterator[Target]:
    server = serve("silent")
    try:
        yield Target.from_values(
            {
                "base_url": f"http://127.0.0.1:{server.server_address[1]}/v1",
                "api_key": "op_sk_silent",
                "read_timeout": 1.0,
                "request_timeout": 30.0,
            }
        )
    finally:
        server.shutdown()
        server.server_close()


def _run(runner: str, api: ApiClient, target: Target) -> dict[str, Any]:
    if runner == "node":
        if sdk.node_available() is None:
            pytest.skip("the Node SDK needs node and `npm ci` in conformance/node")
        return sdk.run_node(api, target, "basic", key="main", model="m1")
    if shutil.which("go") is None:
        pytest.skip("no go toolchain on PATH")
    found = gosdk.binary()
    if isinstance(found, gosdk.Unavailable):
        pytest.skip(found.reason)
    return sdk.run_go(api, target, runner, "basic", key="main", model="m1")


@pytest.mark.parametrize("runner", sorted(READ_TIMEOUT_ERRORS))
def test_a_target_that_never_answers_is_bounded_by_the_read_timeout(
    runner: str, silent_target: Target
) -> None:
    api = ApiClient(silent_target.base_url, silent_target.keys, limits_of(silent_target))
    try:
        result = _run(runner, api, silent_target)
    finally:
        api.close()
    assert result.get("requests") == 1, result
    assert READ_TIMEOUT_ERRORS[runner] in str(result.get("error")), result
