"""`opconform serve`: run the reference gateway (registered as an `opconform.commands` entry
point, like every subcommand)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.options import SERVE_OPTIONS, SERVE_SECTION
from opconform.config import add_arguments, resolve
from opconform.exitcodes import HARNESS, UsageError


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the reference gateway",
        description="Run the reference gateway (mock models, documented limits). Settings "
        "come from the command line, OP_SERVE_* variables and the [serve] section of "
        "opconform.toml.",
    )
    add_arguments(p.add_argument, SERVE_OPTIONS)
    p.add_argument("--config", type=Path, help="settings file (default ./opconform.toml)")
    p.add_argument("--list-faults", action="store_true", help="list the faults and exit")
    p.add_argument(
        "--print-env",
        action="store_true",
        help="print shell-ready OP_* variables for this gateway before serving",
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from gateway.catalogue import Latency
    from gateway.faults import FAULTS, unknown_faults
    from gateway.server import serve
    from gateway.settings import ConfigError, load_config

    if args.list_faults:
        width = max(len(name) for name in FAULTS)
        for fault in FAULTS.values():
            breaks = ",".join(fault.breaks) or "chaos"
            print(f"{fault.name:<{width}}  {breaks:<24}  {fault.description}")
        return 0
    values = resolve(
        {option.name: getattr(args, option.name) for option in SERVE_OPTIONS},
        config_file=args.config,
        options=SERVE_OPTIONS,
        section=SERVE_SECTION,
    )
    names = values["fault"]
    unknown = unknown_faults(names)
    if unknown:
        raise UsageError(f"unknown fault(s): {', '.join(unknown)} (see --list-faults)")
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
    if values["ttft_ms"] is not None or values["tpot_ms"] is not None:
        config = config.with_latency(
            Latency(
                ttft_ms=values["ttft_ms"] or 0.0,
                tpot_ms=values["tpot_ms"] or 0.0,
                jitter_ms=values["jitter_ms"],
            )
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
