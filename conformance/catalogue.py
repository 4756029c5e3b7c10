"""The requirement catalogue (requirements.yaml), loaded once: the requirements, their areas
and the prerequisite graph (`needs`) that checks and whole-run rules are blocked by.

Everything else derives from here: the areas (in the order the catalogue first names them),
a check's area (its requirements'), and a judgement's prerequisites (the needs of the
requirements it judges, plus what the situation it provokes stands on, declared beside it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from opconform.exitcodes import UsageError

CATALOGUE_PATH = Path(__file__).resolve().parent / "requirements.yaml"
# The C loader reads the catalogue in a tenth of the time, and pytest_configure reads it for
# every session that loads the plugin.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NO_AREA = "other"  # a check whose requirements the catalogue does not know


class CatalogueError(ValueError):
    """requirements.yaml contradicts itself (an unknown ID in needs, a cycle)."""


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
    # Requirements every judgement of this one stands on: when one of them is broken, a failure
    # here is its consequence (BLOCKED), not a second deviation.
    needs: tuple[str, ...] = ()

    @property
    def testable(self) -> bool:
        return not self.untestable and not self.retired


def load(path: Path) -> dict[str, Requirement]:
    """Read and check a catalogue: every `needs` names a requirement, and none leads back to
    itself (a cycle would block a deviation by its own consequence)."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    catalogue = {
        entry["id"]: Requirement(**{**entry, "needs": tuple(entry.get("needs") or ())})
        for entry in data["requirements"]
    }
    for req in catalogue.values():
        unknown = [rid for rid in req.needs if rid not in catalogue]
        if unknown:
            raise CatalogueError(f"{path.name}: {req.id} needs unknown {', '.join(unknown)}")
    cycle = find_cycle({rid: req.needs for rid, req in catalogue.items()})
    if cycle:
        raise CatalogueError(f"{path.name}: needs form a cycle: {' -> '.join(cycle)}")
    return catalogue


def find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str]:
    """One cycle of `graph` as a path that ends where it starts, or [] when it is acyclic."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for nxt in graph.get(node, ()):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return []

    for start in graph:
        cycle = visit(start, [])
        if cycle:
            return cycle
    return []


@cache
def requirements() -> dict[str, Requirement]:
    return load(CATALOGUE_PATH)


def requirement(requirement_id: str) -> Requirement:
    try:
        return requirements()[requirement_id]
    except KeyError:
        raise KeyError(f"{requirement_id} is not in {CATALOGUE_PATH.name}") from None


def areas(catalogue: dict[str, Requirement] | None = None) -> tuple[str, ...]:
    """The suite's areas, in the order the catalogue first names them (reports follow it)."""
    catalogue = requirements() if catalogue is None else catalogue
    return tuple(dict.fromkeys(req.area for req in catalogue.values()))


def check_areas(names: Iterable[str]) -> None:
    """--area names only areas of the catalogue (a usage error names the others)."""
    known = areas()
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UsageError(f"--area: unknown area(s) {', '.join(unknown)}; known: {', '.join(known)}")


def area_of(requirement_ids: Iterable[str]) -> str:
    """A check's area: that of the first of its requirements the catalogue knows."""
    catalogue = requirements()
    return next((catalogue[r].area for r in requirement_ids if r in catalogue), NO_AREA)


def prerequisites(
    requirement_ids: Iterable[str],
    situation: Iterable[str] = (),
    catalogue: dict[str, Requirement] | None = None,
) -> list[str]:
    """What a judgement of `requirement_ids` stands on, in order: their needs, then what the
    situation it provokes needs beyond them (a check's `needs` marker, a rule's own); never
    one of its own requirements."""
    catalogue = requirements() if catalogue is None else catalogue
    own = list(requirement_ids)
    inherited = [rid for r in own if r in catalogue for rid in catalogue[r].needs]
    return [rid for rid in dict.fromkeys([*inherited, *situation]) if rid not in own]
