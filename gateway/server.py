"""Run the reference gateway: `opconform serve`."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import TextIO

import uvicorn

from opconform.config import OPTIONS, variable
from opconform.contract import IDENTITIES
from opconform.gateway.app import create_app
from opconform.gateway.options import PRINTED_LAST
from opconform.gateway.settings import GatewayConfig

# Which identity each printed variable carries; the conformance suite reads the same names.
ENV_ROLES = tuple((identity.env, identity.label) for identity in IDENTITIES)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url(host: str, port: int, *, tls: bool = False) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/v1"


def environment(config: GatewayConfig, url: str) -> dict[str, str]:
    """The OP_* variables that point opconform (or any tool) at this gateway."""
    env = {variable("base_url"): url}
    for key_variable, role in ENV_ROLES:
        key = config.key_for_role(role)
        if key is not None:
            env[key_variable] = key.secret
            if role == "main":
                env[variable("plan")] = key.plan.name
    enterprise = config.plans.get("enterprise")
    if enterprise is not None:
        env[variable("enterprise_requests_per_min")] = str(enterprise.requests_per_min)
        env[variable("enterprise_concurrent")] = str(enterprise.concurrent)
    env[variable("restricted_model")] = config.restricted_model
    env[variable("upstream_error_model")] = "op-test-upstream-error"
    env[variable("unavailable_model")] = "op-test-unavailable"
    env[variable("midstream_error_model")] = "op-test-midstream-error"
    env[variable(PRINTED_LAST)] = "1"  # last: the embedded gateway reads up to here
    return env


def env_lines(env: dict[str, str]) -> list[str]:
    """`--print-env`: an `export` for each variable some opconform command reads; the others
    (the Enterprise key) only as comments, so a sourced file sets nothing nobody reads."""
    read = {option.env for option in OPTIONS}
    lines = [f"export {name}={value}" for name, value in env.items() if name in read]
    others = [f"# {name}={value}" for name, value in env.items() if name not in read]
    if others:
        lines[-1:-1] = ["# read by no command; e.g. the Enterprise key, as OP_API_KEY:", *others]
    return lines


def describe(config: GatewayConfig, url: str, out: TextIO) -> None:
    print(f"opconform reference gateway on {url}", file=out)
    for key in config.keys.values():
        plan = key.plan
        tokens = "unlimited" if plan.tokens_per_day is None else f"{plan.tokens_per_day:,}"
        denied = f", denied: {', '.join(sorted(key.denied_models))}" if key.denied_models else ""
        print(
            f"  key {key.secret}  plan={plan.name} rpm={plan.requests_per_min} "
            f"tokens/day={tokens} concurrent={plan.concurrent}{denied}",
            file=out,
        )
    if config.faults:
        print(f"  faults: {', '.join(sorted(config.faults))}", file=out)
    out.flush()


def serve(
    config: GatewayConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    print_env: bool = False,
    quiet: bool = False,
    access_log: bool = False,
    on_ready: Callable[[str], None] | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve until interrupted; HTTPS when tls_cert is given (tls_key: None if the key is in
    the certificate file)."""
    sock = bind_socket(host, port)
    url = base_url(host, sock.getsockname()[1], tls=bool(tls_cert))
    if print_env:
        for line in env_lines(environment(config, url)):
            print(line)
        sys.stdout.flush()
    if not quiet:
        describe(config, url, sys.stderr if print_env else sys.stdout)
    if on_ready is not None:
        on_ready(url)
    uv_config = uvicorn.Config(
        create_app(config),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning" if quiet or print_env else "info",
        access_log=access_log,
        timeout_graceful_shutdown=1,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
    uvicorn.Server(uv_config).run(sockets=[sock])
