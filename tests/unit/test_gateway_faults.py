"""The fault registry (gateway/faults.py): one constant per registered fault, a fault for every
checked requirement, and the mutation matrix's schedule over them
(tests/integration/test_mutation_matrix.py)."""

from __future__ import annotations

from opconform.conformance.catalogue import requirements
from opconform.gateway.faults import FAULTS, Faults
from tests.support.mutation import REQUIREMENT_FAULTS, SCHEDULE, SLOW_FIRST


def test_fault_names_are_constants() -> None:
    """opconform.gateway.faults.Faults names every registered fault and nothing else, so the
    gateway's
    `Faults.X` and the registry cannot drift apart."""
    constants = {v for k, v in vars(Faults).items() if k.isupper()}
    assert constants == set(FAULTS)


def test_every_checked_requirement_has_a_fault() -> None:
    broken = {rid for fault in FAULTS.values() for rid in fault.breaks}
    testable = {r.id for r in requirements().values() if r.testable}
    assert testable <= broken, f"requirements no fault exercises: {sorted(testable - broken)}"
    assert broken <= set(requirements()), f"faults name unknown IDs: {broken - set(requirements())}"


def test_there_are_enough_faults() -> None:
    assert len(REQUIREMENT_FAULTS) >= 30


def test_schedule_runs_every_fault_once() -> None:
    assert sorted(SCHEDULE) == REQUIREMENT_FAULTS
    assert set(SLOW_FIRST) <= set(REQUIREMENT_FAULTS), set(SLOW_FIRST) - set(REQUIREMENT_FAULTS)
