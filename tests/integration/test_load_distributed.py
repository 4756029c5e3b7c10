"""`opconform load --master` / `--worker` across hosts made on this machine.

Four network namespaces this test makes itself: `hub` holds the reference gateway and routes
between the others, `m` the master, `w1` and `w2` one worker each, every one joined to the hub
by a veth pair on 10.200.x.0/24. Nothing leaves those namespaces (the host's own is untouched:
no address, no route, no forwarding there), and all of it is removed after the test, even on
failure. Where namespaces cannot be made (not root, no iproute2, a sandbox that refuses) the
test skips and says why.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opconform.config import variable
from opconform.gateway.embedded import printed_variable, serve_arguments
from opconform.gateway.options import PRINTED_LAST
from opconform.outcome import HARNESS, USAGE
from tests.conftest import ROOT, clean_env, opconform_cli

GATEWAY_ADDRESS = "10.200.0.1"  # on the hub's loopback: reached from every leaf via the hub
WINDOW = "5"  # the gateway's requests/min window (s), so a short run meets the limit
MASTER_PORT = "5557"
OPCONFORM = [sys.executable, "-m", "opconform"]


@dataclass
class Hosts:
    """The namespaces of one test, and every process started in them (for the cleanup)."""

    prefix: str
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    leaves: tuple[str, ...] = ("m", "w1", "w2")

    def name(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def address(self, leaf: str) -> str:
        return f"10.200.{self.leaves.index(leaf) + 1}.2"

    def start(self, role: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name(role), *argv],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return process


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _build(hosts: Hosts) -> None:
    hub = hosts.name("hub")
    _ip("netns", "add", hub)
    _ip("-n", hub, "link", "set", "lo", "up")
    _ip("-n", hub, "addr", "add", f"{GATEWAY_ADDRESS}/32", "dev", "lo")
    # Forwarding only inside the hub namespace (a per-namespace setting): leaves reach each
    # other through it, the host's own namespace never sees a packet.
    subprocess.run(
        ["ip", "netns", "exec", hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    for index, leaf in enumerate(hosts.leaves, start=1):
        name = hosts.name(leaf)
        _ip("netns", "add", name)
        _ip("-n", name, "link", "set", "lo", "up")
        # Both ends made inside their namespaces: no interface ever appears on the host.
        _ip(
            "link",
            "add",
            "hub0",
            "netns",
            name,
            "type",
            "veth",
            "peer",
            "name",
            f"to-{leaf}",
            "netns",
            hub,
        )
        _ip("-n", hub, "addr", "add", f"10.200.{index}.1/24", "dev", f"to-{leaf}")
        _ip("-n", hub, "link", "set", f"to-{leaf}", "up")
        _ip("-n", name, "addr", "add", f"{hosts.address(leaf)}/24", "dev", "hub0")
        _ip("-n", name, "link", "set", "hub0", "up")
        _ip("-n", name, "route", "add", "10.200.0.0/16", "via", f"10.200.{index}.1")


def _teardown(hosts: Hosts) -> None:
    for process in hosts.processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    for role in ("hub", *hosts.leaves):
        # Deleting a namespace removes its veth ends (and so their peers).
        subprocess.run(["ip", "netns", "del", hosts.name(role)], capture_output=True, timeout=30)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("separate hosts need iproute2's `ip` and util-linux's `unshare`")
    made = Hosts(prefix=f"opc{os.getpid() % 100000}")
    try:
        _build(made)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        _teardown(made)
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"cannot make network namespaces here: {str(detail).strip()}")
    try:
        yield made
    finally:
        _teardown(made)
    assert not {hosts_name for hosts_name in _namespaces() if hosts_name.startswith(made.prefix)}


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def _gateway(hosts: Hosts) -> dict[str, str]:
    """The reference gateway in the hub namespace; its OP_* variables, pointed at its address."""
    process = hosts.start(
        "hub",
        [
            *OPCONFORM,
            *serve_arguments(
                GATEWAY_ADDRESS,
                [
                    "--window-seconds",
                    WINDOW,
                    "--ttft-ms",
                    "5",
                    "--tpot-ms",
                    "1",
                    "--answer-tokens",
                    "8",
                ],
            ),
        ],
        clean_env({"PYTHONUNBUFFERED": "1"}),
    )
    found: dict[str, str] = {}
    timer = threading.Timer(60, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            name, value = printed_variable(line)
            found[name] = value
            if name == variable(PRINTED_LAST):
                break
    finally:
        timer.cancel()
    assert variable(PRINTED_LAST) in found, "the gateway did not start in its namespace"
    return found


def _load_args(hosts: Hosts, gateway: dict[str, str], report_dir: Path, *extra: str) -> list[str]:
    return [
        *OPCONFORM,
        "load",
        "steady",
        "--base-url",
        gateway[variable("base_url")],
        "--netns-target",
        hosts.name("hub"),
        "--window-seconds",
        WINDOW,
        "--users",
        "4",
        "--duration",
        "8s",
        "--max-tokens",
        "8",
        "--progress-seconds",
        "0",
        "--report-dir",
        str(report_dir),
        *extra,
    ]


def _finish(process: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def _single(
    hosts: Hosts, gateway: dict[str, str], env: dict[str, str], report_dir: Path, *extra: str
) -> dict[str, Any]:
    code, output = _finish(
        hosts.start("m", _load_args(hosts, gateway, report_dir, *extra), env), 180
    )
    document: dict[str, Any] = json.loads((report_dir / "load.json").read_text())
    document["_code"], document["_output"] = code, output
    return document


def _distributed(
    hosts: Hosts, gateway: dict[str, str], env: dict[str, str], report_dir: Path, *extra: str
) -> dict[str, Any]:
    master = hosts.start(
        "m",
        _load_args(
            hosts,
            gateway,
            report_dir,
            "--master",
            "--expect-workers",
            "2",
            "--master-port",
            MASTER_PORT,
            *extra,
        ),
        env,
    )
    # Each worker sees an empty folder where the master writes its run (settings.json among
    # it), as a worker on another machine would: its settings can only come from the master.
    report_dir.mkdir()
    hidden = f'mount -t tmpfs none {shlex.quote(str(report_dir))} && exec "$@"'
    workers = [
        hosts.start(
            leaf,
            [
                "unshare",
                "--mount",
                "sh",
                "-c",
                hidden,
                "sh",
                *OPCONFORM,
                "load",
                "steady",
                "--worker",
                "--master-host",
                hosts.address("m"),
                "--master-port",
                MASTER_PORT,
                "--duration",
                "8s",
            ],
            env,
        )
        for leaf in ("w1", "w2")
    ]
    code, output = _finish(master, 240)
    finished = [_finish(worker, 120) for worker in workers]
    assert [c for c, _ in finished] == [0, 0], [o[-2000:] for _, o in finished]
    document: dict[str, Any] = json.loads((report_dir / "load.json").read_text())
    stats = json.loads((report_dir / "locust.json").read_text())
    # Locust's own count of requests sent; its TTFT/ITL/TOKENS rows are our metrics.
    document["_sent"] = sum(e["num_requests"] for e in stats if e["method"] in ("GET", "POST"))
    document["_code"], document["_output"] = code, output
    return document


def _statuses(document: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["status"] for e in document["expectations"]}


def _limited(document: dict[str, Any]) -> int:
    samples = (Path(document["_dir"]) / "samples.jsonl").read_text().splitlines()
    return sum(1 for line in samples if json.loads(line)["status"] == 429)


@pytest.mark.slow
def test_master_and_two_workers_in_namespaces_judge_as_one_process(
    hosts: Hosts, tmp_path: Path
) -> None:
    gateway = _gateway(hosts)
    env = clean_env({"OP_API_KEY": gateway[variable("api_key")], "OP_PLAN": "free"})
    runs: dict[str, dict[str, Any]] = {}
    # Inside the limits (80% of 60 requests per 5 s window, over 4 users), then past them in
    # total while each worker alone stays under (20 req/s: 50 a window each, 100 together).
    for name, extra in (("inside", ()), ("over", ("--profile-option", "rate=20"))):
        for mode, run in (("single", _single), ("distributed", _distributed)):
            report_dir = tmp_path / f"{name}-{mode}"
            runs[f"{name}-{mode}"] = run(hosts, gateway, env, report_dir, *extra)
            runs[f"{name}-{mode}"]["_dir"] = str(report_dir)

    single, distributed = runs["inside-single"], runs["inside-distributed"]
    assert single["_code"] == 0, single["_output"][-3000:]
    assert distributed["_code"] == 0, distributed["_output"][-3000:]
    assert _statuses(distributed) == _statuses(single)
    assert distributed["settings"]["users"] == 4  # each worker paced its users on the total
    # Request counts add up: every request either worker sent reached the master's verdict.
    assert distributed["requests_recorded"] == distributed["_sent"] > 40
    ratio = distributed["requests_recorded"] / single["requests_recorded"]
    assert 0.6 < ratio < 1.4, (distributed["requests_recorded"], single["requests_recorded"])

    # The key's limit is judged over both workers' requests: neither worker alone exceeded it.
    for mode in ("single", "distributed"):
        over = runs[f"over-{mode}"]
        assert over["verdict"] == "fail", over["_output"][-3000:]
        assert _limited(over) > 0
        assert _statuses(over)["main key: no 429"] == "fail"
    assert _statuses(runs["over-distributed"]) == _statuses(runs["over-single"])
    assert runs["over-distributed"]["requests_recorded"] == runs["over-distributed"]["_sent"]


@pytest.mark.slow
def test_master_without_workers_stops_in_bounded_time(tmp_path: Path) -> None:
    result = opconform_cli(
        "load",
        "steady",
        "--master",
        "--expect-workers",
        "2",
        "--worker-wait",
        "3s",
        "--master-bind-host",
        "127.0.0.1",
        "--duration",
        "3s",
        "--report-dir",
        str(tmp_path),
        env=clean_env(),
        timeout=120,
    )
    assert result.returncode == HARNESS, result.stdout + result.stderr
    document = json.loads((tmp_path / "load.json").read_text())
    assert document["verdict"] == "inconclusive"
    assert "2 worker(s) connect within 3 s" in document["invalid_reasons"][0]


BAD_INPUT = [
    (["--master", "--worker", "--master-host", "127.0.0.1"], "exclude each other"),
    (["--worker"], "--worker needs --master-host"),
    (["--worker", "--master-host", "127.0.0.1"], "--worker needs the keys"),
    (["--master", "--processes", "2"], "give --processes to the workers"),
    (["--master", "--expect-workers", "0"], "--expect-workers must be positive"),
    (["--worker", "--master-host", "127.0.0.1", "--master-port", "70000"], "--master-port"),
    (
        ["--base-url", "http://10.200.250.1:9/v1", "--api-key", "x", "--netns-target", "opc-none"],
        "no such network namespace",
    ),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_distributed_input_is_one_clear_line(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    result = opconform_cli(
        "load", "steady", *argv, "--report-dir", str(tmp_path / "r"), env=clean_env()
    )
    assert result.returncode == USAGE, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
