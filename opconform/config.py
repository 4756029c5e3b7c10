"""Configuration: tables of options, read from the command line, the environment and an
optional `opconform.toml`, in that order of precedence, by one function (`resolve`).

`OPTIONS` is the run's table, each option with its scope (SCOPES) and whether `opconform load`
shares it; `opconform run` resolves it once (conformance/settings.py), plain pytest the same way.
`load` (loadtests/options.py) and `serve` (gateway/options.py) have tables of their own, each
with its section of `opconform.toml` (SECTIONS). Keys (options marked secret) are never printed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opconform.contract import (
    IDENTITY_BY_LABEL,
    PLAN_NAMES,
    PLANS,
    WINDOW_SECONDS,
    Plan,
    parse_duration,
)
from opconform.exitcodes import UsageError
from opconform.timeouts import DEFAULT_TIMEOUTS
from opconform.transport import split_headers


@dataclass(frozen=True)
class Option:
    name: str  # attribute name; the flag is --name-with-dashes
    env: str | None
    help: str
    kind: str = "str"  # str, int, float, duration (seconds), bool, list, lines (repeatable)
    default: Any = None
    secret: bool = False
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()  # other spellings of the flag
    metavar: str | None = None
    normalise: Callable[[str], str] | None = None  # each value (list item), e.g. str.upper
    scope: str = "run"  # one of SCOPES
    load: bool = False  # `opconform load` reads it too (loadtests/options.py)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *self.aliases)


def prefixed(prefix: str) -> Callable[..., Option]:
    """The Option maker of a command's own table: each option's variable is the prefix and
    its name (OP_LOAD_ + model -> OP_LOAD_MODEL)."""

    def make(name: str, help: str, kind: str = "str", default: Any = None, **extra: Any) -> Option:
        return Option(name, f"{prefix}{name.upper()}", help, kind=kind, default=default, **extra)

    return make


# What a value describes: "target", its identities (an embedded gateway prints its own); "run",
# how the run goes whatever the target; "transport", the way to the target (TLS, headers).
SCOPES = ("target", "run", "transport")


def scoped(scope: str, *options: Option, load: bool = False) -> tuple[Option, ...]:
    return tuple(replace(option, scope=scope, load=option.load or load) for option in options)


OPTIONS: tuple[Option, ...] = (
    *scoped(
        "target",
        Option(
            "base_url",
            "OP_BASE_URL",
            "target, e.g. https://staging.example/v1 (default: start the embedded gateway)",
            load=True,
        ),
        # The identities and their variables are the contract module's (IDENTITIES).
        *(
            Option(identity.option, identity.env, help, secret=True, load=label != "restricted")
            for label, help in (
                ("main", "main key (required for a remote target)"),
                ("alt", "second key of the same plan (per-key isolation)"),
                ("pro", "a Pro key: used for bulk checks"),
                ("restricted", "a key without permission for --restricted-model (403 checks)"),
            )
            for identity in (IDENTITY_BY_LABEL[label],)
        ),
        Option(
            "plan", "OP_PLAN", "plan of the main key", choices=PLAN_NAMES, default="free", load=True
        ),
        Option("restricted_model", "OP_RESTRICTED_MODEL", "a model the restricted key may not use"),
        Option(
            "enterprise_requests_per_min",
            "OP_ENTERPRISE_REQUESTS_PER_MIN",
            "requests/min of an enterprise main key",
            kind="int",
            load=True,
        ),
        Option(
            "enterprise_concurrent",
            "OP_ENTERPRISE_CONCURRENT",
            "concurrent requests of an enterprise main key",
            kind="int",
            load=True,
        ),
    ),
    Option(
        "models",
        "OP_MODELS",
        "models to check (comma-separated; default: the first --model-count of /v1/models)",
        kind="list",
        aliases=("--model",),
    ),
    Option(
        "model_count",
        "OP_MODEL_COUNT",
        "how many listed models to check by default",
        kind="int",
        default=2,
    ),
    Option("all_models", "OP_ALL_MODELS", "check every listed model", kind="bool", default=False),
    Option(
        "max_tokens_total",
        "OP_MAX_TOKENS_TOTAL",
        "token budget of the whole run, summed from usage",
        kind="int",
        default=50_000,
    ),
    *scoped(
        "target",
        Option(
            "deterministic",
            "OP_DETERMINISTIC",
            "the target answers the same request with the same text",
            kind="bool",
            default=False,
        ),
        Option(
            "upstream_error_model",
            "OP_UPSTREAM_ERROR_MODEL",
            "test model that answers 502 (enables the gateway-failure checks)",
        ),
        Option("unavailable_model", "OP_UNAVAILABLE_MODEL", "test model that answers 503"),
        Option(
            "midstream_error_model",
            "OP_MIDSTREAM_ERROR_MODEL",
            "test model whose stream fails part-way",
        ),
    ),
    Option(
        "connect_timeout",
        "OP_CONNECT_TIMEOUT",
        "seconds to connect",
        kind="float",
        default=DEFAULT_TIMEOUTS.connect,
        load=True,
    ),
    Option(
        "read_timeout",
        "OP_READ_TIMEOUT",
        "longest silence in an answer, seconds",
        kind="float",
        default=DEFAULT_TIMEOUTS.read,
        load=True,
    ),
    Option(
        "request_timeout",
        "OP_REQUEST_TIMEOUT",
        "longest exchange, seconds",
        kind="float",
        default=DEFAULT_TIMEOUTS.request,
    ),
    Option(
        "deadline",
        "OP_DEADLINE",
        "the whole run ends by then, e.g. 900s or 15m; checks it could not reach are BLOCKED",
        kind="duration",
        default=900.0,
    ),
    Option(
        "window_seconds",
        "OP_WINDOW_SECONDS",
        "the target's requests/min window that the run paces by (the contract says 60; less only "
        "for a test gateway started with --window-seconds)",
        kind="float",
        default=WINDOW_SECONDS,
    ),
    Option(
        "samples",
        "OP_SAMPLES",
        "streams and completions judged per property that can fail intermittently",
        kind="int",
        default=5,
    ),
    Option(
        "latency_slo",
        "OP_LATENCY_SLO",
        "thresholds for the perf checks, e.g. ttft_p95=800ms,ttfb_p95=300ms",
        kind="list",
    ),
    Option(
        "area",
        "OP_AREA",
        "only these areas (comma-separated), e.g. auth,streaming",
        kind="list",
        normalise=str.lower,
    ),
    Option(
        "requirement",
        "OP_REQUIREMENT",
        "only the checks of these requirement IDs (comma-separated, any case), e.g. OP-STREAM-007",
        kind="list",
        normalise=str.upper,
    ),
    Option(
        "report_dir",
        "OP_REPORT_DIR",
        "run folder: results.json, reports, junit.xml, transcripts; must be new or empty "
        "(default reports/runs/<timestamp>)",
        metavar="DIR",
    ),
    Option(
        "expected_failures",
        "OP_EXPECTED_FAILURES",
        "file of known failures (requirement or check IDs) that keep the gate green",
    ),
    Option(
        "gateway_args",
        "OP_GATEWAY_ARGS",
        "extra options for the embedded gateway, e.g. --fault stream-no-done",
        load=True,
    ),
    # How to reach the target (opconform/transport.py): the suite, both SDKs and the load tester.
    *scoped(
        "transport",
        Option(
            "ca_bundle",
            "OP_CA_BUNDLE",
            "PEM file of CAs to trust besides the system's (SSL_CERT_FILE is honoured too)",
        ),
        Option("client_cert", "OP_CLIENT_CERT", "PEM client certificate for mutual TLS"),
        Option("client_key", "OP_CLIENT_KEY", "its private key (default: inside --client-cert)"),
        Option(
            "insecure",
            "OP_INSECURE",
            "do not verify the target's certificate (the report says so)",
            kind="bool",
            default=False,
        ),
        Option(
            "header",
            "OP_HEADERS",
            "'Name: value' sent with every request, e.g. for an access proxy (repeatable; env: "
            "one per line); credential-like names (authorization, cookie, *token*, *key*, ...) "
            "are secret",
            kind="lines",
            metavar="'NAME: VALUE'",
        ),
        Option(
            "secret_header",
            "OP_SECRET_HEADERS",
            "like --header, and its value is redacted like a key whatever the name",
            kind="lines",
            metavar="'NAME: VALUE'",
        ),
        load=True,
    ),
)
OPTION_BY_NAME = {option.name: option for option in OPTIONS}


def variable(name: str) -> str:
    """A run option's environment variable: whatever prints or reads OP_* names takes it here."""
    env = OPTION_BY_NAME[name].env
    assert env is not None, name
    return env


def _convert(option: Option, value: Any, source: str) -> Any:
    if value is None:
        return None
    if option.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise UsageError(f"{source}: expected true or false, not {value!r}")
    if option.kind in ("int", "float"):
        convert: Callable[[Any], Any] = int if option.kind == "int" else float
        try:
            number = convert(value)
        except (TypeError, ValueError):
            raise UsageError(f"{source}: expected a number, not {value!r}") from None
        if number < 0:
            raise UsageError(f"{source}: must not be negative")
        return number
    if option.kind == "duration":
        numeric = isinstance(value, int | float)
        seconds = value if numeric else parse_duration(str(value), what=source)
        if seconds <= 0:
            raise UsageError(f"{source}: must be more than zero")
        return float(seconds)
    if option.kind == "lines":  # repeatable flag; one per line in env and file strings
        return split_headers(value)
    if option.kind == "list":  # comma-separated, and repeatable: --fault a,b --fault c
        items = value if isinstance(value, list) else [value]
        parts = [part.strip() for item in items for part in str(item).split(",")]
        return [option.normalise(part) if option.normalise else part for part in parts if part]
    text = str(value)
    if option.choices and text not in option.choices:
        raise UsageError(f"{source}: {text!r} is not one of {', '.join(option.choices)}")
    return text


# The tables of opconform.toml: the run's options (or top-level keys), then each command's own.
RUN_SECTION = "opconform"
SECTIONS = (RUN_SECTION, "load", "serve")
SETTINGS_FILE = Path("opconform.toml")


def _default_shown(option: Option) -> str:
    default = option.default
    if default in (None, False, "", []):
        return ""
    if option.kind in ("float", "duration"):
        return f" (default {default:g}{'s' if option.kind == 'duration' else ''})"
    return f" (default {default})"


def add_arguments(
    add: Callable[..., Any], options: Iterable[Option], *, dest_prefix: str = ""
) -> None:
    """Command-line options for a table, through `add` (argparse's add_argument or pytest's
    addoption). Every default is None: `resolve` applies the table's own after the environment
    and the file, and converts, so a value's checks and messages are the same from any source."""
    for option in options:
        kwargs: dict[str, Any] = {
            "dest": dest_prefix + option.name,
            "default": None,
            "help": option.help
            + _default_shown(option)
            + (f" [env {option.env}]" if option.env else ""),
        }
        if option.kind == "bool":
            kwargs.update(action="store_const", const=True)
        if option.kind in ("lines", "list"):  # repeatable: --header A --header B
            kwargs["action"] = "append"
        if option.metavar:
            kwargs["metavar"] = option.metavar
        if option.choices:
            kwargs["choices"] = option.choices
        add(*option.flags, **kwargs)


def read_toml(path: Path, what: str = "") -> dict[str, Any]:
    """A settings file's tables; one usage error line if it cannot be read or is not TOML.
    `what` names the file's role in the message ("gateway config")."""
    name = f"{what} {path}" if what else str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{name} is not valid TOML: {exc}") from None


def read_file(
    path: Path, options: Iterable[Option] = OPTIONS, section: str = RUN_SECTION
) -> dict[str, Any]:
    """One section of a settings file. The run's options may also stand at the top level (the
    file of a project that only runs the suite)."""
    data = read_toml(path)
    table = data.get(section)
    if table is None and section == RUN_SECTION:
        table = {key: value for key, value in data.items() if key not in SECTIONS}
    if not isinstance(table, dict):
        return {}
    where = path if section == RUN_SECTION else f"{path} [{section}]"
    unknown = sorted(set(table) - {option.name for option in options})
    if unknown:
        raise UsageError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    return dict(table)


def resolve(
    cli: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    *,
    options: Iterable[Option] = OPTIONS,
    section: str = RUN_SECTION,
) -> dict[str, Any]:
    """Each option's value: command line, then environment, then file, then default."""
    options = tuple(options)
    env = os.environ if env is None else env
    if config_file is None and SETTINGS_FILE.is_file():
        config_file = SETTINGS_FILE
    file_values = read_file(config_file, options, section) if config_file else {}
    values: dict[str, Any] = {}
    for option in options:
        if cli.get(option.name) not in (None, []):
            values[option.name] = _convert(option, cli[option.name], option.flag)
        elif option.env and env.get(option.env) not in (None, ""):
            values[option.name] = _convert(option, env[option.env], option.env)
        elif option.name in file_values:
            values[option.name] = _convert(
                option, file_values[option.name], f"{config_file}: {option.name}"
            )
        else:
            values[option.name] = option.default
    return values


# The options where a user states an Enterprise ("Custom") key's limits, by limit.
ENTERPRISE_LIMIT_OPTIONS = {
    "rpm": "enterprise_requests_per_min",
    "concurrent": "enterprise_concurrent",
}


def stated_limits(values: Mapping[str, Any]) -> Plan:
    """The main key's limits: its plan's documented figures, or for Enterprise ("Custom") the
    ones the user stated (None where nobody did: nothing is guessed)."""
    plan = values.get("plan") or "free"
    limits = PLANS[plan]
    if plan == "enterprise":
        return replace(
            limits,
            requests_per_min=values.get(ENTERPRISE_LIMIT_OPTIONS["rpm"]),
            concurrent=values.get(ENTERPRISE_LIMIT_OPTIONS["concurrent"]),
        )
    return limits
