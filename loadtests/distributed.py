"""`opconform load PROFILE --master` / `--worker`: Locust's own distributed mode, bounded.

The master judges: it holds the settings document and passes it inline to its workers (Locust
forwards a master's custom options when the run starts), so a worker on another host needs
only the profile, its keys and its transport settings. Samples reach the master with each
worker's stats report (loadtests/state.py), so request counts add up and per-key limits are
judged over every worker's requests, not per worker. The workers follow the master's host,
users and run time; the master's target check (loopback, --netns-target or
--allow-remote-target) covers them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opconform.contract import KEY_VARIABLES
from opconform.exitcodes import UsageError
from opconform.outcome import HARNESS

# A worker gives up on a master it cannot reach after Locust's own connect retries (5 s x 60);
# a worker that lost its master after its heartbeat timeout (60 s). Past either, it is killed.
WORKER_CONNECT_SECONDS = 300.0


def check_roles(options: Mapping[str, Any], profile: str) -> None:
    """Bad combinations of the distributed options are usage errors, before anything starts."""
    if options["master"] and options["worker"]:
        raise UsageError("--master and --worker exclude each other")
    if options["worker"] and not options["master_host"]:
        raise UsageError("--worker needs --master-host (the master's address)")
    if options["master"] and options["expect_workers"] < 1:
        raise UsageError("--expect-workers must be positive")
    if options["master"] and options["processes"] > 1:
        raise UsageError("--master sends nothing itself: give --processes to the workers")
    if not 0 < options["master_port"] < 65536:
        raise UsageError("--master-port must be a TCP port (1-65535)")


def master_arguments(options: Mapping[str, Any], document: Mapping[str, Any]) -> list[str]:
    """Locust's master flags, and the settings document inline for the workers."""
    return [
        "--master",
        "--expect-workers",
        str(options["expect_workers"]),
        "--expect-workers-max-wait",
        f"{options['worker_wait']:g}",
        "--master-bind-host",
        str(options["master_bind_host"]),
        "--master-bind-port",
        str(options["master_port"]),
        "--op-settings-json",
        json.dumps(document, separators=(",", ":")),
    ]


def master_failure(options: Mapping[str, Any], code: int) -> str:
    """Why a master wrote no verdict: most often its workers never came."""
    return (
        f"Locust (master) exited {code} without a verdict: did {options['expect_workers']} "
        f"worker(s) connect within {options['worker_wait']:g} s?"
    )


def run_worker(
    profile_file: Path, options: Mapping[str, Any], env: dict[str, str], duration_s: float
) -> int:
    """A Locust worker of a master elsewhere: it sends what the master dispatches and stops
    when the master says so. Bounded: connecting, the run (its own --duration) and a grace."""
    if not env.get(KEY_VARIABLES["main"]):
        raise UsageError(
            f"--worker needs the keys it sends with: --api-key ({KEY_VARIABLES['main']})"
        )
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(profile_file),
        "--worker",
        "--master-host",
        str(options["master_host"]),
        "--master-port",
        str(options["master_port"]),
        "--loglevel",
        "WARNING",
    ]
    if options["processes"] > 1:
        command += ["--processes", str(options["processes"])]
    bound = WORKER_CONNECT_SECONDS + duration_s + 60.0
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        code = process.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"opconform load: worker still running after {bound:g} s; killed", file=sys.stderr)
        return HARNESS
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    print(f"opconform load: worker done; exit {code} (the master has the verdict)")
    return code


def netns_addresses(name: str) -> set[str]:
    """The addresses of a named network namespace (`ip netns`), as `ip -j addr` lists them."""
    ip = shutil.which("ip")
    if ip is None:
        raise UsageError("--netns-target needs iproute2's `ip`")
    try:
        shown = subprocess.run(
            [ip, "-n", name, "-j", "addr", "show"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        links = json.loads(shown.stdout)
    except (subprocess.SubprocessError, ValueError):
        raise UsageError(f"--netns-target {name}: no such network namespace") from None
    return {a["local"] for link in links for a in link.get("addr_info", []) if "local" in a}


def in_netns(url: str, name: str | None) -> bool:
    """True when the target's address belongs to the named namespace: an opt-in for test hosts
    made on this machine (their traffic never leaves it), never a guess."""
    if not name:
        return False
    host = urlparse(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name could resolve anywhere
    return str(address) in netns_addresses(name)
