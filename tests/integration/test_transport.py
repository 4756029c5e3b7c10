"""TLS, proxies and extra headers (opconform/transport.py) for the suite and both SDK checks.

The HTTPS tests serve the reference gateway with a throwaway CA made here (trustme); the proxy
test puts a recording forward proxy (tests/support/proxy.py) in HTTP_PROXY and checks that every
request of a whole run, the SDK checks' included, went through it carrying --header.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.support.proxy import RecordingProxy

ROOT = Path(__file__).resolve().parent.parent.parent
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without OP_* settings or proxies, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OP_") and name.lower() not in PROXY_VARIABLES
    }
    env.pop("SSL_CERT_FILE", None)
    return {**env, **(extra or {})}


def _opconform(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "opconform", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env if env is not None else _env(),
        timeout=timeout,
        check=False,
    )


def _results(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "notaurl"], "--base-url must be an http(s) URL"),
        (["--ca-bundle", "missing.pem"], "--ca-bundle missing.pem: no such file"),
        (["--header", "no colon here"], "--header: expected 'Name: value'"),
        (["--client-cert", "pyproject.toml"], "--client-cert pyproject.toml: cannot load"),
    ],
)
def test_usage_error_leaves_nothing_behind(tmp_path: Path, args: list[str], message: str) -> None:
    report_dir = tmp_path / "run"
    done = _opconform("run", "--api-key", "op_sk_x", "--report-dir", str(report_dir), *args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "", "pytest printed before the usage error"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not report_dir.exists(), "a usage error left a run folder behind"


# ---------------------------------------------------------------------------- HTTPS
@pytest.fixture(scope="module")
def https_gateway(tls_files: dict[str, Path]) -> Iterator[EmbeddedGateway]:
    with EmbeddedGateway(["--tls-cert", str(tls_files["server"])]) as gateway:
        assert gateway.base_url.startswith("https://"), gateway.base_url
        yield gateway


@pytest.mark.slow
def test_https_with_ca_bundle_is_conformant_with_every_area(
    https_gateway: EmbeddedGateway, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    report_dir = tmp_path / "run"
    done = _opconform(
        "run",
        "-q",
        "--ca-bundle",
        str(tls_files["ca"]),
        "--report-dir",
        str(report_dir),
        # Generous thresholds: the perf area is judged (not just measured) over HTTPS too.
        "--latency-slo",
        "ttfb_p95=10s,completion_p95=10s,ttft_p95=10s",
        env=_env(https_gateway.env),
    )
    results = _results(report_dir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert results["verdict"] == "conformant"
    from opconform.conformance.catalogue import areas

    ran = {check["area"] for check in results["checks"] if check["status"] == "PASS"}
    assert ran >= set(areas()), f"areas that did not run: {set(areas()) - ran}"
    sdk = {c["name"]: c["status"] for c in results["checks"] if c["area"] == "sdk"}
    assert sdk and set(sdk.values()) == {"PASS"}, sdk


@pytest.mark.slow
def test_https_without_the_ca_is_exit_3_and_no_fail(
    https_gateway: EmbeddedGateway, tmp_path: Path
) -> None:
    report_dir = tmp_path / "run"
    done = _opconform("run", "-q", "--report-dir", str(report_dir), env=_env(https_gateway.env))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    if (report_dir / "results.json").is_file():
        statuses = {check["status"] for check in _results(report_dir)["checks"]}
        assert "FAIL" not in statuses, statuses


# ---------------------------------------------------------------------------- proxy + headers


@pytest.fixture
def recording_proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


@pytest.mark.slow
def test_header_reaches_every_request_through_the_environment_proxy(
    recording_proxy: RecordingProxy, tmp_path: Path
) -> None:
    report_dir = tmp_path / "run"
    with EmbeddedGateway() as gateway:
        env = _env({**gateway.env, "HTTP_PROXY": recording_proxy.url})
        done = _opconform(
            "run",
            "-q",
            "--header",
            "X-Opconform-Test: v",
            "--secret-header",
            "X-Proxy-Ticket: ticket-0123456789",
            "--report-dir",
            str(report_dir),
            env=env,
        )
    results = _results(report_dir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    seen = recording_proxy.seen
    sent = sum(results["requests_sent"].values())
    # Every request went through the proxy (held streams and SDK requests included).
    assert len(seen) >= sent > 100, (len(seen), results["requests_sent"])
    missing = [line for line, headers in seen if headers.get("x-opconform-test") != "v"]
    assert not missing, f"{len(missing)} requests without --header, e.g. {missing[:3]}"
    assert all(h.get("x-proxy-ticket") == "ticket-0123456789" for _, h in seen)
    agents = {headers.get("user-agent", "").split("/")[0] for _, headers in seen}
    assert {"opconform", "OpenAI"} <= agents, agents  # the suite's client and the Python SDK
    assert any(h.get("x-stainless-lang") == "js" for _, h in seen), "no Node SDK request"
    # The secret header's value is redacted wherever the run wrote it down.
    for path in report_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".xml", ".md", ".html", ".txt"):
            assert "ticket-0123456789" not in path.read_text(errors="replace"), path
