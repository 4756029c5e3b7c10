"""Which checks a run runs, in which order, and how a narrowed run describes itself: what the
plugin's collection hooks decide, over pytest items and the run's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opconform.conformance import catalogue
from opconform.conformance.settings import RunSettings

OPT_IN_MARKERS = ("slow", "quota")
SUITE_DIR = Path(__file__).resolve().parent


def is_check(item: pytest.Item) -> bool:
    return item.get_closest_marker("requirement") is not None


def requirement_ids(item: pytest.Item) -> list[str]:
    return [rid for mark in item.iter_markers("requirement") for rid in mark.args]


def needs_of(item: pytest.Item) -> list[str]:
    """The requirements a check stands on: its requirements' needs (requirements.yaml), then
    what its situation needs beyond them (`@pytest.mark.needs("OP-RL-007")`)."""
    situation = [rid for mark in item.iter_markers("needs") for rid in mark.args]
    return catalogue.prerequisites(requirement_ids(item), situation)


def area_of(item: pytest.Item) -> str:
    """Its requirements' area (requirements.yaml), unless the check declares its own."""
    mark = item.get_closest_marker("area")
    return str(mark.args[0]) if mark else catalogue.area_of(requirement_ids(item))


def area_marker(area: str) -> str:
    return area.replace("-", "_")


def opt_in_of(item: pytest.Item) -> list[str]:
    return [m for m in OPT_IN_MARKERS if item.get_closest_marker(m)]


@dataclass
class Selected:
    keep: list[pytest.Item] = field(default_factory=list)
    drop: list[pytest.Item] = field(default_factory=list)  # deselected
    opt_in: list[pytest.Item] = field(default_factory=list)  # dropped too: DISABLED, not run


def select(items: list[pytest.Item], settings: RunSettings, explicit_markers: bool) -> Selected:
    """--area and --requirement narrow the run; the opt-in markers are left out unless -m
    names what to run."""
    areas, wanted = set(settings.areas), set(settings.requirements)
    chosen = Selected()
    for item in items:
        if not is_check(item):
            chosen.keep.append(item)
        elif (areas and area_of(item) not in areas) or (
            wanted and not wanted & set(requirement_ids(item))
        ):
            chosen.drop.append(item)
        elif opt_in_of(item) and not explicit_markers:
            chosen.drop.append(item)
            chosen.opt_in.append(item)
        else:
            chosen.keep.append(item)
    # The rate-limit module exhausts the main key, so it runs after every other check (by file,
    # not area: some of its checks belong to other areas); quota and order_last after it.
    chosen.keep.sort(key=_rank)
    return chosen


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker("order_last"):
        return 3
    if item.get_closest_marker("quota"):
        return 2
    return 1 if item.path.name == "test_ratelimit.py" else 0


def describe(
    config: pytest.Config, settings: RunSettings, selected: int, left_out: set[str]
) -> str | None:
    """What a narrowed run selected, e.g. "selected --area auth (12 of 121 checks)"; None for
    the whole suite (every check but the opt-in ones, or more)."""
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    whole = any(path == SUITE_DIR or path in SUITE_DIR.parents for path in paths)
    if not left_out and whole:
        return None
    parts = [
        f"{flag} {','.join(values)}"
        for flag, values in (("--area", settings.areas), ("--requirement", settings.requirements))
        if values
    ]
    parts += [
        f"{flag} {value}"
        for flag, value in (
            ("-k", config.getoption("keyword", "")),
            ("-m", config.getoption("markexpr", "")),
        )
        if value
    ]
    if not whole:
        parts += [str(arg) for arg in config.args]
    total = f"{selected} of {selected + len(left_out)}" if whole else str(selected)
    return f"selected {' '.join(parts) or 'part of the suite'} ({total} checks)"


def markers() -> list[str]:
    """The markers a conformance run registers, one per area among them."""
    return [
        "requirement(*ids): the requirement IDs (conformance/requirements.yaml) a check covers",
        "area(name): the area of a check (auth, models, chat, ...)",
        "slow: opt-in, waits for rate-limit windows",
        "quota: opt-in, spends a Free key's tokens/day",
        "order_last: run after every other check",
        "needs(*ids): what this check's situation stands on beyond its requirements' needs "
        "(requirements.yaml); if one is broken, it is BLOCKED",
        *(f"{area_marker(area)}: checks of the {area} area" for area in catalogue.areas()),
    ]


def keyword_or_mark(config: pytest.Config) -> bool:
    return bool(config.getoption("keyword", "") or config.getoption("markexpr", ""))
