"""The Go SDK checks (conformance/go, conformance/gosdk.py): they pass against the reference
gateway over HTTPS with the run's transport, fail on the faults aimed at them, are DISABLED
with the reason without go or its modules, and what each Go SDK does with a 429's Retry-After
(the facts the README states) holds."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opconform.config import variable
from opconform.conformance import gosdk
from opconform.gateway.embedded import EmbeddedGateway
from opconform.timeouts import Timeouts
from tests.conftest import SuiteRun, run_suite
from tests.support.proxy import RecordingProxy

GO_CHECKS = {
    "test_go_openai_lists_completes_streams",
    "test_go_openai_returns_typed_errors",
    "test_go_openai_returns_rate_limit_error",
    "test_openai_go_lists_completes_streams",
    "test_openai_go_returns_typed_errors",
    "test_openai_go_returns_rate_limit_error",
}
GO_FAULTS = (
    "go-openai-split-data-lines",
    "go-openai-error-message-object",
    "openai-go-events-not-separated",
    "openai-go-error-as-string",
)
needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="no go toolchain on PATH")


def _statuses(run: SuiteRun) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["status"], c["message"]) for c in run.results["checks"]}


@pytest.fixture(scope="module")
def runner() -> Path:
    if shutil.which("go") is None:
        pytest.skip("no go toolchain on PATH")
    found = gosdk.binary()
    if isinstance(found, gosdk.Unavailable):
        pytest.skip(found.reason)
    return found


@needs_go
@pytest.mark.slow
def test_go_checks_pass_over_https_with_the_runs_transport(
    runner: Path, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    """A CA bundle the system does not trust and an extra header reach the Go SDKs too."""
    with EmbeddedGateway(["--tls-cert", str(tls_files["server"])]) as gateway:
        run = run_suite(
            gateway.env,
            tmp_path / "run",
            "--area",
            "sdk",
            "--ca-bundle",
            str(tls_files["ca"]),
            "--header",
            "X-Opconform-Test: go",
        )
    statuses = _statuses(run)
    assert {name: statuses.get(name, ("missing", ""))[0] for name in GO_CHECKS} == dict.fromkeys(
        GO_CHECKS, "PASS"
    ), statuses
    assert run.code == 0, run.stdout[-2000:]


@needs_go
@pytest.mark.slow
def test_go_sdks_go_through_the_environment_proxy_with_the_extra_header(
    runner: Path, tmp_path: Path
) -> None:
    """A loopback target goes through HTTP_PROXY unless NO_PROXY names it, as for the suite
    (Go's own ProxyFromEnvironment would never proxy loopback)."""
    proxy = RecordingProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with EmbeddedGateway() as gateway:
            env = {**gateway.env, "HTTP_PROXY": proxy.url, "NO_PROXY": "", "no_proxy": ""}
            run = run_suite(
                env, tmp_path / "run", "--area", "sdk", "--header", "X-Opconform-Test: go"
            )
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert run.code == 0, run.stdout[-2000:]
    by_agent: dict[str, set[str | None]] = {}
    for _line, headers in proxy.seen:
        agent = headers.get("user-agent", "").split(" ")[0].split("/")[0]
        by_agent.setdefault(agent, set()).add(headers.get("x-opconform-test"))
    # go-openai sends Go's default User-Agent (Go-http-client/1.1), openai-go OpenAI/Go.
    assert by_agent.get("Go-http-client") == {"go"}, by_agent
    assert any(
        h.get("user-agent", "").startswith("OpenAI/Go") and h.get("x-opconform-test") == "go"
        for _, h in proxy.seen
    ), by_agent


@needs_go
@pytest.mark.slow
def test_go_faults_fail_the_go_checks_and_nothing_else(runner: Path, tmp_path: Path) -> None:
    faults = [arg for name in GO_FAULTS for arg in ("--fault", name)]
    with EmbeddedGateway(faults) as gateway:
        run = run_suite(gateway.env, tmp_path / "run", "--area", "sdk")
    statuses = _statuses(run)
    failed = {name for name, (status, _) in statuses.items() if status == "FAIL"}
    assert failed == GO_CHECKS, statuses
    assert {s for name, (s, _) in statuses.items() if name not in GO_CHECKS} == {"PASS"}
    assert run.code == 1


@pytest.mark.slow
def test_go_checks_are_disabled_without_go(tmp_path: Path) -> None:
    path = os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not (Path(folder) / "go").exists()
    )
    with EmbeddedGateway() as gateway:
        run = run_suite({**gateway.env, "PATH": path}, tmp_path / "run", "--area", "sdk")
    statuses = _statuses(run)
    assert {name for name in statuses if name in GO_CHECKS} == GO_CHECKS, statuses
    for name in GO_CHECKS:
        status, message = statuses[name]
        assert status == "DISABLED" and "go toolchain" in message, (name, status, message)
    # The other SDKs run as before, and a DISABLED check never fails the gate.
    assert {s for name, (s, _) in statuses.items() if name not in GO_CHECKS} == {"PASS"}
    assert run.code == 0, run.stdout[-2000:]


@needs_go
def test_go_checks_are_disabled_without_their_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No module cache and no proxy: the build is not attempted, the reason says why."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modules"))
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setattr(gosdk, "_built", {})
    found = gosdk.binary()
    assert isinstance(found, gosdk.Unavailable), found
    assert "modules could not be had" in found.reason and "GOPROXY=off" in found.reason, found


# ---------------------------------------------------------------------------- Retry-After
def _run(runner: Path, base_url: str, key: str, library: str, mode: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OP_SDK_BASE_URL": base_url,
        "OP_SDK_KEY": key,
        "OP_SDK_MODE": mode,
        "OP_SDK_LIBRARY": library,
        **Timeouts(request=20.0).to_runner_env(),
    }
    done = subprocess.run(
        [str(runner)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


class _Always429(http.server.BaseHTTPRequestHandler):
    retry_after = "1"
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        body = b'{"error": {"message": "slow down", "type": "rate_limit_error", "code": 429}}'
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", type(self).retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def always_429() -> Iterator[tuple[type[_Always429], str]]:
    handler = type("Handler", (_Always429,), {"requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@needs_go
@pytest.mark.parametrize(
    ("library", "retry_after", "requests"),
    [
        ("go-openai", "1", 1),  # go-openai never retries
        ("openai-go", "1", 3),  # two retries by default, each after Retry-After
        ("openai-go", "121", 1),  # a server-given wait over 120 s: no retry at all
    ],
)
def test_what_each_go_sdk_does_with_retry_after(
    runner: Path,
    always_429: tuple[type[_Always429], str],
    library: str,
    retry_after: str,
    requests: int,
) -> None:
    handler, base_url = always_429
    handler.retry_after = retry_after
    result = _run(runner, base_url, "op_sk_test_retry", library, "retry-429")
    assert handler.requests == result["requests"] == requests, result
    assert result["rate_limit"]["status"] == 429 == result["rate_limit"]["sdk_status"], result


@needs_go
@pytest.mark.slow
def test_openai_go_obeys_the_reference_gateways_retry_after(runner: Path) -> None:
    """Against the reference gateway (3 s windows), with the key over its limit, openai-go
    waits Retry-After and its retry succeeds."""
    with EmbeddedGateway(["--window-seconds", "3"]) as gateway:
        base_url, key = gateway.base_url, gateway.env[variable("alt_api_key")]
        for _attempt in range(3):
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
                for _ in range(200):
                    if client.get(f"{base_url}/models").status_code == 429:
                        break
                else:
                    pytest.fail("the alt key was never refused")
            retried = _run(runner, base_url, key, "openai-go", "retry-429")
            if retried["requests"] > 1:
                break
            # The window ended between the refusal and the SDK's first request: again.
    assert retried["requests"] == 2 and retried["rate_limit"]["type"] == "no error", retried
