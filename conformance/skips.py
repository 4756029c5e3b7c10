"""How a check stops with an opconform status of its own: `disabled(reason)` when the run's
configuration turns it off, `blocked(cause, reason)` when something it stands on is broken.
Each raises pytest's skip carrying a typed outcome (opconform.conformance.verdicts.Disabled,
Blocked) that
the plugin reads by its fields; pytest shows the outcome's text as the skip reason."""

from __future__ import annotations

from typing import NoReturn

from _pytest.outcomes import Skipped

from opconform.conformance.verdicts import Blocked, Disabled


class Skip(Skipped):  # pytest.skip.Exception
    # pytest prints a skip by its class's name ("Skipped: reason"), and fakes the builtins
    # module for its own: the same here, so the console and JUnit read as for pytest.skip.
    __module__ = "builtins"
    __qualname__ = "Skipped"

    def __init__(self, outcome: Disabled | Blocked) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


def disabled(reason: str) -> NoReturn:
    """Skip a check because the run's configuration turned it off (not the target's doing)."""
    __tracebackhide__ = True  # pytest reports the check's line, not this one
    raise Skip(Disabled(reason))


def blocked(cause: str, reason: str) -> NoReturn:
    """Stop a check because something it stands on is broken: a requirement (by ID) or the run
    itself ("run": deadline, target-level breaker, unreachable target)."""
    __tracebackhide__ = True
    raise Skip(Blocked(cause, reason))
