"""schemas/openapi.yaml against the reference gateway, through schemathesis: every documented
answer (bodies, headers, status codes, content types, and each event of a stream through the
OpenAPI 3.2 `itemSchema`) matches the document, for generated valid and invalid requests."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from opconform.schemas.loader import OPENAPI_PATH

# Small enough for < 20 s on a 2-core machine shared with other work; the coverage phase still
# walks every documented boundary of the request schema.
MAX_EXAMPLES = 10


def _schemathesis(
    gateway: EmbeddedGateway, folder: Path, *options: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # The Enterprise key: its limits are out of reach, so no answer is a 429 that would only
    # measure the test's own speed.
    key = gateway.env["OP_ENTERPRISE_API_KEY"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(OPENAPI_PATH),
            "--url",
            gateway.base_url,
            "--header",
            f"Authorization: Bearer {key}",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--no-color",
            *options,
        ],
        cwd=folder,  # its .hypothesis/ and reports stay out of the checkout
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def gateway() -> Iterator[EmbeddedGateway]:
    with EmbeddedGateway() as running:
        yield running


def test_gateway_conforms_to_openapi_document(gateway: EmbeddedGateway, tmp_path: Path) -> None:
    start = time.monotonic()
    run = _schemathesis(gateway, tmp_path, "--checks", "all", "--max-examples", str(MAX_EXAMPLES))
    elapsed = time.monotonic() - start
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert cases, run.stdout[-2000:]
    assert int(cases[1]) == int(cases[2]) >= 100, cases[0]
    assert "Open API 3.2" in run.stdout
    print(f"schemathesis: {cases[0]} in {elapsed:.1f} s")


def test_stream_events_are_checked_one_by_one(tmp_path: Path) -> None:
    """The per-event schema is in force: a gateway whose chunks say object "chat.completion"
    fails on the document's streamed example, and only through the stream's event schema."""
    with EmbeddedGateway(["--fault", "stream-chunk-wrong-object"]) as faulty:
        run = _schemathesis(faulty, tmp_path, "--checks", "all", "--phases", "examples")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "ChatCompletionStreamEvent" in run.stdout, run.stdout[-3000:]
    assert "SSE event violates schema" in run.stdout
