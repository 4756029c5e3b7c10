"""The official SDKs as clients of the target: retries off, every request counted."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opconform.client import ApiClient
from opconform.conformance import expect, gosdk, prefetch
from opconform.conformance.skips import disabled
from opconform.redact import Redactor
from opconform.target import Target

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_SCRIPT = NODE_DIR / "sdk_check.mjs"


def python_client(api: ApiClient, target: Target, key: str) -> Any:
    """openai.OpenAI against the target the way the suite reaches it (TLS trust, client
    certificate, proxies from the environment, --header), with max_retries=0, the run's
    connect/read timeouts and a total deadline per request; requests count in api.sent."""
    import openai

    label = f"sdk-python:{key}"
    sending_for = prefetch.current()  # the hook runs on the SDK's own threads

    def count(_request: Any) -> None:
        api.count_sent(label, key)
        prefetch.count(sending_for, label)

    sdk_httpx = _sdk_httpx()
    transport = target.transport
    timeout = target.timeouts.to_httpx(sdk_httpx)
    http_client = _deadline_client_class()(
        deadline=target.timeouts.request,
        event_hooks={"request": [count]},
        verify=transport.ssl_context(),
        trust_env=transport.env_proxies,
        timeout=timeout,
    )
    return openai.OpenAI(
        base_url=target.base_url,
        api_key=api.secret(key),
        max_retries=0,
        timeout=timeout,
        http_client=http_client,
        default_headers=dict(transport.headers),
    )


def _sdk_httpx() -> Any:
    """The httpx the installed openai package is built on (recent versions use the httpx2
    fork): its Timeout and exceptions are the ones the SDK understands."""
    import openai

    base = openai.DefaultHttpxClient.__mro__[1]
    return sys.modules[base.__module__.split(".")[0]]


@functools.cache
def _deadline_client_class() -> Any:
    """openai's default http client with a total deadline per request. httpx only bounds each
    read, so a target that trickles a byte every few seconds (or streams forever) would hold an
    SDK call for as long as it likes; here `send` gives up at the deadline (the worker thread
    is abandoned, as the suite's own client does) and a streamed body stops at it too."""
    import openai

    sdk_httpx = _sdk_httpx()

    class DeadlineClient(openai.DefaultHttpxClient):
        def __init__(self, *, deadline: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.deadline = deadline

        def send(self, request: Any, **kwargs: Any) -> Any:
            send = super().send
            ends_at = time.monotonic() + self.deadline
            outcome: dict[str, Any] = {}
            done = threading.Event()

            def work() -> None:
                try:
                    outcome["response"] = send(request, **kwargs)
                except BaseException as exc:  # handed to the caller below
                    outcome["error"] = exc
                finally:
                    done.set()

            threading.Thread(target=work, daemon=True).start()
            if not done.wait(self.deadline):
                raise sdk_httpx.ReadTimeout(
                    f"no answer within the {self.deadline:g}s deadline (--request-timeout)",
                    request=request,
                )
            if "error" in outcome:
                raise outcome["error"]
            response = outcome["response"]
            if kwargs.get("stream"):
                response.stream = DeadlineStream(response.stream, ends_at, request)
            return response

    class DeadlineStream(sdk_httpx.SyncByteStream):  # type: ignore[name-defined]
        """A streamed body that raises ReadTimeout once the request's deadline passed (each
        read is still bounded by the read timeout). A SyncByteStream, as httpx insists."""

        def __init__(self, inner: Any, ends_at: float, request: Any) -> None:
            self._inner, self._ends_at, self._request = inner, ends_at, request

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                if time.monotonic() > self._ends_at:
                    self.close()
                    raise sdk_httpx.ReadTimeout(
                        "the stream did not end before the deadline (--request-timeout)",
                        request=self._request,
                    )
                yield chunk

        def close(self) -> None:
            self._inner.close()

    return DeadlineClient


def raised(call: Any) -> str:
    """The class name of the SDK exception `call` raises ("no error" if none): a wrong class
    is the check's failure, not a harness error."""
    import openai

    try:
        call()
    except openai.OpenAIError as exc:
        return type(exc).__name__
    return "no error"


def node_available() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    modules = NODE_DIR / "node_modules"
    if not (modules / "openai").is_dir() or not (modules / "undici").is_dir():
        return None
    return node


def run_node(
    api: ApiClient,
    target: Target,
    mode: str,
    *,
    key: str,
    model: str = "",
    restricted_model: str = "",
) -> dict[str, Any]:
    """Run the Node SDK script; keys go through the environment, never the command line."""
    node = node_available()
    if node is None:
        disabled("the Node SDK needs node and `npm ci` in conformance/node (make setup does it)")
    env = runner_env(api, target, mode, key=key, model=model, restricted_model=restricted_model)
    return _run_sdk_process(api, target, "node", [node, str(NODE_SCRIPT)], env, key=key)[-1]


def run_go(
    api: ApiClient,
    target: Target,
    library: str,
    mode: str,
    *,
    key: str,
    model: str = "",
    restricted_model: str = "",
) -> dict[str, Any]:
    """Run one Go SDK (`library`: go-openai or openai-go) through the Go runner, built once per
    run; DISABLED when there is no Go toolchain or its modules cannot be had."""
    binary = gosdk.binary(api.breaker.remaining())
    if isinstance(binary, gosdk.Unavailable):
        disabled(binary.reason)
    env = runner_env(api, target, mode, key=key, model=model, restricted_model=restricted_model)
    env["OP_SDK_LIBRARY"] = library
    return _run_sdk_process(api, target, library, [str(binary)], env, key=key)[-1]


# What each step of the Go runner's basic scenario stands on: a step that fails because the wire
# answer already breaks one of these is blocked by it. go-openai reads a stream line by line
# (OP-COMPAT-003/004/005 are its rules), openai-go as the Python SDK does.
GO_STEPS: dict[str | None, tuple[str, ...]] = {
    "list models": ("OP-MODELS-001",),
    "chat completion": ("OP-CHAT-007", "OP-CHAT-001"),
    "stream": (
        "OP-STREAM-001",
        "OP-STREAM-002",
        "OP-STREAM-007",
        "OP-COMPAT-001",
        "OP-COMPAT-002",
        "OP-COMPAT-003",
        "OP-COMPAT-004",
        "OP-COMPAT-005",
    ),
}


def go_typed_error(
    library: str, case: str, seen: dict[str, Any], status: int, wire_requirement: str
) -> None:
    """A Go SDK met an error answer (`seen`, from the runner): with `status` on the wire it must
    return its typed API error carrying that status and the error's message. Another status on
    the wire is `wire_requirement`'s deviation; a body the SDK could not read, OP-ERR-001's (a
    401's, OP-AUTH-007's); a call the SDK refused before sending anything says nothing about
    the target (INCONCLUSIVE)."""
    if seen.get("sent") is False:
        pytest.skip(sdk_refused(library, case, str(seen.get("message", ""))))
    if seen.get("status") != status:
        raise expect.Deviation(
            f"{library}, {case}: the answer was {seen.get('status') or 'none'}, not {status} "
            f"({seen.get('type')}: {str(seen.get('message', ''))[:160]})",
            wire_requirement,
        )
    expected = gosdk.TYPED_ERRORS[library]
    if not (
        seen.get("type") == expected and seen.get("sdk_status") == status and seen.get("message")
    ):
        raise expect.Deviation(
            f"{library} on a {status} ({case}) returned {seen.get('type')} (status "
            f"{seen.get('sdk_status')}, message {seen.get('message', '')[:160]!r}), not {expected} "
            "with the status and the error's message",
            # A 401's body is documented on its own (OP-AUTH-007); other error bodies, OP-ERR-001.
            "OP-AUTH-007" if status == 401 else "OP-ERR-001",
        )


def sdk_refused(library: str, step: str, message: str) -> str:
    return (
        f"{library} refused {step} before sending anything ({message[:160]}): no evidence about "
        "the target (go-openai refuses max_tokens for reasoning models: choose another with "
        "--models)"
    )


def runner_env(
    api: ApiClient, target: Target, mode: str, *, key: str, model: str, restricted_model: str
) -> dict[str, str]:
    """What an SDK runner process reads (conformance/node/sdk_check.mjs, conformance/go)."""
    request = expect.chat_request(model)
    return {
        **os.environ,
        "OP_SDK_BASE_URL": target.base_url,
        "OP_SDK_KEY": api.secret(key),
        "OP_SDK_MODEL": model,
        "OP_SDK_PROMPT": request["messages"][0]["content"],
        "OP_SDK_MAX_TOKENS": str(request["max_tokens"]),
        "OP_SDK_RESTRICTED_MODEL": restricted_model,
        "OP_SDK_RESTRICTED_KEY": api.keys.get("restricted") or "",
        "OP_SDK_MODE": mode,
        # Connect, read and request deadlines; what each SDK makes of them is in its runner.
        **target.timeouts.to_runner_env(),
        # TLS (extra CAs, client certificate, --insecure), proxies and --header.
        **target.transport.node_env(),
        "OP_SDK_CA_BUNDLE": target.transport.ca_bundle or "",
    }


def _run_sdk_process(
    api: ApiClient, target: Target, sdk: str, command: list[str], env: dict[str, str], *, key: str
) -> list[dict[str, Any]]:
    """Run an SDK runner and read its JSON lines (keys redacted); every request it reports is
    counted in api.sent under sdk-<name>:<key>."""
    # A runner makes up to three requests, each with the SDK's own timeout; a stream's body is
    # not covered by every SDK's, so the process is killed at this deadline whatever it is doing
    # (subprocess.run kills the child when the timeout expires).
    deadline = target.timeouts.request * 3
    run_left = api.breaker.remaining()  # never past the run's --deadline
    if run_left is not None:
        deadline = max(1.0, min(deadline, run_left))
    label = f"sdk-{sdk}:{key}"
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=deadline, check=False
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the {sdk} SDK did not finish in {deadline:g}s; killed") from None
    redactor = Redactor([*api.keys.values(), *target.secrets()])
    api.count_sent(label, key, 0)
    results = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            results.append(_redacted(json.loads(line), redactor))
    if not results:
        raise RuntimeError(
            f"the {sdk} SDK runner printed no result (exit {done.returncode}): "
            f"{redactor.text(done.stderr[-500:])}"
        )
    sent = sum(int(r.get("requests", 0)) for r in results)
    api.count_sent(label, key, sent)
    prefetch.count(prefetch.current(), label, sent)
    return results


def _redacted(value: Any, redactor: Redactor) -> Any:
    """A runner's result with every string redacted (an error message may echo a key)."""
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, dict):
        return {k: _redacted(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redactor) for v in value]
    return value
