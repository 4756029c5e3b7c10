"""requirements.yaml owns the prerequisite graph and the areas: it is a graph (acyclic, every
`needs` a requirement), and what checks are blocked by follows an edit of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from opconform.conformance.catalogue import (
    CATALOGUE_PATH,
    CatalogueError,
    Requirement,
    area_of,
    areas,
    check_areas,
    find_cycle,
    load,
    prerequisites,
    requirements,
)
from opconform.conformance.invariants import RULES, PrematureLimits
from opconform.conformance.results import BLOCKED, FAIL, CheckResult
from opconform.conformance.verdicts import apply_prerequisites
from opconform.exitcodes import UsageError


def _edited(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = CATALOGUE_PATH.read_text(encoding="utf-8")
    assert text.count(old) == count, old
    copy = tmp_path / "requirements.yaml"
    copy.write_text(text.replace(old, new), encoding="utf-8")
    return copy


def test_the_needs_form_an_acyclic_graph_of_known_requirements() -> None:
    catalogue = requirements()
    graph = {rid: req.needs for rid, req in catalogue.items()}
    assert find_cycle(graph) == []
    assert {rid for needs in graph.values() for rid in needs} <= set(catalogue)
    assert sum(map(len, graph.values())) >= 30  # the graph is here, not only in markers
    # Nothing stands on a requirement no check can judge: it could never block anything.
    assert all(catalogue[rid].testable for needs in graph.values() for rid in needs)


def test_an_unknown_id_or_a_cycle_is_refused(tmp_path: Path) -> None:
    unknown = _edited(tmp_path, "needs: [OP-STREAM-002]\n", "needs: [OP-STREAM-099]\n", count=4)
    with pytest.raises(CatalogueError, match="OP-STREAM-003 needs unknown OP-STREAM-099"):
        load(unknown)
    cycle = _edited(
        tmp_path,
        "  - id: OP-STREAM-001\n    area: streaming\n",
        "  - id: OP-STREAM-001\n    area: streaming\n    needs: [OP-STREAM-008]\n",
    )
    with pytest.raises(CatalogueError, match="cycle: OP-STREAM-001 -> OP-STREAM-008 -> "):
        load(cycle)


def test_removing_a_need_changes_what_a_check_is_blocked_by(tmp_path: Path) -> None:
    edited = load(
        _edited(
            tmp_path,
            "  - id: OP-COMPAT-001\n    area: compat\n    needs: [OP-STREAM-001]\n",
            "  - id: OP-COMPAT-001\n    area: compat\n",
        )
    )

    def outcome(catalogue: dict[str, Requirement] | None) -> tuple[str, str | None]:
        results = [
            CheckResult(
                id=rid,
                name=rid,
                area="x",
                requirements=[rid],
                level="MUST",
                status=FAIL,
                message="broken",
                needs=prerequisites([rid], catalogue=catalogue),
            )
            for rid in ("OP-STREAM-001", "OP-COMPAT-001")
        ]
        apply_prerequisites(results)
        return results[1].status, results[1].blocked_by

    assert outcome(None) == (BLOCKED, "OP-STREAM-001")
    assert outcome(edited) == (FAIL, None)


def test_a_judgement_stands_on_its_requirements_needs_then_its_situation() -> None:
    assert prerequisites(["OP-STREAM-003"]) == ["OP-STREAM-002"]
    # The situation adds, in order, and never repeats or names the check's own requirement.
    assert prerequisites(["OP-RL-004"], ["OP-RL-001", "OP-RL-004"]) == ["OP-RL-001"]
    assert prerequisites(["OP-STREAM-008"], ["OP-STREAM-007", "OP-AUTH-001"]) == [
        "OP-STREAM-007",
        "OP-AUTH-001",
    ]


def test_areas_come_from_the_catalogue_in_its_order() -> None:
    found = areas()
    assert found[:3] == ("auth", "models", "chat") and "gateway-failures" in found
    assert set(found) == {req.area for req in requirements().values()}
    check_areas(["auth", "perf"])
    with pytest.raises(UsageError, match=r"unknown area\(s\) nope; known: auth, models, chat"):
        check_areas(["auth", "nope"])


def test_a_rule_states_only_what_its_requirement_does_not() -> None:
    catalogue = requirements()
    situations = {rule.requirement: rule.situation for rule in RULES}
    situations.update(PrematureLimits.SITUATION)
    assert situations["OP-CHAT-003"] == ("OP-CHAT-001",)
    for rid, situation in situations.items():
        assert set(situation) <= set(catalogue), rid
        assert not set(situation) & set(catalogue[rid].needs), f"{rid} repeats its needs"


def _declared(decorator: ast.expr, name: str) -> list[str] | None:
    """The string arguments of `@requirement(...)` / `@pytest.mark.<name>(...)`, else None."""
    if not isinstance(decorator, ast.Call):
        return None
    func = decorator.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called != name:
        return None
    return [str(arg.value) for arg in decorator.args if isinstance(arg, ast.Constant)]


def test_a_check_states_only_what_its_requirements_do_not() -> None:
    """A `needs` or `area` marker on a check is its situation's, beside it: never a repeat of
    requirements.yaml (a second place for one fact), never an unknown ID or area."""
    catalogue = requirements()
    stated = 0
    for path in sorted((CATALOGUE_PATH.parent).glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            found = {
                name: [v for d in node.decorator_list for v in _declared(d, name) or []]
                for name in ("requirement", "needs", "area")
            }
            where = f"{path.name}::{node.name}"
            inherited = set(prerequisites(found["requirement"]))
            assert set(found["needs"]) <= set(catalogue), where
            assert not set(found["needs"]) & inherited, f"{where} repeats requirements.yaml"
            for area in found["area"]:
                assert area in areas() and area != area_of(found["requirement"]), where
            stated += len(found["needs"])
    assert stated  # the walk found the situation markers it judges
