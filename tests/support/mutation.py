"""The mutation matrix's faults and the order it runs them in (tests/integration/
test_mutation_matrix.py; checked without a run in tests/unit/test_gateway_faults.py)."""

from __future__ import annotations

from opconform.gateway.faults import FAULTS

REQUIREMENT_FAULTS = sorted(name for name, fault in FAULTS.items() if fault.breaks)
# The longest runs (measured 7-15 s on 2 cores, against ~4 s for most: they wait out a stream or
# a slot, a latency SLO, a rate-limit window, or run the SDKs) start first, so that the two
# workers finish together instead of one running a 15 s fault alone at the end.
SLOW_FIRST = (
    "concurrency-slot-leak-on-disconnect",
    "stream-no-close",
    "slow-first-token",
    "sdk-errors-as-400",
    "slow-model-list",
    "reject-python-sdk-user-agent",
    "429-retry-after-too-early",
    "429-no-retry-after",
    "ratelimit-window-never-resets",
)
SCHEDULE = sorted(
    REQUIREMENT_FAULTS,
    key=lambda name: SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST),
)
