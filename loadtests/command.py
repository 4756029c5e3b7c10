"""`opconform load PROFILE`: run a load profile headless and judge it.

Locust runs in a child process (gevent patches the interpreter it runs in); keys reach it through
the environment only. With no --base-url the embedded reference gateway is the target.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from loadtests.metrics import SloError, parse_slo
from opconform.exitcodes import HARNESS, USAGE, UsageError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES = {
    "steady": ("steady.py", "20s"),
    "rpm-burst": ("rpm_burst.py", "130s"),
    "concurrency-cap": ("concurrency_cap.py", "20s"),
    "key-isolation": ("key_isolation.py", "30s"),
    "ramp": ("ramp.py", "60s"),
    "soak": ("soak.py", "300s"),
    "quota": ("quota.py", "180s"),
}
PLAN_CAPS = {"free": 5, "pro": 50, "enterprise": 10_000}
_DURATION = re.compile(r"^(\d+)(s|m|h)?$")
SECRET_OPTIONS = {
    "api_key": "OP_API_KEY",
    "alt_api_key": "OP_ALT_API_KEY",
    "pro_api_key": "OP_PRO_API_KEY",
}


def add_load(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="run a load profile (Locust) and judge it",
        description="Run a load profile headless. With no --base-url the embedded reference "
        "gateway is the target. Exit 0: expectations and thresholds met; 1: broken; "
        "2: bad usage; 3: the run is invalid (the generator, not the target, was "
        "the limit) or could not run.",
    )
    p.add_argument("profile", choices=sorted(PROFILES))
    p.add_argument("--base-url", default=os.environ.get("OP_BASE_URL"))
    p.add_argument("--api-key", help="[env OP_API_KEY]")
    p.add_argument("--alt-api-key", help="[env OP_ALT_API_KEY]")
    p.add_argument("--pro-api-key", help="[env OP_PRO_API_KEY]")
    p.add_argument(
        "--plan", choices=sorted(PLAN_CAPS), default=None, help="plan of the main key [env OP_PLAN]"
    )
    p.add_argument("--duration", help="e.g. 60s, 5m (default per profile)")
    p.add_argument("--users", type=int, help="default: derived from the plan and profile")
    p.add_argument("--processes", type=int, default=1, help="generator processes (Locust)")
    p.add_argument(
        "--slo",
        default="",
        help="e.g. ttft_p95=800ms,error_rate=0.01, or @FILE with one threshold per line",
    )
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request")
    p.add_argument(
        "--max-requests", type=int, default=20_000, help="request ceiling per generator process"
    )
    p.add_argument("--max-tokens-total", type=int, default=2_000_000)
    p.add_argument(
        "--window-seconds",
        type=float,
        default=60.0,
        help="the target's requests/min window (the contract says 60)",
    )
    p.add_argument("--profile-option", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--gateway-args",
        default="",
        help="options for the embedded gateway, e.g. '--fault ratelimit-off-by-one'",
    )
    p.add_argument("--report-dir", type=Path)
    p.add_argument(
        "--allow-remote-target",
        action="store_true",
        help="permit a target that is not on this machine (only one you operate)",
    )
    p.set_defaults(handler=run_load)


def seconds(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"--duration: expected e.g. 60s or 5m, not {text!r}")
    number = int(match.group(1))
    return number * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _users(profile: str, plan: str, env: dict[str, str], given: int | None) -> int:
    if given:
        return given
    cap = PLAN_CAPS[plan]
    if profile in ("steady", "soak"):
        return max(1, min(cap - 1, 4))
    if profile == "concurrency-cap":
        return cap + 2
    if profile in ("rpm-burst", "key-isolation"):
        return 1 + bool(env.get("OP_ALT_API_KEY")) + bool(env.get("OP_PRO_API_KEY"))
    return 1


def run_load(args: argparse.Namespace) -> int:
    from gateway.embedded import EmbeddedGateway

    if args.slo.startswith("@"):
        try:
            lines = Path(args.slo[1:]).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"--slo: cannot read {args.slo[1:]}: {exc.strerror}") from None
        args.slo = ",".join(
            line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()
        )
    try:
        parse_slo(args.slo)
    except SloError as exc:
        raise UsageError(str(exc)) from None
    duration = seconds(args.duration or PROFILES[args.profile][1])
    if duration < 1 or args.max_requests < 1 or args.processes < 1:
        raise UsageError("--duration, --max-requests and --processes must be positive")
    report_dir = (
        args.report_dir
        or Path("reports") / "runs" / f"load-{args.profile}-{time.strftime('%Y%m%dT%H%M%S')}"
    )
    if report_dir.exists() and any(report_dir.iterdir()):
        raise UsageError(f"--report-dir {report_dir} is not empty: choose a new folder")

    env = {k: v for k, v in os.environ.items()}
    for option, variable in SECRET_OPTIONS.items():
        if getattr(args, option):
            env[variable] = getattr(args, option)
    gateway = None
    base_url = args.base_url
    plan = args.plan or env.get("OP_PLAN") or "free"
    if not base_url:
        gateway = EmbeddedGateway(args.gateway_args)
        gateway_env = gateway.start()
        base_url = gateway.base_url
        env.update({k: v for k, v in gateway_env.items() if k.endswith("_API_KEY")})
        plan = args.plan or "free"
        if args.profile == "ramp":  # capacity, not plan limits: the enterprise key
            env["OP_API_KEY"], plan = gateway_env["OP_ENTERPRISE_API_KEY"], "enterprise"
    try:
        if not (base_url.startswith("http://") or base_url.startswith("https://")):
            raise UsageError(f"--base-url must be an http(s) URL, not {base_url!r}")
        if not is_loopback(base_url) and not args.allow_remote_target:
            raise UsageError(
                f"{base_url} is not on this machine; load runs target loopback "
                "unless --allow-remote-target is given for a target you operate"
            )
        if not env.get("OP_API_KEY"):
            raise UsageError("--api-key (or OP_API_KEY) is required for a remote target")
        report_dir.mkdir(parents=True, exist_ok=True)
        users = _users(args.profile, plan, env, args.users)
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(PROFILE_DIR / PROFILES[args.profile][0]),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(max(users, 1)),
            "--run-time",
            f"{duration}s",
            "--stop-timeout",
            "5",
            "--host",
            base_url,
            "--csv",
            str(report_dir / "locust"),
            "--html",
            str(report_dir / "locust.html"),
            "--json-file",
            str(report_dir / "locust"),
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--op-plan",
            plan,
            "--op-model",
            args.model,
            "--op-max-tokens",
            str(args.max_tokens),
            "--op-slo",
            args.slo,
            "--op-max-requests",
            str(args.max_requests),
            "--op-max-tokens-total",
            str(args.max_tokens_total),
            "--op-window-seconds",
            str(args.window_seconds),
            "--op-report-dir",
            str(report_dir),
        ]
        for item in args.profile_option:
            command += ["--op-profile-option", item]
        if args.processes > 1:
            command += ["--processes", str(args.processes)]
        try:
            done = subprocess.run(command, env=env, timeout=duration + 90, check=False)
        except subprocess.TimeoutExpired:
            print("opconform load: Locust did not stop in time", file=sys.stderr)
            return HARNESS
    finally:
        if gateway is not None:
            gateway.stop()
    return _outcome(report_dir, done.returncode)


def _outcome(report_dir: Path, code: int) -> int:
    result = report_dir / "load.json"
    if not result.is_file():
        print(f"opconform load: no load.json was written (Locust exit {code})", file=sys.stderr)
        return HARNESS if code != USAGE else USAGE
    document: dict[str, Any] = json.loads(result.read_text())
    try:
        from reports.render import render_run
    except ImportError:  # reports land with their own issue
        pass
    else:
        render_run(report_dir)
    print(
        f"opconform load: {document['verdict']}; exit {document['exit_code']}; "
        f"report: {report_dir / 'report.html'}"
    )
    return int(document["exit_code"])
