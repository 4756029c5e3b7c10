"""Run folders as the tests look at them and make them."""

from __future__ import annotations

import json
from pathlib import Path


def files(folder: Path) -> list[str]:
    """Every path under `folder`, relative to it: what a command left behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def conformance_run(folder: Path, statuses: dict[str, str]) -> Path:
    """A run folder holding only a results.json with these check statuses."""
    folder.mkdir()
    checks = [
        {"id": check, "requirements": ["OP-X-001"], "status": status, "message": ""}
        for check, status in statuses.items()
    ]
    document = {"kind": "conformance", "verdict": "conformant", "checks": checks}
    (folder / "results.json").write_text(json.dumps(document))
    return folder
