"""The official SDKs as clients of the target: retries off, every request counted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from conformance.plugin import disabled
from opconform.config import Target
from opconform.redact import Redactor

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_SCRIPT = NODE_DIR / "sdk_check.mjs"


def python_client(api: Any, target: Target, key: str) -> Any:
    """openai.OpenAI against the target with max_retries=0; requests count in api.sent."""
    import openai

    label = f"sdk-python:{key}"

    def count(_request: Any) -> None:
        api.sent[label] = api.sent.get(label, 0) + 1

    http_client = openai.DefaultHttpxClient(event_hooks={"request": [count]}, trust_env=False)
    return openai.OpenAI(
        base_url=target.base_url,
        api_key=api.secret(key),
        max_retries=0,
        timeout=target.request_timeout,
        http_client=http_client,
    )


def raised(call: Any) -> str:
    """The class name of the SDK exception `call` raises ("no error" if none): a wrong class
    is the check's failure, not a harness error."""
    import openai

    try:
        call()
    except openai.OpenAIError as exc:
        return type(exc).__name__
    return "no error"


def node_available() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        return None
    return node


def run_node(
    api: Any, target: Target, mode: str, *, key: str, model: str = "", restricted_model: str = ""
) -> dict[str, Any]:
    """Run the Node SDK script; keys go through the environment, never the command line."""
    node = node_available()
    if node is None:
        disabled("the Node SDK needs node and `npm ci` in conformance/node (make setup does it)")
    env = {
        **os.environ,
        "OP_SDK_BASE_URL": target.base_url,
        "OP_SDK_KEY": api.secret(key),
        "OP_SDK_MODEL": model,
        "OP_SDK_RESTRICTED_MODEL": restricted_model,
        "OP_SDK_RESTRICTED_KEY": api.keys.get("restricted") or "",
        "OP_SDK_MODE": mode,
        "OP_SDK_TIMEOUT_MS": str(int(target.request_timeout * 1000)),
    }
    try:
        done = subprocess.run(
            [str(node), str(NODE_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=target.request_timeout * 3,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the Node SDK did not finish in time") from None
    api.sent[f"sdk-node:{key}"] = api.sent.get(f"sdk-node:{key}", 0)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"the Node SDK script printed no result (exit {done.returncode}): "
            f"{Redactor(api.keys.values()).text(done.stderr[-500:])}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    api.sent[f"sdk-node:{key}"] += int(result.get("requests", 0))
    return result
