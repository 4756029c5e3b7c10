"""The requirement catalogue (requirements.yaml), loaded once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

CATALOGUE_PATH = Path(__file__).resolve().parent / "requirements.yaml"


@dataclass(frozen=True)
class Requirement:
    id: str
    area: str
    source: str
    level: str = ""  # MUST or SHOULD; empty for untestable entries
    summary: str = ""
    basis: str = ""
    untestable: str = ""
    retired: str = ""  # why the ID is no longer used (IDs are never reused or renumbered)

    @property
    def testable(self) -> bool:
        return not self.untestable and not self.retired


@cache
def requirements() -> dict[str, Requirement]:
    data = yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8"))
    return {entry["id"]: Requirement(**entry) for entry in data["requirements"]}


def requirement(requirement_id: str) -> Requirement:
    try:
        return requirements()[requirement_id]
    except KeyError:
        raise KeyError(f"{requirement_id} is not in {CATALOGUE_PATH.name}") from None
