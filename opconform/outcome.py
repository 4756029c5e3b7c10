"""The vocabulary of verdicts that the suite, the load tester and the diff share: statuses, how
they rank, and the exit codes they lead to.

`results.json` and JUnit carry the statuses in upper case; `load.json` writes an expectation's
status in lower case (its format since the first load runs), so those three are derived here
rather than spelt again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# ---------------------------------------------------------------------------- statuses
PASS, FAIL, WARN = "PASS", "FAIL", "WARN"
INCONCLUSIVE = "INCONCLUSIVE"  # the target gave no evidence either way (e.g. never cut an answer)
BLOCKED = "BLOCKED"  # a prerequisite is broken (named), or the run stopped before the check
DISABLED = "DISABLED"  # turned off by configuration: opt-in marker, missing identity, no Node
ERROR = "ERROR"  # the harness could not judge, and says why
STATUSES = (PASS, FAIL, WARN, INCONCLUSIVE, BLOCKED, DISABLED, ERROR)
# A requirement's status when the catalogue, not a check, decides it.
UNTESTABLE = "UNTESTABLE"
RETIRED = "RETIRED"
SKIP = "SKIP"  # in runs written before INCONCLUSIVE replaced it: the diff still reads them

# Which status a requirement shows when its checks disagree: the most serious one wins. FAIL
# outranks ERROR (a broken MUST is the news), and a requirement whose checks were all
# inconclusive, blocked or disabled never reads as passed.
SEVERITY = {FAIL: 6, ERROR: 5, WARN: 4, BLOCKED: 3, PASS: 2, INCONCLUSIVE: 1, DISABLED: 0}
# A check in one of these statuses judged the target; in the others it did not (coverage).
JUDGED = (PASS, WARN)
NOT_JUDGED = (DISABLED, SKIP, INCONCLUSIVE, UNTESTABLE, RETIRED)
# What a reader must look at: broken, or not judged because something broke.
NEEDS_ATTENTION = (FAIL, ERROR, WARN, BLOCKED)

# A load expectation's status, as load.json writes it.
LOAD_PASS, LOAD_FAIL, LOAD_INCONCLUSIVE = PASS.lower(), FAIL.lower(), INCONCLUSIVE.lower()


def load_status(expectation: Mapping[str, Any]) -> str:
    """An expectation's status in load.json (older runs only said `passed`)."""
    status = expectation.get("status")
    if status:
        return str(status)
    return LOAD_PASS if expectation.get("passed") else LOAD_FAIL


# ---------------------------------------------------------------------------- exit codes
# Every opconform command ends with one of these.
CONFORMANT = 0  # also: load thresholds met, no regression
NOT_CONFORMANT = 1  # also: a load threshold or expectation broken, a regression found
USAGE = 2  # bad options or configuration
HARNESS = 3  # target unreachable, or opconform itself failed
