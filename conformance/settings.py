"""A conformance run's settings, resolved once: `opconform run` builds them from its command line
and hands them to pytest inside `ConformanceRun(settings)`; plain `pytest conformance` builds
the same object from its own options, through the same `RunSettings.resolve`. Nothing resolves
the run's options again: an embedded gateway adds only what it knows, the target's options.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opconform.config import OPTIONS, resolve
from opconform.exitcodes import UsageError
from opconform.target import Target, parse_slo, timeouts_of
from opconform.transport import TransportSettings

if TYPE_CHECKING:  # the catalogue and YAML are read when a run resolves, not at plugin load
    from opconform.conformance.results import Baseline

TARGET_OPTIONS = tuple(option for option in OPTIONS if option.scope == "target")


@dataclass(frozen=True)
class RunSettings:
    values: Mapping[str, Any]  # every run option (opconform.config.OPTIONS), resolved
    baseline: Baseline  # --expected-failures, read once
    report_dir: Path | None  # None: plain pytest without --report-dir writes no run folder
    # Known at once for --base-url; an embedded gateway's is made when it has started.
    target: Target | None = None

    @classmethod
    def resolve(
        cls,
        cli: Mapping[str, Any],
        config_file: Path | None = None,
        *,
        target: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> RunSettings:
        """Every option's value, checked: bad usage is a UsageError naming the option. With
        `target`, a remote target is built (and refused) now rather than when the run starts."""
        values = resolve(cli, env, config_file)
        made = Target.from_values(values) if target and values.get("base_url") else None
        if target and made is None:  # the embedded gateway's: the way to it is still the user's
            TransportSettings.from_values(values)
            timeouts_of(values)  # a zero deadline is refused before the gateway starts
        parse_slo(values["latency_slo"])
        from opconform.conformance.catalogue import check_areas, requirements

        check_areas(values["area"] or [])
        if values["requirement"]:
            unknown = sorted(set(values["requirement"]) - set(requirements()))
            if unknown:
                raise UsageError(f"--requirement: unknown ID(s) {', '.join(unknown)}")
        from opconform.conformance.results import Baseline

        baseline = Baseline.load(values["expected_failures"])
        report_dir = Path(values["report_dir"]) if values["report_dir"] else None
        return cls(values, baseline, report_dir, made)

    @property
    def embedded(self) -> bool:
        return not self.values.get("base_url")

    @property
    def areas(self) -> list[str]:
        return list(self.values["area"] or [])

    @property
    def requirements(self) -> list[str]:
        return list(self.values["requirement"] or [])

    def remote_target(self) -> Target:
        return self.target or Target.from_values(self.values)

    def embedded_target(self, gateway_env: Mapping[str, str]) -> Target:
        """The embedded gateway as the target: its options of scope "target" (URL, keys, plan,
        test models) from what it printed, never from the user's environment or file; the run's
        and the transport's stay as resolved."""
        theirs = resolve({}, env=gateway_env, config_file=Path(os.devnull), options=TARGET_OPTIONS)
        return Target.from_values({**self.values, **theirs}, embedded=True)

    def secrets(self) -> list[str]:
        """What the final sweep of the run folder scrubs: the target's keys and secret headers
        (an embedded gateway's own keys are redacted where evidence is recorded)."""
        if self.target is not None:
            return self.target.secrets()
        return TransportSettings.from_values(self.values).secret_values()
