"""The options of `opconform serve`: one table of the shared `opconform.config.Option`, resolved
like every command's (command line, then OP_SERVE_* variables, then the `[serve]` section of
opconform.toml, then the default here)."""

from __future__ import annotations

from opconform.config import Option, prefixed
from opconform.contract import WINDOW_SECONDS

SERVE_SECTION = "serve"
_serve = prefixed("OP_SERVE_")


SERVE_OPTIONS: tuple[Option, ...] = (
    _serve("host", "address to listen on", default="127.0.0.1"),
    _serve("port", "port to listen on; 0 picks a free port", kind="int", default=8000),
    _serve(
        "plans",
        "TOML file of plans, keys and models (see gateway/example-config.toml)",
        metavar="FILE",
    ),
    _serve(
        "fault",
        "switch on a fault (repeatable or comma-separated); see --list-faults",
        kind="list",
        default=[],
        metavar="NAME",
    ),
    _serve("ttft_ms", "time to first token, every model", kind="float"),
    _serve("tpot_ms", "time per output token, every model", kind="float"),
    _serve("jitter_ms", "uniform jitter added to each token's time", kind="float", default=0.0),
    _serve(
        "window_seconds",
        f"requests/min window length (test-only; the contract says {WINDOW_SECONDS:g})",
        kind="int",
    ),
    _serve(
        "answer_tokens",
        "every answer at most N tokens, whatever the prompt (a short, fast target)",
        kind="int",
        metavar="N",
    ),
    _serve(
        "timing_log",
        "append a JSON line per streamed event, timed as it is sent (load-test truth)",
        metavar="FILE",
    ),
    _serve("quiet", "print nothing but --print-env", kind="bool", default=False),
    _serve("access_log", "log every request", kind="bool", default=False),
    _serve("tls_cert", "serve HTTPS with this PEM certificate", metavar="FILE"),
    _serve("tls_key", "its key (default: inside --tls-cert)", metavar="FILE"),
)
SERVE_VARIABLES = tuple(option.env for option in SERVE_OPTIONS if option.env)
# `serve --print-env` prints this run option's variable last; the embedded gateway reads to it.
PRINTED_LAST = "deterministic"
