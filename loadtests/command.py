"""`opconform load PROFILE`: run a load profile headless and judge it.

Locust runs in a child process (gevent patches the interpreter it runs in); keys reach it through
the environment only. With no --base-url the embedded reference gateway is the target. The run
is bounded: Locust gets --run-time, and past the duration plus a fixed grace it is killed and
load.json says so, so a hostile target gets a verdict, never a hang.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from loadtests.arrivals import ARRIVALS
from loadtests.transport_env import transport_to_environment
from loadtests.workload import Distribution, read_dataset
from opconform.config import OPTION_BY_NAME, TRANSPORT_OPTIONS, resolve
from opconform.contract import IDENTITY_BY_LABEL, KEY_VARIABLES, PLANS, parse_duration
from opconform.exitcodes import HARNESS, USAGE, UsageError
from opconform.slo import parse_slo
from opconform.transport import TransportSettings

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
GRACE_SECONDS = 45.0  # past --duration: Locust's stop timeout, one network timeout, the verdict


@dataclass(frozen=True)
class ProfileSpec:
    file: str
    duration: str
    needs: tuple[str, ...] = ()  # limits it must know: rpm, concurrent
    capacity: bool = False  # finds the target's capacity: the embedded Enterprise key


PROFILES = {
    "steady": ProfileSpec("steady.py", "20s", ("rpm",)),
    "rpm-burst": ProfileSpec("rpm_burst.py", "130s", ("rpm",)),
    "concurrency-cap": ProfileSpec("concurrency_cap.py", "20s", ("rpm", "concurrent")),
    "key-isolation": ProfileSpec("key_isolation.py", "30s", ("rpm",)),
    "ramp": ProfileSpec("ramp.py", "60s", capacity=True),
    "sweep": ProfileSpec("sweep.py", "60s", capacity=True),
    "soak": ProfileSpec("soak.py", "300s", ("rpm",)),
    "quota": ProfileSpec("quota.py", "180s"),
}
# Options of the shared table (opconform.config.OPTIONS): same flags, variables and
# opconform.toml keys as `opconform run`.
SHARED = (
    "base_url",
    "api_key",
    "alt_api_key",
    "pro_api_key",
    "plan",
    "enterprise_requests_per_min",
    "enterprise_concurrent",
    *TRANSPORT_OPTIONS,
)


def add_load(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="run a load profile (Locust) and judge it",
        description="Run a load profile headless. With no --base-url the embedded reference "
        "gateway is the target. Exit 0: expectations and thresholds met; 1: broken; "
        "2: bad usage; 3: could not judge (an expectation lacked its evidence, the "
        "generator was the limit, or the run could not finish).",
    )
    p.add_argument("profile", choices=sorted(PROFILES))
    for name in SHARED:
        option = OPTION_BY_NAME[name]
        help_text = f"{option.help} [env {option.env}]"
        if option.kind == "bool":
            p.add_argument(
                *option.flags, dest=name, action="store_true", default=None, help=help_text
            )
        elif option.kind == "lines":
            p.add_argument(*option.flags, dest=name, action="append", help=help_text)
        else:
            kind = {"int": int, "float": float}.get(option.kind, str)
            p.add_argument(
                *option.flags, dest=name, type=kind, choices=option.choices, help=help_text
            )
    p.add_argument("--duration", help="e.g. 60s, 5m (default per profile)")
    p.add_argument("--users", type=int, help="closed-loop users (default: from plan and profile)")
    p.add_argument("--processes", type=int, default=1, help="generator processes (Locust)")
    p.add_argument(
        "--arrival",
        choices=ARRIVALS,
        default="closed",
        help="closed: users wait for their answers; constant or poisson: open-loop at --rate",
    )
    p.add_argument("--rate", type=float, help="open-loop requests/s (steady, soak, sweep)")
    p.add_argument(
        "--slo",
        default="",
        help="e.g. ttft_p95=800ms,error_rate=0.01, or @FILE with one threshold per line",
    )
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--max-tokens", type=int, default=64, help="output tokens per request")
    p.add_argument(
        "--output-tokens",
        help="output token target per request: 256, uniform:64:512, normal:256:64 "
        "(sets max_tokens per request; default --max-tokens)",
    )
    p.add_argument("--prompt-tokens", default="64", help="prompt token target, same forms")
    p.add_argument("--dataset", type=Path, help='JSONL of {"prompt"|"messages", "max_tokens"?}')
    p.add_argument("--seed", type=int, help="seed of synthetic prompts and arrivals")
    p.add_argument(
        "--honour-retry-after",
        "--honor-retry-after",
        action="store_true",
        help="the client waits as Retry-After says after a 429; goodput reported apart",
    )
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
    p.add_argument(
        "--progress-seconds", type=float, default=5.0, help="status line interval (0: none)"
    )
    p.add_argument(
        "--breaker",
        type=int,
        default=20,
        help="stop sending after this many transport failures in a row (0: never)",
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


def seconds(text: str) -> float:
    return parse_duration(text, what="--duration")


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _users(args: argparse.Namespace, env: dict[str, str], concurrent: int | None) -> int:
    if args.users:
        return int(args.users)
    if args.profile in ("steady", "soak"):
        if args.arrival != "closed":
            return args.processes  # one open-loop sender per process
        return max(1, min((concurrent or 5) - 1, 4))
    if args.profile in ("rpm-burst", "key-isolation"):
        return 1 + bool(env.get("OP_ALT_API_KEY")) + bool(env.get("OP_PRO_API_KEY"))
    return 1


def _slo_text(text: str) -> str:
    if not text.startswith("@"):
        return text
    try:
        lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--slo: cannot read {text[1:]}: {exc.strerror}") from None
    return ",".join(line.split("#")[0].strip() for line in lines if line.split("#")[0].strip())


def _check(args: argparse.Namespace) -> None:
    """Bad usage is one clear line before anything starts."""
    args.slo = _slo_text(args.slo)
    parse_slo(args.slo)
    args.duration_s = seconds(args.duration or PROFILES[args.profile].duration)
    if args.duration_s < 1 or args.max_requests < 1 or args.processes < 1:
        raise UsageError("--duration, --max-requests and --processes must be positive")
    Distribution.parse(args.output_tokens or str(args.max_tokens), what="--output-tokens")
    Distribution.parse(args.prompt_tokens, what="--prompt-tokens")
    if args.dataset:
        read_dataset(args.dataset)
    if args.arrival != "closed":
        if args.profile not in ("steady", "soak", "sweep"):
            raise UsageError(f"--arrival {args.arrival}: steady, soak and sweep only")
        if not args.rate and args.profile != "sweep":
            raise UsageError(f"--arrival {args.arrival} needs --rate (requests/s)")
    if args.rate is not None and args.rate <= 0:
        raise UsageError("--rate must be positive")
    if args.profile == "concurrency-cap" and args.processes > 1:
        raise UsageError("concurrency-cap counts open streams in one process: --processes 1")


def _limits(args: argparse.Namespace, values: dict[str, Any], plan: str) -> dict[str, int | None]:
    """The main key's requests/min and concurrency: the plan's documented figures, or for
    Enterprise ("Custom") the ones the user stated. Nothing is guessed."""
    limits = PLANS[plan]
    rpm, concurrent = limits.requests_per_min, limits.concurrent
    if plan == "enterprise":
        rpm = values.get("enterprise_requests_per_min")
        concurrent = values.get("enterprise_concurrent")
    found = {"rpm": rpm, "concurrent": concurrent}
    spec = PROFILES[args.profile]
    needed = [n for n in spec.needs if found[n] is None]
    if needed == ["rpm"] and args.profile in ("steady", "soak") and args.rate:
        needed = []  # an explicit rate is all steady needs
    if args.profile in ("steady", "soak") and any(
        o.startswith("rate=") for o in args.profile_option
    ):
        needed = [n for n in needed if n != "rpm"]
    if needed:
        flags = {"rpm": "--enterprise-requests-per-min", "concurrent": "--enterprise-concurrent"}
        raise UsageError(
            f"the {plan} plan's limits are custom: {args.profile} needs "
            + " and ".join(flags[n] for n in needed)
        )
    return found


def run_load(args: argparse.Namespace) -> int:
    from gateway.embedded import EmbeddedGateway

    _check(args)
    values = resolve({name: getattr(args, name) for name in SHARED})
    transport = TransportSettings.from_values(values)
    report_dir = (
        args.report_dir
        or Path("reports") / "runs" / f"load-{args.profile}-{time.strftime('%Y%m%dT%H%M%S')}"
    )
    if report_dir.exists() and any(report_dir.iterdir()):
        raise UsageError(f"--report-dir {report_dir} is not empty: choose a new folder")

    env = {**os.environ, **transport_to_environment(transport)}
    for label in ("main", "alt", "pro"):
        identity = IDENTITY_BY_LABEL[label]
        if values.get(identity.option):
            env[identity.env] = values[identity.option]
    gateway = None
    base_url = values.get("base_url")
    plan = values.get("plan") or "free"
    spec = PROFILES[args.profile]
    if not base_url:
        gateway = EmbeddedGateway(args.gateway_args)
        gateway_env = gateway.start()
        base_url = gateway.base_url
        env.update({k: v for k, v in gateway_env.items() if k.endswith("_API_KEY")})
        plan = args.plan or "free"
        if spec.capacity:  # capacity, not plan limits: the key whose limits are out of reach
            env[KEY_VARIABLES["main"]], plan = gateway_env["OP_ENTERPRISE_API_KEY"], "enterprise"
    try:
        if not (base_url.startswith("http://") or base_url.startswith("https://")):
            raise UsageError(f"--base-url must be an http(s) URL, not {base_url!r}")
        if not is_loopback(base_url) and not args.allow_remote_target:
            raise UsageError(
                f"{base_url} is not on this machine; load runs target loopback "
                "unless --allow-remote-target is given for a target you operate"
            )
        if not env.get(KEY_VARIABLES["main"]):
            raise UsageError("--api-key (or OP_API_KEY) is required for a remote target")
        limits = _limits(args, values, plan)
        report_dir.mkdir(parents=True, exist_ok=True)
        users = _users(args, env, limits["concurrent"])
        command = _locust_command(args, base_url, report_dir, users, plan, limits)
        code = _run_bounded(command, env, args, report_dir, base_url, plan)
        if code != USAGE:
            _fallback(report_dir, args, base_url, plan, f"Locust exited {code} without a verdict")
    finally:
        if gateway is not None:
            gateway.stop()
    return _outcome(report_dir, code)


def _locust_command(
    args: argparse.Namespace,
    base_url: str,
    report_dir: Path,
    users: int,
    plan: str,
    limits: dict[str, int | None],
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(PROFILE_DIR / PROFILES[args.profile].file),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(max(users, 1)),
        "--run-time",
        f"{args.duration_s:g}s",
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
        "--op-output-tokens",
        args.output_tokens or str(args.max_tokens),
        "--op-prompt-tokens",
        args.prompt_tokens,
        "--op-arrival",
        args.arrival,
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
        "--op-progress-seconds",
        str(args.progress_seconds),
        "--op-breaker",
        str(args.breaker),
    ]
    for name, flag in (("rpm", "--op-rpm"), ("concurrent", "--op-concurrent")):
        if limits[name] is not None:
            command += [flag, str(limits[name])]
    if args.rate:
        command += ["--op-rate", str(args.rate)]
    if args.dataset:
        command += ["--op-dataset", str(args.dataset.resolve())]
    if args.seed is not None:
        command += ["--op-seed", str(args.seed)]
    if args.honour_retry_after:
        command += ["--op-honour-retry-after", "yes"]
    for item in args.profile_option:
        command += ["--op-profile-option", item]
    if args.processes > 1:
        command += ["--processes", str(args.processes)]
    return command


def _run_bounded(
    command: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    report_dir: Path,
    base_url: str,
    plan: str,
) -> int:
    """Run Locust; past the duration plus GRACE_SECONDS kill it (and its worker processes:
    a session of their own) and write the verdict it could not."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return process.wait(timeout=args.duration_s + GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(
            f"opconform load: Locust did not stop within {args.duration_s:g}s + "
            f"{GRACE_SECONDS:g}s grace; killed",
            file=sys.stderr,
        )
        _fallback(
            report_dir,
            args,
            base_url,
            plan,
            f"Locust did not stop within the duration plus {GRACE_SECONDS:g} s; killed",
        )
        return HARNESS
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def _fallback(report_dir: Path, args: argparse.Namespace, host: str, plan: str, why: str) -> None:
    """A load.json for a run that could not write its own: no verdict on the target."""
    if (report_dir / "load.json").is_file():
        return
    document = {
        "kind": "load",
        "profile": args.profile,
        "target": {"host": host, "plan": plan, "model": args.model},
        "settings": {"duration_s": args.duration_s},
        "verdict": "inconclusive",
        "exit_code": HARNESS,
        "valid": False,
        "invalid_reasons": [why],
        "expectations": [],
        "metrics": {"requests": 0},
        "groups": {},
        "extra": {},
        "requests_recorded": 0,
    }
    (report_dir / "load.json").write_text(json.dumps(document, indent=2))


def _outcome(report_dir: Path, code: int) -> int:
    result = report_dir / "load.json"
    if not result.is_file():
        if code == USAGE:
            return USAGE
        print(f"opconform load: no load.json was written (Locust exit {code})", file=sys.stderr)
        return HARNESS
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
