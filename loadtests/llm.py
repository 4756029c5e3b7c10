"""What a profile imports: the LLM user, the profile and its expectations, and the settings.

The machinery lives in one module per job: `settings` (Locust options, Settings), `state` (the
run's samples, workers, ceilings, breaker, live status line), `verdict` (expectations,
load.json, exit code), `user` (who sends and when: identity, pacing, the 429 policy),
`stream_client` (sending one request, SSE timing), `workload` and `arrivals` (what is sent and
when), `catalogue` (what each profile declares). Importing this module registers their Locust
listeners.
"""

from __future__ import annotations

from opconform.contract import LONG_PROMPT, SHORT_PROMPT
from opconform.loadtests.settings import Settings
from opconform.loadtests.state import RUN, record, stop_run
from opconform.loadtests.user import LLMUser
from opconform.loadtests.verdict import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Profile,
    expectation,
    group,
    no_failures,
    present,
    use_profile,
)
from opconform.metrics import Sample

__all__ = [
    "FAIL",
    "INCONCLUSIVE",
    "LONG_PROMPT",
    "PASS",
    "RUN",
    "SHORT_PROMPT",
    "LLMUser",
    "Profile",
    "Sample",
    "Settings",
    "expectation",
    "group",
    "no_failures",
    "present",
    "record",
    "stop_run",
    "use_profile",
]
