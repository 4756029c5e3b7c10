"""The Go SDK runner (conformance/go): built once per run into a cache outside the repository,
keyed by its sources, go.mod, go.sum and the Go version, so a later run (or the parallel runs of
the mutation matrix) reuses the binary. Without `go`, or when its modules cannot be had (no
module cache and no proxy), the Go checks are DISABLED with the reason, as the Node checks are
without npm; a runner that does not compile is the harness's error, not a DISABLED check.

`python -m opconform.conformance.gosdk` builds it ahead of a run (make setup does, when go
exists)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"
BINARY_NAME = "sdkcheck"
# The first build compiles openai-go (large): about two minutes on a 2-core machine.
BUILD_SECONDS = 600.0
MODULE_SECONDS = 300.0
# The Go SDKs and the error type each returns for an error answer it could read.
TYPED_ERRORS = {"go-openai": "*openai.APIError", "openai-go": "*openai.Error"}


@dataclass(frozen=True)
class Unavailable:
    reason: str


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opconform" / "go-sdk"


def _go_env() -> dict[str, str]:
    # The pinned go.sum is the truth: never rewrite it, never fetch another toolchain, and
    # ignore a go.work the user may have above the checkout.
    return {
        **os.environ,
        "GOFLAGS": "-mod=readonly -buildvcs=false",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
    }


def _key(go: str) -> str:
    digest = hashlib.sha256()
    for path in sorted([*GO_DIR.glob("*.go"), GO_DIR / "go.mod", GO_DIR / "go.sum"]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=False
    )
    digest.update(version.stdout.strip().encode())
    return digest.hexdigest()[:16]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


_built: dict[str, Path | Unavailable] = {}


def binary(deadline: float | None = None) -> Path | Unavailable:
    """The runner's path, built if needed (once per process: a run asks many times), or why
    the Go SDK checks cannot run. `deadline` (seconds left in the run) bounds the build."""
    go = shutil.which("go")
    if go is None:
        return Unavailable("the Go SDK checks need the go toolchain on PATH (Go 1.26 or newer)")
    if go in _built:
        return _built[go]
    try:
        _built[go] = _build(go, deadline)
    except subprocess.TimeoutExpired as exc:  # not retried by every later check of the run
        _built[go] = Unavailable(f"building the Go SDK runner took longer than {exc.timeout:g}s")
    return _built[go]


def _build(go: str, deadline: float | None) -> Path | Unavailable:
    folder = cache_root() / _key(go)
    target = folder / BINARY_NAME
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    limit = BUILD_SECONDS if deadline is None else max(1.0, min(BUILD_SECONDS, deadline))
    env = _go_env()
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run builds it meanwhile: wait for that one
        if target.is_file():
            return target
        fetched = subprocess.run(
            [go, "mod", "download"],
            cwd=GO_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=min(limit, MODULE_SECONDS),
            check=False,
        )
        if fetched.returncode != 0:
            return Unavailable(
                "the Go SDK modules could not be had (no module cache and no reachable proxy?): "
                + _last_line(fetched.stderr)
            )
        partial = folder / f"{BINARY_NAME}.{os.getpid()}.tmp"
        built = subprocess.run(
            [go, "build", "-trimpath", "-o", str(partial), "."],
            cwd=GO_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
        if built.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"the Go SDK runner does not build: {built.stderr[-800:]}")
        partial.replace(target)  # whole or absent, never half-written
    return target


def main() -> int:
    try:
        found = binary()
    except RuntimeError as exc:  # our runner does not compile: say so in one line
        print(str(exc).strip().splitlines()[-1] if str(exc).strip() else "go build failed")
        return 1
    if isinstance(found, Unavailable):
        print(f"Go SDK checks will be DISABLED: {found.reason}")
        return 0
    print(f"Go SDK runner: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
