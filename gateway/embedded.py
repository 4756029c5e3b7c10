"""Start the reference gateway as a child process on a free loopback port, and stop it.

Used by `opconform run` (the embedded default target), the pytest plugin and the project's own
tests. A separate process keeps the gateway's event loop off the suite's GIL, as a real target is.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import TracebackType

from opconform.config import variable
from opconform.gateway.options import PRINTED_LAST, SERVE_VARIABLES

LAST_VARIABLE = variable(PRINTED_LAST)  # printed last by `serve --print-env`


def serve_arguments(host: str, args: Sequence[str]) -> list[str]:
    """`opconform serve` on a free port of `host`, printing its OP_* variables when it is up."""
    return [
        "serve",
        "--host",
        host,
        "--port",
        "0",
        "--print-env",
        "--quiet",
        # Configured by its arguments alone (--gateway-args), never by the settings a user
        # keeps for `opconform serve`: the embedded target is the contract's own.
        "--config",
        os.devnull,
        *args,
    ]


def printed_variable(line: str) -> tuple[str, str]:
    """One line of `serve --print-env` as (name, value)."""
    # `# NAME=value` lines carry what no command reads (the Enterprise key).
    text = line.strip().removeprefix("export ").removeprefix("# ")
    name, _, value = text.partition("=")
    return name, value


class GatewayStartError(RuntimeError):
    pass


class EmbeddedGateway:
    def __init__(self, args: list[str] | str | None = None, host: str = "127.0.0.1") -> None:
        self.args = shlex.split(args) if isinstance(args, str) else list(args or [])
        self.host = host
        self.env: dict[str, str] = {}
        self._process: subprocess.Popen[str] | None = None
        # Lives as long as the gateway; closed in __exit__.
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115

    def start(self, timeout: float = 30.0) -> dict[str, str]:
        command = [sys.executable, "-m", "opconform", *serve_arguments(self.host, self.args)]
        env = {k: v for k, v in os.environ.items() if k not in SERVE_VARIABLES}
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        timer = threading.Timer(timeout, self._process.kill)
        timer.start()
        try:
            assert self._process.stdout is not None
            for line in self._process.stdout:
                name, value = printed_variable(line)
                if name.startswith("OP_"):
                    self.env[name] = value
                if name == LAST_VARIABLE:
                    break
        finally:
            timer.cancel()
        if LAST_VARIABLE not in self.env:
            self.stop()
            raise GatewayStartError(f"the embedded gateway did not start: {self.log_tail()}")
        return self.env

    @property
    def base_url(self) -> str:
        return self.env[variable("base_url")]

    def log_tail(self, size: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read()[-size:].strip() or "(no output)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> EmbeddedGateway:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()
