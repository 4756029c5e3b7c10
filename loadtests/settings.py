"""The Locust command-line options of the profiles (`--op-*`) and the Settings a run reads.

`opconform load` fills these options; a user running `locust -f loadtests/profiles/X.py` may
give them by hand. Keys never travel as options (`ps` would show them): they come from the
environment variables of opconform.contract.KEY_VARIABLES.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment

from loadtests.arrivals import ARRIVALS
from loadtests.transport_env import transport_from_environment
from loadtests.workload import Distribution, Workload, read_dataset
from opconform.contract import PLANS, WINDOW_SECONDS
from opconform.slo import parse_slo
from opconform.transport import TransportSettings


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("opconform")
    add = group.add_argument
    add("--op-plan", default=os.environ.get("OP_PLAN", "free"), choices=list(PLANS))
    add("--op-model", default=os.environ.get("OP_MODEL", "gpt-4o-mini"))
    add("--op-max-tokens", type=int, default=64, help="output token target (fixed)")
    add("--op-output-tokens", default="", help="output token target: 256, uniform:64:512 ...")
    add("--op-prompt-tokens", default="64", help="prompt token target: 64, normal:512:128 ...")
    add("--op-dataset", default="", help="JSONL of prompts instead of synthetic ones")
    add("--op-seed", type=int, default=None, help="seed of workloads and arrivals")
    add("--op-arrival", default="closed", choices=ARRIVALS, help="closed, constant, poisson")
    add("--op-rate", type=float, default=0.0, help="open-loop requests/s (all users together)")
    add("--op-honour-retry-after", default="", choices=["", "yes", "no"])
    add("--op-slo", default="", help="thresholds, e.g. ttft_p95=800ms,error_rate=0.01")
    add("--op-max-requests", type=int, default=20_000, help="request ceiling per process")
    add("--op-max-tokens-total", type=int, default=2_000_000, help="token ceiling per process")
    add("--op-window-seconds", type=float, default=WINDOW_SECONDS, help="requests/min window")
    add("--op-rpm", type=int, default=0, help="requests/min of the main key (default: plan's)")
    add("--op-concurrent", type=int, default=0, help="concurrent requests (default: plan's)")
    add("--op-report-dir", default="", help="write load.json and samples here")
    add("--op-progress-seconds", type=float, default=5.0, help="status line interval (0: off)")
    add("--op-breaker", type=int, default=20, help="stop after this many transport failures")
    add("--op-profile-option", action="append", default=[], help="NAME=VALUE for the profile")


@dataclass
class Settings:
    plan: str
    model: str
    max_tokens: int
    slo: dict[str, float]
    max_requests: int
    max_tokens_total: int
    window: float
    rpm: int | None  # None: the plan's figure is "Custom" and nobody stated it
    concurrent: int | None
    report_dir: Path | None
    profile_options: dict[str, str]
    users: int
    workload: Workload
    arrival: str
    rate: float | None
    honour_retry_after: bool | None  # None: the profile's own choice
    seed: int | None
    run_time: float | None
    progress_seconds: float
    breaker: int
    transport: TransportSettings = field(default_factory=TransportSettings)

    @classmethod
    def from_environment(cls, environment: Environment) -> Settings:
        options = environment.parsed_options
        assert options is not None, "the profiles run under Locust's command line"
        limits = PLANS[options.op_plan]
        output = Distribution.parse(options.op_output_tokens or str(options.op_max_tokens))
        dataset = read_dataset(Path(options.op_dataset)) if options.op_dataset else None
        return cls(
            plan=options.op_plan,
            model=options.op_model,
            max_tokens=max(1, round(output.mean)),
            slo=parse_slo(options.op_slo),
            max_requests=options.op_max_requests,
            max_tokens_total=options.op_max_tokens_total,
            window=options.op_window_seconds,
            rpm=options.op_rpm or limits.requests_per_min,
            concurrent=options.op_concurrent or limits.concurrent,
            report_dir=Path(options.op_report_dir) if options.op_report_dir else None,
            profile_options=dict(
                item.split("=", 1) for item in options.op_profile_option if "=" in item
            ),
            users=max(1, int(getattr(options, "num_users", 1) or 1)),
            workload=Workload(
                Distribution.parse(options.op_prompt_tokens), output, dataset, options.op_seed
            ),
            arrival=options.op_arrival,
            rate=options.op_rate or None,
            honour_retry_after={"yes": True, "no": False}.get(options.op_honour_retry_after),
            seed=options.op_seed,
            run_time=float(options.run_time) if getattr(options, "run_time", None) else None,
            progress_seconds=options.op_progress_seconds,
            breaker=options.op_breaker,
            transport=transport_from_environment(),
        )

    def limit(self, name: str) -> int:
        """rpm or concurrent; a profile that needs a figure nobody stated stops with a clear
        message (Enterprise limits are "Custom": the load tester does not guess them)."""
        value = getattr(self, name)
        if value is None:
            flag = {"rpm": "requests-per-min", "concurrent": "concurrent"}[name]
            raise MissingLimit(
                f"the {self.plan} plan's {name} is custom: give --enterprise-{flag} "
                f"(locust: --op-{name})"
            )
        return int(value)

    def option(self, name: str, default: float) -> float:
        value = self.profile_options.get(name)
        return float(value) if value else default

    def describe(self) -> dict[str, Any]:
        """What load.json records about how the run was set up."""
        return {
            "rpm": self.rpm,
            "concurrent": self.concurrent,
            "window_s": self.window,
            "users": self.users,
            "arrival": self.arrival,
            "rate": self.rate,
            "honour_retry_after": self.honour_retry_after,
            "workload": self.workload.describe(),
            "seed": self.seed,
            "slo": self.slo,
            "max_requests": self.max_requests,
            "run_time_s": self.run_time,
            "profile_options": self.profile_options,
            "transport": self.transport.describe(),
        }


class MissingLimit(RuntimeError):
    """A limit the profile needs is not known (see Settings.limit)."""
