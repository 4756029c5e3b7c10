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

from conformance.plugin import disabled
from opconform.client import ApiClient
from opconform.config import Target
from opconform.redact import Redactor

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_SCRIPT = NODE_DIR / "sdk_check.mjs"


def python_client(api: ApiClient, target: Target, key: str) -> Any:
    """openai.OpenAI against the target the way the suite reaches it (TLS trust, client
    certificate, proxies from the environment, --header), with max_retries=0, the run's
    connect/read timeouts and a total deadline per request; requests count in api.sent."""
    import openai

    label = f"sdk-python:{key}"

    def count(_request: Any) -> None:
        api.count_sent(label, key)

    sdk_httpx = _sdk_httpx()
    transport = target.transport
    timeout = sdk_httpx.Timeout(
        connect=target.connect_timeout,
        read=min(target.read_timeout, target.request_timeout),
        write=target.connect_timeout,
        pool=target.connect_timeout,
    )
    http_client = _deadline_client_class()(
        deadline=target.request_timeout,
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
    env = {
        **os.environ,
        "OP_SDK_BASE_URL": target.base_url,
        "OP_SDK_KEY": api.secret(key),
        "OP_SDK_MODEL": model,
        "OP_SDK_RESTRICTED_MODEL": restricted_model,
        "OP_SDK_RESTRICTED_KEY": api.keys.get("restricted") or "",
        "OP_SDK_MODE": mode,
        "OP_SDK_TIMEOUT_MS": str(int(target.request_timeout * 1000)),
        # TLS (NODE_EXTRA_CA_CERTS, client certificate, --insecure), proxies and --header.
        **target.transport.node_env(),
    }
    # The script makes up to three requests, each with the SDK's own timeout; a stream's body
    # is not covered by it, so the process is killed at this deadline whatever it is doing
    # (subprocess.run kills the child when the timeout expires).
    deadline = target.request_timeout * 3
    run_left = api.breaker.remaining()  # never past the run's --deadline
    if run_left is not None:
        deadline = max(1.0, min(deadline, run_left))
    try:
        done = subprocess.run(
            [str(node), str(NODE_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=deadline,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the Node SDK did not finish in {deadline:g}s; killed") from None
    api.count_sent(f"sdk-node:{key}", key, 0)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"the Node SDK script printed no result (exit {done.returncode}): "
            f"{Redactor([*api.keys.values(), *target.secrets()]).text(done.stderr[-500:])}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    api.count_sent(f"sdk-node:{key}", key, int(result.get("requests", 0)))
    return result
