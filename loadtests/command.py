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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opconform.config import (
    ENTERPRISE_LIMIT_OPTIONS,
    OPTION_BY_NAME,
    Option,
    add_arguments,
    stated_limits,
)
from opconform.contract import IDENTITY_BY_LABEL, KEY_VARIABLES, parse_duration
from opconform.exitcodes import UsageError
from opconform.loadtests import distributed
from opconform.loadtests.catalogue import ProfileSpec, explicit_rate, profiles
from opconform.loadtests.options import (
    LOAD_OPTION_NAMES,
    LOAD_OPTIONS,
    SETTINGS_FILE_NAME,
    SHARED,
    SHARED_OPTIONS,
    resolve_load,
    settings_document,
)
from opconform.loadtests.transport_env import transport_to_environment
from opconform.loadtests.workload import Distribution, read_dataset
from opconform.outcome import HARNESS, LOAD_INCONCLUSIVE, USAGE
from opconform.preflight import check_report_dir, make_report_dir
from opconform.redact import sweep
from opconform.slo import parse_slo
from opconform.target import timeouts_of
from opconform.timeouts import Timeouts
from opconform.transport import TransportSettings

STOP_SECONDS = 5  # Locust's --stop-timeout: how long requests in flight at the end may finish
VERDICT_SECONDS = 10.0  # Locust's quitting: the verdict, load.json, its CSV and HTML


def grace_seconds(timeouts: Timeouts) -> float:
    """How long Locust may run past --duration: its stop timeout, one request that has just
    connected and then waits out the read timeout, and the verdict. Past that it is killed."""
    return STOP_SECONDS + timeouts.connect + timeouts.read + VERDICT_SECONDS


PROFILES = profiles()  # by name, as each profile file's Profile(...) declares itself


def add_load(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="run a load profile (Locust) and judge it",
        description="Run a load profile headless. With no --base-url the embedded reference "
        "gateway is the target. Exit 0: expectations and thresholds met; 1: broken; "
        "2: bad usage; 3: could not judge (an expectation lacked its evidence, the "
        "generator was the limit, or the run could not finish). Settings come from the "
        "command line, OP_* variables and opconform.toml ([load] for the load options).",
    )
    p.add_argument("profile", nargs="?", choices=sorted(PROFILES), help="see --list")
    p.add_argument("--list", action="store_true", help="list the profiles, one line each")
    add_arguments(p.add_argument, (*(_for_load(o) for o in SHARED_OPTIONS), *LOAD_OPTIONS))
    p.add_argument("--config", type=Path, help="settings file (default ./opconform.toml)")
    p.add_argument(
        "--allow-remote-target",
        action="store_true",
        help="permit a target that is not on this machine (only one you operate)",
    )
    p.set_defaults(handler=run_load)


# What the shared identities do in a load run (the run's help says what they do in the suite).
_LOAD_HELP = {
    "alt_api_key": "a second key of the same plan: the abusive client of rpm-burst, the steady "
    "key B of key-isolation",
    "pro_api_key": "a Pro key: the bystander that rpm-burst and key-isolation check stays unharmed",
}


def _for_load(option: Option) -> Option:
    return replace(option, help=_LOAD_HELP[option.name]) if option.name in _LOAD_HELP else option


def list_profiles() -> int:
    width = max(len(name) for name in PROFILES)
    for name in sorted(PROFILES):
        print(f"{name:<{width}}  {PROFILES[name].summary()}")
    return 0


@dataclass(frozen=True)
class LoadRun:
    """One load run as resolved: the profile, the shared options (target, keys, transport),
    the load options (LOAD_OPTIONS) and what follows from them."""

    profile: str
    shared: dict[str, Any]
    options: dict[str, Any]
    duration_s: float
    cli_plan: str | None  # the embedded gateway's main key is Free unless --plan says otherwise

    @property
    def spec(self) -> ProfileSpec:
        return PROFILES[self.profile].spec

    @property
    def timeouts(self) -> Timeouts:
        return timeouts_of(self.shared)


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


def _users(run: LoadRun, env: dict[str, str], concurrent: int | None) -> int:
    options = run.options
    if options["users"]:
        return int(options["users"])
    if run.spec.users == "closed-loop":
        if options["arrival"] != "closed":  # one open-loop sender per generator process
            return int(options["expect_workers" if options["master"] else "processes"])
        return max(1, min((concurrent or 5) - 1, 4))
    if run.spec.users == "per-key":
        return 1 + bool(env.get(KEY_VARIABLES["alt"])) + bool(env.get(KEY_VARIABLES["pro"]))
    return 1


def _slo_text(text: str) -> str:
    if not text.startswith("@"):
        return text
    try:
        lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--slo: cannot read {text[1:]}: {exc.strerror}") from None
    return ",".join(line.split("#")[0].strip() for line in lines if line.split("#")[0].strip())


def _resolve(args: argparse.Namespace) -> LoadRun:
    """Resolve and check every option: bad usage is one clear line before anything starts."""
    cli = {name: getattr(args, name) for name in (*SHARED, *LOAD_OPTION_NAMES)}
    shared, options = resolve_load(cli, config_file=args.config)
    options["slo"] = _slo_text(options["slo"])
    parse_slo(options["slo"])
    spec = PROFILES[args.profile].spec
    duration_s = options["duration"] or seconds(spec.duration)
    if duration_s < 1 or options["max_requests"] < 1 or options["processes"] < 1:
        raise UsageError("--duration, --max-requests and --processes must be positive")
    timeouts_of(shared)  # a zero deadline is refused now, before anything starts
    output = options["output_tokens"] or str(options["max_tokens"])
    Distribution.parse(output, what="--output-tokens")
    Distribution.parse(options["prompt_tokens"], what="--prompt-tokens")
    if options["dataset"]:
        read_dataset(Path(options["dataset"]))
    arrival, rate = options["arrival"], options["rate"]
    if arrival != "closed":
        if not spec.open_loop:
            open_loop = [name for name, each in PROFILES.items() if each.spec.open_loop]
            listed = ", ".join(open_loop[:-1]) + " and " + open_loop[-1]
            raise UsageError(f"--arrival {arrival}: {listed} only")
        if not rate and spec.open_loop == "rate":
            raise UsageError(f"--arrival {arrival} needs --rate (requests/s)")
    if rate is not None and rate <= 0:
        raise UsageError("--rate must be positive")
    if rate is not None and arrival == "closed":
        raise UsageError(
            "--rate is the open-loop rate and closed-loop arrival ignores it: add --arrival "
            "constant or poisson (closed loop paces with --profile-option rate=R)"
        )
    distributed.check_roles(options, args.profile)
    if spec.one_process and options["processes"] > 1:
        raise UsageError(f"{args.profile} counts what it sees in one process: --processes 1")
    return LoadRun(args.profile, shared, options, duration_s, cli_plan=args.plan)


def _limits(run: LoadRun, plan: str) -> dict[str, int | None]:
    """The main key's requests/min and concurrency (config.stated_limits); a profile that needs
    a figure nobody stated is bad usage."""
    limits = stated_limits({**run.shared, "plan": plan})
    found = {"rpm": limits.requests_per_min, "concurrent": limits.concurrent}
    named = {item.split("=", 1)[0] for item in run.options["profile_option"] or () if "=" in item}
    stated_rate = explicit_rate(run.options["rate"], named)
    needed = [n for n in run.spec.needed_limits(stated_rate) if found[n] is None]
    if needed:
        flags = [OPTION_BY_NAME[ENTERPRISE_LIMIT_OPTIONS[n]].flag for n in needed]
        raise UsageError(
            f"the {plan} plan's limits are custom: {run.profile} needs " + " and ".join(flags)
        )
    return found


def run_load(args: argparse.Namespace) -> int:
    from opconform.gateway.command import check_gateway_args
    from opconform.gateway.embedded import EmbeddedGateway

    if args.list:
        return list_profiles()
    if not args.profile:
        raise UsageError("which profile? (see --list)")
    run = _resolve(args)
    transport = TransportSettings.from_values(run.shared)
    report_dir = Path(
        run.options["report_dir"]
        or Path("reports") / "runs" / f"load-{run.profile}-{time.strftime('%Y%m%dT%H%M%S')}"
    )
    check_report_dir(report_dir)
    if not run.shared.get("base_url"):
        check_gateway_args(run.shared.get("gateway_args"))

    env = {**os.environ, **transport_to_environment(transport)}
    for label in ("main", "alt", "pro"):
        identity = IDENTITY_BY_LABEL[label]
        if run.shared.get(identity.option):
            env[identity.env] = run.shared[identity.option]
    if run.options["worker"]:  # the master has the target, the settings and the verdict
        return distributed.run_worker(PROFILES[run.profile].path, run.options, env, run.duration_s)
    gateway = None
    base_url = run.shared.get("base_url")
    plan = run.shared.get("plan") or "free"
    if not base_url:
        gateway = EmbeddedGateway(run.shared.get("gateway_args"))
        gateway_env = gateway.start()
        base_url = gateway.base_url
        env.update({k: v for k, v in gateway_env.items() if k.endswith("_API_KEY")})
        plan = run.cli_plan or "free"
        if run.spec.capacity:  # capacity, not plan limits: limits out of reach
            env[KEY_VARIABLES["main"]] = gateway_env[KEY_VARIABLES["enterprise"]]
            plan = "enterprise"
    try:
        if not (base_url.startswith("http://") or base_url.startswith("https://")):
            raise UsageError(f"--base-url must be an http(s) URL, not {base_url!r}")
        if not (
            is_loopback(base_url)
            or args.allow_remote_target
            or distributed.in_netns(base_url, run.options["netns_target"])
        ):
            raise UsageError(
                f"{base_url} is not on this machine; load runs target loopback (or "
                "--netns-target's addresses) unless --allow-remote-target is given for a "
                "target you operate"
            )
        if not env.get(KEY_VARIABLES["main"]):
            raise UsageError("--api-key (or OP_API_KEY) is required for a remote target")
        limits = _limits(run, plan)
        why = None if gateway is not None else _unreachable(base_url, transport, run.timeouts)
        if why is not None:
            # As `opconform run` does: one line, and a load.json that says so, nothing judged.
            make_report_dir(report_dir)
            _fallback(report_dir, run, base_url, plan, why)
            print(f"opconform load: {why}", file=sys.stderr)
            return HARNESS
        make_report_dir(report_dir)
        users = _users(run, env, limits["concurrent"])
        document = settings_document(
            {**run.options, "report_dir": report_dir},
            plan=plan,
            rpm=limits["rpm"],
            concurrent=limits["concurrent"],
            timeouts=run.timeouts,
            users=users,
        )
        settings_file = report_dir / SETTINGS_FILE_NAME
        settings_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        command = _locust_command(run, settings_file, base_url, report_dir, users)
        if run.options["master"]:
            command += distributed.master_arguments(run.options, document)
        code = _run_bounded(command, env, run, report_dir, base_url, plan)
        if code != USAGE:
            why = f"Locust exited {code} without a verdict"
            if run.options["master"]:
                why = distributed.master_failure(run.options, code)
            _fallback(report_dir, run, base_url, plan, why)
    finally:
        if gateway is not None:
            gateway.stop()
    secrets = [env.get(variable) or "" for variable in KEY_VARIABLES.values()]
    return _outcome(report_dir, code, [*secrets, *transport.secret_values()])


def _unreachable(base_url: str, transport: TransportSettings, timeouts: Timeouts) -> str | None:
    """Why the target cannot be reached at all (one connection, TLS handshake), else None:
    `opconform run`'s own pre-check, at the run's --connect-timeout."""
    from opconform.preflight import reach

    return reach(base_url, transport, timeouts)


def _locust_command(
    run: LoadRun, settings_file: Path, base_url: str, report_dir: Path, users: int
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(PROFILES[run.profile].path),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(max(users, 1)),
        "--run-time",
        f"{run.duration_s:g}s",
        "--stop-timeout",
        str(STOP_SECONDS),
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
        "--op-settings",
        str(settings_file),
    ]
    if run.options["processes"] > 1:
        command += ["--processes", str(run.options["processes"])]
    return command


def _run_bounded(
    command: list[str],
    env: dict[str, str],
    run: LoadRun,
    report_dir: Path,
    base_url: str,
    plan: str,
) -> int:
    """Run Locust; past the duration plus its grace (grace_seconds) kill it (and its worker
    processes: a session of their own) and write the verdict it could not."""
    grace = grace_seconds(run.timeouts)
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        wait = run.options["worker_wait"] if run.options["master"] else 0.0
        return process.wait(timeout=run.duration_s + grace + wait)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(
            f"opconform load: Locust did not stop within {run.duration_s:g}s + "
            f"{grace:g}s grace; killed",
            file=sys.stderr,
        )
        _fallback(
            report_dir,
            run,
            base_url,
            plan,
            f"Locust did not stop within the duration plus {grace:g} s; killed",
        )
        return HARNESS
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def _fallback(report_dir: Path, run: LoadRun, host: str, plan: str, why: str) -> None:
    """A load.json for a run that could not write its own: no verdict on the target."""
    if (report_dir / "load.json").is_file():
        return
    document = {
        "kind": "load",
        "profile": run.profile,
        "target": {"host": host, "plan": plan, "model": run.options["model"]},
        "settings": {"duration_s": run.duration_s},
        "verdict": LOAD_INCONCLUSIVE,
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


def _outcome(report_dir: Path, code: int, secrets: list[str]) -> int:
    result = report_dir / "load.json"
    if not result.is_file():
        if code == USAGE:
            return USAGE
        print(f"opconform load: no load.json was written (Locust exit {code})", file=sys.stderr)
        return HARNESS
    document: dict[str, Any] = json.loads(result.read_text())
    from opconform.reports.render import render_run

    render_run(report_dir)
    sweep(report_dir, secrets)  # Locust's own CSV and HTML too
    print(
        f"opconform load: {document['verdict']}; exit {document['exit_code']}; "
        f"report: {report_dir / 'report.html'}"
    )
    return int(document["exit_code"])
