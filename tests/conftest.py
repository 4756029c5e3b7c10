"""Fixtures of the project's own tests: gateways with faults, and suite runs against them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from tests.support.hostile import HOSTILE_RUNS, start_hostile_runs

ROOT = Path(__file__).resolve().parent.parent
BYTECODE_CACHE = "PYTHONPYCACHEPREFIX"


NIGHTLY = "nightly"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Cases marked nightly (the full-suite mutation matrix, the interop runs against real
    limiters) run only when a -m expression names them (`make test-nightly`: -m nightly):
    `make test` and .ci/run leave them out."""
    if NIGHTLY in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="nightly: run with `make test-nightly`")
    for item in items:
        if item.get_closest_marker(NIGHTLY):
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The hostile-target runs (tests/integration/test_hostile.py) start now, in the background:
    each waits on a target's deadlines for up to a minute, which then overlaps the tests that run
    before them instead of adding to the session's wall time."""
    if session.config.option.collectonly:
        return
    session.config.stash[HOSTILE_RUNS] = start_hostile_runs(session.items)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{NIGHTLY}: the full-suite mutation matrix and the real limiters of the interop matrix "
        "(`make test-nightly`, not `make test`)",
    )
    _cache_bytecode(config)


def _cache_bytecode(config: pytest.Config) -> None:
    """With bytecode writing off (PYTHONDONTWRITEBYTECODE=1, as in this project's sandbox),
    every `opconform` child process these tests start (hundreds: gateways, suite runs) compiles
    each module it imports from source, and pytest rewrites the asserts of the suite and of
    hypothesis again: about 1 s of a one-requirement run's 2.7 s. The children cache their
    bytecode under a throwaway prefix instead, so nothing is written into the checkout or the
    venv and what they do is unchanged. This process keeps its own setting; a prefix the user
    chose is left alone."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get(BYTECODE_CACHE):
        return
    folder = tempfile.mkdtemp(prefix="opconform-test-bytecode-")
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    mp = pytest.MonkeyPatch()
    config.add_cleanup(mp.undo)
    mp.delenv("PYTHONDONTWRITEBYTECODE")
    mp.setenv(BYTECODE_CACHE, folder)


@dataclass
class SuiteRun:
    code: int
    stdout: str
    stderr: str
    report_dir: Path

    @property
    def results(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.report_dir / "results.json").read_text())
        return data

    def checks_for(self, requirement_id: str) -> list[dict[str, Any]]:
        return [c for c in self.results["checks"] if requirement_id in c["requirements"]]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This machine's environment without OP_* settings (a developer's own target must not leak
    into a test), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OP_")}
    env.update(extra or {})
    return env


def opconform_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """The `opconform` command as a user runs it (from `cwd`: where opconform.toml is read)."""
    return subprocess.run(
        [sys.executable, "-m", "opconform", *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def run_suite(
    gateway_env: dict[str, str], report_dir: Path, *args: str, timeout: float = 300
) -> SuiteRun:
    """`opconform run` against a running gateway."""
    done = opconform_cli(
        "run", "--report-dir", str(report_dir), "-q", *args, env=gateway_env, timeout=timeout
    )
    return SuiteRun(done.returncode, done.stdout, done.stderr, report_dir)


@pytest.fixture(scope="session")
def clean_gateway() -> Iterator[EmbeddedGateway]:
    with EmbeddedGateway() as gateway:
        yield gateway


@pytest.fixture
def fresh_gateway() -> Iterator[EmbeddedGateway]:
    """A gateway of its own, for tests that spend a key's limits."""
    with EmbeddedGateway() as gateway:
        yield gateway


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA (`ca`, for --ca-bundle) and a loopback server certificate with its key
    (`server`, for the gateway's --tls-cert), made with trustme."""
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": folder / "ca.pem", "server": folder / "server.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    return files
