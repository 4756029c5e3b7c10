"""`opconform serve`: run the reference gateway (registered as an `opconform.commands` entry
point, like every subcommand)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from opconform.exitcodes import HARNESS, UsageError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the reference gateway",
        description="Run the reference gateway (mock models, documented limits).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--config", type=Path, help="TOML file of plans and keys")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="switch on a fault (repeatable or comma-separated); see --list-faults",
    )
    p.add_argument("--list-faults", action="store_true", help="list the faults and exit")
    p.add_argument(
        "--print-env",
        action="store_true",
        help="print shell-ready OP_* variables for this gateway before serving",
    )
    p.add_argument("--ttft-ms", type=_positive_float, help="time to first token, every model")
    p.add_argument("--tpot-ms", type=_positive_float, help="time per output token, every model")
    p.add_argument(
        "--jitter-ms",
        type=_positive_float,
        default=0.0,
        help="uniform jitter added to each token's time",
    )
    p.add_argument(
        "--window-seconds",
        type=int,
        help="requests/min window length (test-only; the contract says 60)",
    )
    p.add_argument(
        "--answer-tokens",
        type=int,
        metavar="N",
        help="every answer at most N tokens, whatever the prompt (a short, fast target)",
    )
    p.add_argument(
        "--timing-log",
        type=Path,
        metavar="FILE",
        help="append a JSON line per streamed event, timed as it is sent (load-test truth)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but --print-env")
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this PEM cert")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="its key (default: in --tls-cert)")
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
    names = [n.strip() for item in args.fault for n in item.split(",") if n.strip()]
    unknown = unknown_faults(names)
    if unknown:
        raise UsageError(f"unknown fault(s): {', '.join(unknown)} (see --list-faults)")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    config = replace(config, faults=frozenset(names))
    if args.window_seconds is not None:
        if args.window_seconds < 1:
            raise UsageError("--window-seconds must be at least 1")
        config = replace(config, window_seconds=args.window_seconds)
    if args.answer_tokens is not None:
        if args.answer_tokens < 1:
            raise UsageError("--answer-tokens must be at least 1")
        config = replace(config, answer_tokens=args.answer_tokens)
    if args.timing_log is not None:
        if not args.timing_log.parent.is_dir():
            raise UsageError(f"--timing-log {args.timing_log}: no such folder")
        config = replace(config, timing_log=args.timing_log)
    if args.ttft_ms is not None or args.tpot_ms is not None:
        config = config.with_latency(
            Latency(
                ttft_ms=args.ttft_ms or 0.0, tpot_ms=args.tpot_ms or 0.0, jitter_ms=args.jitter_ms
            )
        )
    if args.tls_key and not args.tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    if args.tls_cert:
        import ssl

        # Load the pair now: a bad file is one line before anything is printed, rather than a
        # uvicorn traceback after the URL was announced (and SSLError is an OSError, which
        # would read as "cannot listen" below).
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UsageError(f"--tls-cert {args.tls_cert}: cannot load it ({reason})") from None
    try:
        serve(
            config,
            args.host,
            args.port,
            print_env=args.print_env,
            quiet=args.quiet,
            access_log=args.access_log,
            tls_cert=str(args.tls_cert) if args.tls_cert else None,
            tls_key=str(args.tls_key) if args.tls_key else None,
        )
    except OSError as exc:
        print(
            f"opconform serve: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return HARNESS
    except KeyboardInterrupt:
        pass
    return 0
