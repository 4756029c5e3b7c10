"""Third-party OpenAI-compatible servers for the interop matrix: registry, installer, launcher.

Every server here was written by someone else and is installed from a package registry into an
environment of its own (a venv or an npm prefix) under a cache directory outside the repository:
``${OPCONFORM_INTEROP_CACHE:-~/.cache/opconform-interop}/<name>-<version>/``. A stamp file written
after a successful install makes later calls reuse it; changing the pinned version installs anew.

Usage::

    from tests.interop.servers import SERVERS, InteropUnavailable, start

    try:
        with start("mockllm") as running:
            running.base_url      # http://127.0.0.1:PORT/v1
            running.api_key       # the key to pass with --api-key
            running.models        # the model ids to pass with --models
            running.extra_args    # identity options that apply (e.g. --plan free --deterministic)
            running.opconform_args()  # all of the above as `opconform run` arguments
    except InteropUnavailable as exc:
        pytest.skip(str(exc))

Standard library only. Servers listen on 127.0.0.1 only and are stopped by killing their
process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
EXPECTED_DIR = HERE / "expected"

READY_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 5.0

# Keys in the documented shape. The mocks check none; the limiters count requests per key, so a
# second key lets the run judge per-key isolation (OP-RL-012).
DEFAULT_KEY = "op_sk_interop_main"
ALT_KEY = "op_sk_interop_alt"
# The mocks check no key and limit nothing: a Pro identity for the bulk checks keeps the run
# from pacing the whole suite at the Free plan's 60 requests/min (minutes, for nothing).
PRO_KEY = "op_sk_interop_pro"
MOCK_ARGS = ("--plan", "free", "--deterministic", "--pro-api-key", PRO_KEY)
# Gateways that enforce the Free plan's 60 requests/min for real: a run against one is paced at
# that rate (two to four minutes) and LiteLLM installs ~490 MB, so their cases are `make
# test-nightly`'s, not `make test`'s.
REAL_LIMITERS = frozenset({"openai-forward", "litellm"})


class InteropUnavailable(RuntimeError):
    """A server could not be installed or started (no npm, no registry, crash at start)."""


def cache_root() -> Path:
    """Where the servers' environments live (outside the repository)."""
    env = os.environ.get("OPCONFORM_INTEROP_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "opconform-interop"


# The command builder gets the install directory, the port and the working directory (where
# the server's config files were written) and returns argv.
CommandBuilder = Callable[[Path, int, Path], list[str]]


@dataclass(frozen=True)
class InteropServer:
    """One pinned third-party server and how to run it for `opconform run`."""

    name: str
    version: str
    install_kind: Literal["pip", "npm"]
    package: str  # the distribution (PyPI) or package (npm) name, without version
    summary: str  # one line: what it is and what it breaks
    command: CommandBuilder
    models: tuple[str, ...]
    api_key: str = DEFAULT_KEY
    # `opconform run` identity options that apply to this server (besides base URL, key, models)
    extra_args: tuple[str, ...] = ()
    config_files: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    # Pinned packages installed with it, for dependencies its own metadata forgets.
    extra_packages: tuple[str, ...] = ()
    # Another entry of SERVERS that this one forwards to (a gateway in front of a mock): started
    # first, and "{upstream}" in env values and config files becomes its http://127.0.0.1:PORT.
    upstream: str | None = None
    # Appended to the upstream's own command line (e.g. paced streams, so that a concurrency cap
    # has open streams to count).
    upstream_argv: tuple[str, ...] = ()

    @property
    def install_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    @property
    def requirement(self) -> str:
        sep = "==" if self.install_kind == "pip" else "@"
        return f"{self.package}{sep}{self.version}"

    @property
    def requirements(self) -> list[str]:
        return [self.requirement, *self.extra_packages]

    @property
    def stamp_text(self) -> str:
        return " ".join(self.requirements)

    @property
    def expected_file(self) -> Path:
        return EXPECTED_DIR / f"{self.name}.yaml"

    @property
    def stamp(self) -> Path:
        return self.install_dir / ".installed"


@dataclass
class RunningServer:
    """A started server; valid inside the `with start(...)` block."""

    server: InteropServer
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    start_seconds: float
    upstream: RunningServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def api_key(self) -> str:
        return self.server.api_key

    @property
    def models(self) -> tuple[str, ...]:
        return self.server.models

    @property
    def extra_args(self) -> tuple[str, ...]:
        return self.server.extra_args

    def opconform_args(self) -> list[str]:
        """Arguments for `opconform run` against this server."""
        return [
            "--base-url",
            self.base_url,
            "--api-key",
            self.api_key,
            "--models",
            ",".join(self.models),
            *self.extra_args,
        ]

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# ----------------------------------------------------------------------------- install


def _venv_bin(server: InteropServer, exe: str) -> Path:
    return server.install_dir / "venv" / "bin" / exe


def _npm_bin_js(server: InteropServer, relpath: str) -> Path:
    return server.install_dir / "npm" / "node_modules" / server.package / relpath


def _run_install_step(argv: list[str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        try:
            proc = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InteropUnavailable(f"install step {argv[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise InteropUnavailable(
            f"install step failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}"
        )


def install(server: InteropServer) -> float:
    """Install `server` into its own environment unless already there.

    Returns the seconds spent (0.0 when the cached install was reused). Raises
    InteropUnavailable when a tool is missing or the registry cannot be reached.
    """
    if server.stamp.exists() and server.stamp.read_text().strip() == server.stamp_text:
        return 0.0
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    lock_path = root / f"{server.name}-{server.version}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time per server
        if server.stamp.exists() and server.stamp.read_text().strip() == server.stamp_text:
            return 0.0
        started = time.monotonic()
        if server.install_dir.exists():
            shutil.rmtree(server.install_dir)  # a half-done install from an earlier attempt
        server.install_dir.mkdir(parents=True)
        log = server.install_dir / "install.log"
        if server.install_kind == "pip":
            venv_dir = server.install_dir / "venv"
            _run_install_step([sys.executable, "-m", "venv", str(venv_dir)], log)
            _run_install_step(
                [
                    str(_venv_bin(server, "python")),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-input",
                    *server.requirements,
                ],
                log,
            )
        else:
            npm = shutil.which("npm")
            if npm is None:
                raise InteropUnavailable(f"npm not found: cannot install {server.requirement}")
            _run_install_step(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(server.install_dir / "npm"),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--save-exact",
                    *server.requirements,
                ],
                log,
            )
        server.stamp.write_text(server.stamp_text + "\n")
        return time.monotonic() - started


# ----------------------------------------------------------------------------- run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def _fill(text: str, port: int, upstream: str) -> str:
    return text.replace("{port}", str(port)).replace("{upstream}", upstream)


def _offline_env(
    server: InteropServer, workdir: Path, port: int, upstream: str = ""
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # keep the project's own OP_* settings away from the servers
        if not key.startswith("OP_")
    }
    env.update(
        {
            "HOME": str(workdir),  # nothing of the user's config is read or written
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "DO_NOT_TRACK": "1",
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "HF_HUB_OFFLINE": "1",
            "no_proxy": "127.0.0.1,localhost,::1",
            "NO_PROXY": "127.0.0.1,localhost,::1",
        }
    )
    # "{port}" in a server's env values is replaced by the port it must listen on
    env.update({key: _fill(value, port, upstream) for key, value in server.env.items()})
    return env


@contextlib.contextmanager
def start(
    name: str, *, install_if_missing: bool = True, extra_argv: tuple[str, ...] = ()
) -> Iterator[RunningServer]:
    """Install (if needed) and start the server `name` on a free loopback port.

    Yields a RunningServer once the port accepts connections (at most READY_TIMEOUT_S); stops
    the whole process group on exit; a server with an upstream starts that first (with the
    server's `upstream_argv` as `extra_argv`) and stops it last. Raises KeyError for an unknown
    name and InteropUnavailable when the server cannot be installed or does not come up.
    """
    server = SERVERS[name]
    if install_if_missing:
        install(server)
    elif not server.stamp.exists():
        raise InteropUnavailable(f"{server.requirement} is not installed in {server.install_dir}")
    with contextlib.ExitStack() as stack:
        upstream = None
        if server.upstream is not None:
            upstream = stack.enter_context(
                start(
                    server.upstream,
                    install_if_missing=install_if_missing,
                    extra_argv=server.upstream_argv,
                )
            )
        with _start_one(server, upstream, extra_argv) as running:
            yield running


@contextlib.contextmanager
def _start_one(
    server: InteropServer, upstream: RunningServer | None, extra_argv: tuple[str, ...]
) -> Iterator[RunningServer]:
    name = server.name
    upstream_root = f"http://127.0.0.1:{upstream.port}" if upstream else ""
    with tempfile.TemporaryDirectory(prefix=f"opconform-interop-{name}-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        for filename, text in server.config_files.items():
            (workdir / filename).write_text(_fill(text, port, upstream_root))
        argv = [*server.command(server.install_dir, port, workdir), *extra_argv]
        log_path = workdir / "server.log"
        started = time.monotonic()
        with log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=_offline_env(server, workdir, port, upstream_root),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killpg stops all of it
                )
            except OSError as exc:
                raise InteropUnavailable(f"cannot start {name}: {exc}") from exc
        running = RunningServer(server, port, process, log_path, 0.0, upstream)
        try:
            deadline = started + READY_TIMEOUT_S
            while not _port_open(port):
                if process.poll() is not None:
                    raise InteropUnavailable(
                        f"{name} exited with {process.returncode} before listening:\n"
                        + running.log_tail()
                    )
                if time.monotonic() > deadline:
                    raise InteropUnavailable(
                        f"{name} did not listen on 127.0.0.1:{port} within "
                        f"{READY_TIMEOUT_S:.0f} s:\n" + running.log_tail()
                    )
                time.sleep(0.05)
            running.start_seconds = time.monotonic() - started
            yield running
        finally:
            _stop(process)


# ----------------------------------------------------------------------------- registry


def _mock_llm_cmd(install_dir: Path, port: int, workdir: Path) -> list[str]:
    del install_dir, port, workdir  # host and port come from the environment (HOST, PORT)
    node = shutil.which("node") or "node"
    return [node, str(_npm_bin_js(SERVERS["mock-llm"], "dist/main.js"))]


def _mockllm_cmd(install_dir: Path, port: int, workdir: Path) -> list[str]:
    exe = install_dir / "venv" / "bin" / "mockllm"
    return [
        str(exe),
        "start",
        "-r",
        str(workdir / "responses.yml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def _llmock_cmd(install_dir: Path, port: int, workdir: Path) -> list[str]:
    del workdir
    exe = install_dir / "venv" / "bin" / "llmock"
    # --rpm turns on its per-key limiter and OpenAI-named x-ratelimit-*-requests headers; high
    # enough that a conformance run never meets it.
    return [
        str(exe),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--rpm",
        "100000",
    ]


def _stubllm_cmd(install_dir: Path, port: int, workdir: Path) -> list[str]:
    del workdir
    exe = install_dir / "venv" / "bin" / "stubllm"
    return [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


# llmock's streams end within ~50 ms; paced at 150 ms a chunk (8 events for the suite's long
# prompt) they stay open about a second, long enough for a gateway's concurrency cap to meet
# five open streams.
PACED_STREAMS = ("--stream-chunk-delay-ms", "150")


def _openai_forward_cmd(install_dir: Path, port: int, workdir: Path) -> list[str]:
    del workdir
    # uvicorn directly: `aifd run` binds 0.0.0.0
    python = install_dir / "venv" / "bin" / "python"
    app = "openai_forward.app:app"
    return [str(python), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


# The Free plan's 60 requests/min, with the tool's default strategy (fixed window, started by
# the first request of a key). Its limiter keys on path + Authorization, so the limit applies to
# each endpoint separately; it sends no rate-limit headers and no Retry-After.
OPENAI_FORWARD_ENV = {
    "FORWARD_CONFIG": '[{"base_url": "{upstream}", "route": "/", "type": "openai"}]',
    "GLOBAL_RATE_LIMIT": "60/minute",
    "RATE_LIMIT_STRATEGY": "fixed-window",
    "LOG_OPENAI": "false",
    "CACHE_OPENAI": "false",
}


def _litellm_cmd(install_dir: Path, port: int, workdir: Path) -> list[str]:
    python = install_dir / "venv" / "bin" / "python"
    config = str(workdir / "config.yaml")
    return [
        str(python),
        "-m",
        "litellm.proxy.proxy_cli",
        "--config",
        config,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


# Without a database LiteLLM knows no virtual keys; its documented custom-auth hook is the way to
# give keys limits from files alone. Two keys of the Free plan (60 requests/min, 5 concurrent),
# enforced by LiteLLM's own limiter (per key, per calendar minute; only LLM calls count).
LITELLM_AUTH = f"""\
from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

FREE_KEYS = {{"{DEFAULT_KEY}", "{ALT_KEY}"}}


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if api_key in FREE_KEYS:
        return UserAPIKeyAuth(api_key=api_key, rpm_limit=60, max_parallel_requests=5)
    raise Exception("unknown key")
"""

LITELLM_CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "{upstream}/v1", api_key: upstream-key}
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_base: "{upstream}/v1", api_key: upstream-key}
general_settings:
  custom_auth: custom_auth.user_api_key_auth
litellm_settings:
  telemetry: false
"""

LITELLM_ENV = {
    # the cost map bundled in the package, not the one on the network
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "DISABLE_ADMIN_UI": "True",
}

# No prompt-specific entries: mockllm's streaming path does not consult them (a configured
# prompt streams the default answer but completes with the configured one), which would make
# OP-STREAM-010 depend on the suite's prompts. With defaults only every answer is the same text.
MOCKLLM_RESPONSES = """\
responses: {}
defaults:
  unknown_response: "I don't know the answer to that."
settings:
  lag_enabled: false
"""

SERVERS: dict[str, InteropServer] = {
    server.name: server
    for server in (
        InteropServer(
            name="mock-llm",
            version="0.1.29",
            install_kind="npm",
            package="@dwmkerr/mock-llm",
            summary="Express mock that echoes the last message; no auth, bare-bones schemas, "
            "Express HTML 404s, one model without `created`.",
            command=_mock_llm_cmd,
            models=("gpt-5.2",),
            extra_args=MOCK_ARGS,
            env={"HOST": "127.0.0.1", "PORT": "{port}"},
        ),
        InteropServer(
            name="mockllm",
            version="0.0.8",
            install_kind="pip",
            package="mockllm",
            summary="FastAPI mock answering from a YAML file; no auth, no GET /v1/models, "
            "FastAPI {'detail': ...} error bodies with 422.",
            command=_mockllm_cmd,
            models=("gpt-4",),
            extra_args=MOCK_ARGS,
            config_files={"responses.yml": MOCKLLM_RESPONSES},
        ),
        InteropServer(
            name="llmock",
            version="0.2.2",
            install_kind="pip",
            package="llmock",
            summary="Chaos mock of many providers; OpenAI-style errors (string code, 422 on "
            "validation), OpenAI-named rate-limit headers, no auth.",
            command=_llmock_cmd,
            models=("gpt-4o", "gpt-4o-mini"),
            extra_args=MOCK_ARGS,
        ),
        InteropServer(
            name="stubllm",
            version="0.1.5",
            install_kind="pip",
            package="stubllm",
            summary="Fixture-replay mock; no auth, OpenAI-style error bodies with string "
            "codes, 422 on validation.",
            command=_stubllm_cmd,
            models=("gpt-4o", "gpt-4o-mini"),
            extra_args=MOCK_ARGS,
        ),
        InteropServer(
            name="openai-forward",
            version="0.8.1",
            install_kind="pip",
            package="openai-forward",
            summary="Reverse proxy with per-key request limits (60/minute per key and path, "
            "fixed window) in front of llmock; no rate-limit headers, no Retry-After, no auth.",
            command=_openai_forward_cmd,
            models=("gpt-4o", "gpt-4o-mini"),
            extra_args=("--plan", "free", "--deterministic", "--alt-api-key", ALT_KEY),
            env=OPENAI_FORWARD_ENV,
            upstream="llmock",
            upstream_argv=PACED_STREAMS,
            # 0.8.1 imports yaml without declaring it
            extra_packages=("pyyaml==6.0.2",),
        ),
        InteropServer(
            name="litellm",
            version="1.77.7",
            install_kind="pip",
            package="litellm[proxy]",
            summary="LiteLLM proxy with two Free keys (custom auth: 60 requests/min, 5 concurrent) "
            "in front of llmock; OpenAI-named x-ratelimit-*-requests headers, fractional "
            "Retry-After.",
            command=_litellm_cmd,
            models=("gpt-4o", "gpt-4o-mini"),
            extra_args=("--plan", "free", "--deterministic", "--alt-api-key", ALT_KEY),
            config_files={"config.yaml": LITELLM_CONFIG, "custom_auth.py": LITELLM_AUTH},
            env=LITELLM_ENV,
            upstream="llmock",
            upstream_argv=PACED_STREAMS,
        ),
    )
}


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.interop.servers [install|start] [NAME...]`: install and time servers."""
    args = list(sys.argv[1:] if argv is None else argv)
    action = args.pop(0) if args and args[0] in {"install", "start", "list"} else "start"
    names = args or list(SERVERS)
    for name in names:
        server = SERVERS[name]
        if action == "list":
            print(f"{name}\t{server.requirement}\t{server.install_kind}\t{server.install_dir}")
            continue
        seconds = install(server)
        print(f"{name}: install {seconds:.1f} s ({server.install_dir})", flush=True)
        if action == "start":
            with start(name) as running:
                print(
                    f"{name}: listening after {running.start_seconds:.2f} s at {running.base_url}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
