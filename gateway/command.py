"""`opconform serve`: run the reference gateway (registered as an `opconform.commands` entry
point, like every subcommand)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

from opconform.config import add_arguments, resolve
from opconform.exitcodes import UsageError
from opconform.gateway.options import SERVE_OPTIONS, SERVE_SECTION
from opconform.outcome import HARNESS


def _add_options(p: argparse.ArgumentParser) -> None:
    add_arguments(p.add_argument, SERVE_OPTIONS)
    p.add_argument("--config", type=Path, help="settings file (default ./opconform.toml)")
    p.add_argument("--list-faults", action="store_true", help="list the faults and exit")
    p.add_argument(
        "--print-env",
        action="store_true",
        help="print shell-ready OP_* variables for this gateway before serving",
    )


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the reference gateway",
        description="Run the reference gateway (mock models, documented limits). Settings "
        "come from the command line, OP_SERVE_* variables and the [serve] section of "
        "opconform.toml.",
    )
    _add_options(p)
    p.set_defaults(handler=_serve)


class _ArgsParser(argparse.ArgumentParser):
    """The serve parser for --gateway-args: its errors become one UsageError line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def check_gateway_args(text: str | None, *, flag: str = "--gateway-args") -> None:
    """Refuse, as a usage error, what the embedded gateway would refuse to start with (an
    unknown option or fault, a missing file): parsed and checked by serve's own parser and
    checks, so the run or load command never starts a gateway that dies on its arguments."""
    if not text:
        return
    parser = _ArgsParser(prog="serve", add_help=False)
    _add_options(parser)
    try:
        args = parser.parse_args(shlex.split(text))
        # As the embedded gateway starts: its arguments alone, no OP_SERVE_* and no file.
        _settings(args, config_file=Path(os.devnull), env={})
    except UsageError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None
    except ValueError as exc:  # shlex: an unclosed quote
        raise UsageError(f"{flag} {text!r}: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    from opconform.gateway.faults import FAULTS
    from opconform.gateway.server import serve

    if args.list_faults:
        width = max(len(name) for name in FAULTS)
        for fault in FAULTS.values():
            breaks = ",".join(fault.breaks) or "chaos"
            print(f"{fault.name:<{width}}  {breaks:<24}  {fault.description}")
        return 0
    config, values = _settings(args, config_file=args.config)
    tls_cert, tls_key = values["tls_cert"], values["tls_key"]
    host, port = values["host"], values["port"]
    try:
        serve(
            config,
            host,
            port,
            print_env=args.print_env,
            quiet=values["quiet"],
            access_log=values["access_log"],
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
    except OSError as exc:
        print(f"opconform serve: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return HARNESS
    except KeyboardInterrupt:
        pass
    return 0


def _settings(
    args: argparse.Namespace, *, config_file: Path | None, env: dict[str, str] | None = None
) -> tuple[Any, dict[str, Any]]:
    """The gateway's configuration and resolved values, every check applied (UsageError)."""
    from dataclasses import replace

    from opconform.gateway.catalogue import Latency
    from opconform.gateway.faults import unknown_faults
    from opconform.gateway.settings import ConfigError, load_config

    values = resolve(
        {option.name: getattr(args, option.name) for option in SERVE_OPTIONS},
        env,
        config_file,
        options=SERVE_OPTIONS,
        section=SERVE_SECTION,
    )
    names = values["fault"]
    unknown = unknown_faults(names)
    if unknown:
        raise UsageError(f"unknown fault(s): {', '.join(unknown)} (see serve --list-faults)")
    plans = Path(values["plans"]) if values["plans"] else None
    try:
        config = load_config(plans)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    config = replace(config, faults=frozenset(names))
    if values["window_seconds"] is not None:
        if values["window_seconds"] < 1:
            raise UsageError("--window-seconds must be at least 1")
        config = replace(config, window_seconds=values["window_seconds"])
    if values["answer_tokens"] is not None:
        if values["answer_tokens"] < 1:
            raise UsageError("--answer-tokens must be at least 1")
        config = replace(config, answer_tokens=values["answer_tokens"])
    if values["timing_log"]:
        timing_log = Path(values["timing_log"])
        if not timing_log.parent.is_dir():
            raise UsageError(f"--timing-log {timing_log}: no such folder")
        config = replace(config, timing_log=timing_log)
    ttft, tpot = values["ttft_ms"], values["tpot_ms"]
    if ttft is not None and tpot is None:
        # Either one replaces every model's latency profile: a TTFT alone would silently make
        # every later token arrive at once. (--tpot-ms alone, a first token without a wait, is
        # what some faults use to hold streams open.)
        raise UsageError("--ttft-ms needs --tpot-ms too (alone, every model's per-token time is 0)")
    if values["jitter_ms"] and tpot is None:
        raise UsageError("--jitter-ms needs --tpot-ms (it jitters the token times)")
    if ttft is not None or tpot is not None:
        config = config.with_latency(
            Latency(ttft_ms=ttft or 0.0, tpot_ms=tpot or 0.0, jitter_ms=values["jitter_ms"])
        )
    tls_cert, tls_key = values["tls_cert"], values["tls_key"]
    if tls_key and not tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: no such file")
    if tls_cert:
        import ssl

        # Load the pair now: a bad file is one line before anything is printed, rather than a
        # uvicorn traceback after the URL was announced (and SSLError is an OSError, which
        # would read as "cannot listen" below).
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UsageError(f"--tls-cert {tls_cert}: cannot load it ({reason})") from None
    return config, values
