"""The options of `opconform load`, and the one settings document they become for Locust.

`opconform load` reads two tables through `opconform.config.resolve`: the run's target and
transport options (SHARED: the same flags, OP_* variables and opconform.toml keys as
`opconform run`) and LOAD_OPTIONS below (variables OP_LOAD_*, the `[load]` section of
opconform.toml). The resolved values become one JSON document (`settings_document`) that every
Locust process reads through `--op-settings FILE`; a Locust started by hand without it resolves
the same tables from its environment (`document_from_environment`). No default is declared
twice. Keys never enter the document: they travel in the environment variables of
opconform.contract.KEY_VARIABLES.

No Locust import here: the command builds its parser without starting gevent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opconform.config import (
    OPTION_BY_NAME,
    OPTIONS,
    Option,
    prefixed,
    resolve,
    stated_limits,
)
from opconform.contract import WINDOW_SECONDS
from opconform.loadtests.arrivals import ARRIVALS
from opconform.target import timeouts_of
from opconform.timeouts import DEFAULT_TIMEOUTS, Timeouts

LOAD_SECTION = "load"
SETTINGS_FILE_NAME = "settings.json"  # in the report folder: what the Locust processes read
# The run's options that a load run shares (each says so): where the target is, as whom, how
# to reach it and how long to wait.
SHARED = tuple(option.name for option in OPTIONS if option.load)
_load = prefixed("OP_LOAD_")
LOAD_OPTIONS: tuple[Option, ...] = (
    _load("duration", "e.g. 60s, 5m (default per profile)", kind="duration"),
    _load("users", "closed-loop users (default: from plan and profile)", kind="int"),
    _load("processes", "generator processes (Locust)", kind="int", default=1),
    _load(
        "arrival",
        "closed: users wait for their answers; constant or poisson: open-loop at --rate",
        default="closed",
        choices=ARRIVALS,
    ),
    _load("rate", "open-loop requests/s (steady, soak, sweep)", kind="float"),
    _load(
        "slo",
        "e.g. ttft_p95=800ms,error_rate=0.01, or @FILE with one threshold per line",
        default="",
    ),
    _load("model", "the model every request asks for", default="gpt-4o-mini"),
    _load("max_tokens", "output tokens per request", kind="int", default=64),
    _load(
        "output_tokens",
        "output token target per request: 256, uniform:64:512, normal:256:64 "
        "(sets max_tokens per request; default --max-tokens)",
    ),
    _load("prompt_tokens", "prompt token target, same forms", default="64"),
    _load("dataset", 'JSONL of {"prompt"|"messages", "max_tokens"?} instead of synthetic prompts'),
    _load("seed", "seed of synthetic prompts and arrivals", kind="int"),
    _load(
        "honour_retry_after",
        "the client waits as Retry-After says after a 429; goodput reported apart",
        kind="bool",
        aliases=("--honor-retry-after",),
    ),
    _load("max_requests", "request ceiling per generator process", kind="int", default=20_000),
    _load(
        "max_tokens_total",
        "token ceiling per generator process (prompt + output, from usage)",
        kind="int",
        default=2_000_000,
    ),
    _load(
        "window_seconds",
        "the target's requests/min window (the contract says 60)",
        kind="float",
        default=WINDOW_SECONDS,
    ),
    _load("progress_seconds", "status line interval (0: none)", kind="float", default=5.0),
    _load(
        "breaker",
        "stop sending after this many transport failures in a row (0: never)",
        kind="int",
        default=20,
    ),
    _load(
        "report_dir",
        "write load.json, samples and the report here (default reports/runs/load-<profile>-<time>)",
        metavar="DIR",
    ),
    # Locust's own distributed mode: the master judges, workers on other hosts send the load.
    _load(
        "master",
        "run as Locust master: workers (--worker) send the load; judged here over all samples",
        kind="bool",
    ),
    _load(
        "expect_workers",
        "worker processes the master waits for before it starts (a worker with --processes N "
        "counts N)",
        kind="int",
        default=1,
        metavar="N",
    ),
    _load(
        "worker_wait",
        "how long the master waits for --expect-workers (then exit 3, no verdict)",
        kind="duration",
        default=60.0,
        metavar="DURATION",
    ),
    _load(
        "master_bind_host",
        "address the master listens on for workers",
        default="*",
        metavar="ADDR",
    ),
    _load("worker", "run as a Locust worker of a --master (settings come from it)", kind="bool"),
    _load("master_host", "the master's address (with --worker)", metavar="HOST"),
    _load(
        "master_port",
        "the master's port (it binds it; workers connect)",
        kind="int",
        default=5557,
        metavar="PORT",
    ),
    _load(
        "netns_target",
        "a network namespace (ip netns) you made on this machine: the target may be one of "
        "its addresses, which never leave it (an explicit opt-in, like --allow-remote-target)",
        metavar="NAME",
    ),
    _load(
        "profile_option",
        "a profile's own setting (repeatable; env: one per line)",
        kind="lines",
        metavar="NAME=VALUE",
    ),
)
LOAD_OPTION_NAMES = tuple(option.name for option in LOAD_OPTIONS)
SHARED_OPTIONS = tuple(OPTION_BY_NAME[name] for name in SHARED)


def resolve_load(
    cli: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shared options and the load options, each through `resolve` from its own section."""
    run = resolve({name: cli.get(name) for name in SHARED}, env, config_file)
    shared = {name: run[name] for name in SHARED}
    own = resolve(cli, env, config_file, options=LOAD_OPTIONS, section=LOAD_SECTION)
    return shared, own


def settings_document(
    own: Mapping[str, Any],
    *,
    plan: str,
    rpm: int | None,
    concurrent: int | None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    users: int | None = None,
) -> dict[str, Any]:
    """What a Locust process needs to run a profile: JSON-ready, with no secret in it."""
    document: dict[str, Any] = {name: own.get(name) for name in LOAD_OPTION_NAMES}
    document.update(connect_timeout=timeouts.connect, read_timeout=timeouts.read)
    for name in ("dataset", "report_dir"):  # Locust may run elsewhere
        if document[name]:
            document[name] = str(Path(str(document[name])).resolve())
    document.update(plan=plan, rpm=rpm, concurrent=concurrent)
    if users is not None:  # the run's total: a worker knows only its own share (Locust's -u)
        document["users"] = users
    return document


def document_from_environment(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The document of a Locust run started by hand: OP_* variables and opconform.toml."""
    shared, own = resolve_load({}, env)
    limits = stated_limits(shared)
    return settings_document(
        own,
        plan=shared.get("plan") or "free",
        rpm=limits.requests_per_min,
        concurrent=limits.concurrent,
        timeouts=timeouts_of(shared),
    )
