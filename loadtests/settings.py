"""The Locust option of the profiles (`--op-settings`) and the Settings a run reads.

`opconform load` resolves its options (loadtests/options.py) and hands every Locust process one
JSON document through `--op-settings FILE`. A user running `locust -f loadtests/profiles/X.py`
by hand may write that document, or leave it out: the same tables are then resolved from the
OP_* / OP_LOAD_* variables and opconform.toml. Keys never travel in the document (`ps` and the
report folder would show them): they come from the environment variables of
opconform.contract.KEY_VARIABLES.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment

from opconform.config import ENTERPRISE_LIMIT_OPTIONS, OPTION_BY_NAME
from opconform.contract import KEY_VARIABLES
from opconform.loadtests.catalogue import explicit_rate
from opconform.loadtests.options import document_from_environment
from opconform.loadtests.transport_env import transport_from_environment
from opconform.loadtests.workload import Distribution, Workload, read_dataset
from opconform.redact import Redactor
from opconform.slo import parse_slo
from opconform.target import timeouts_of
from opconform.timeouts import DEFAULT_TIMEOUTS, Timeouts
from opconform.transport import TransportSettings


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument_group("opconform").add_argument(
        "--op-settings",
        default="",
        metavar="FILE",
        help="JSON settings document, as `opconform load` writes it (default: the OP_* and "
        "OP_LOAD_* variables and opconform.toml)",
    )
    # Locust forwards a master's custom options to its workers when the run starts: the
    # document itself travels, not a path that exists only on the master's host.
    parser.add_argument_group("opconform").add_argument(
        "--op-settings-json",
        default="",
        metavar="JSON",
        help="the settings document itself (a master's, for workers on other hosts)",
    )


def read_document(path: str, text: str = "") -> dict[str, Any]:
    if text:
        inline: dict[str, Any] = json.loads(text)
        return inline
    if not path:
        return document_from_environment()
    document: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return document


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
    timeouts: Timeouts = DEFAULT_TIMEOUTS  # the run's --connect-timeout and --read-timeout

    @classmethod
    def from_environment(cls, environment: Environment) -> Settings:
        options = environment.parsed_options
        assert options is not None, "the profiles run under Locust's command line"
        document = read_document(options.op_settings, getattr(options, "op_settings_json", ""))
        return cls.from_document(
            document,
            users=max(1, int(document.get("users") or getattr(options, "num_users", 1) or 1)),
            run_time=float(options.run_time) if getattr(options, "run_time", None) else None,
        )

    @classmethod
    def from_document(
        cls, document: dict[str, Any], *, users: int = 1, run_time: float | None = None
    ) -> Settings:
        """Settings from the document of loadtests/options.py (settings_document)."""
        output = Distribution.parse(document["output_tokens"] or str(document["max_tokens"]))
        dataset = read_dataset(Path(document["dataset"])) if document["dataset"] else None
        seed = document["seed"]
        return cls(
            plan=document["plan"],
            model=document["model"],
            max_tokens=max(1, round(output.mean)),
            slo=parse_slo(document["slo"]),
            max_requests=document["max_requests"],
            max_tokens_total=document["max_tokens_total"],
            window=document["window_seconds"],
            rpm=document["rpm"],
            concurrent=document["concurrent"],
            report_dir=Path(document["report_dir"]) if document["report_dir"] else None,
            profile_options=dict(
                item.split("=", 1) for item in document["profile_option"] or () if "=" in item
            ),
            users=users,
            workload=Workload(Distribution.parse(document["prompt_tokens"]), output, dataset, seed),
            arrival=document["arrival"],
            rate=document["rate"] or None,
            honour_retry_after=document["honour_retry_after"],
            seed=seed,
            run_time=run_time,
            progress_seconds=document["progress_seconds"],
            breaker=document["breaker"],
            transport=transport_from_environment(),
            timeouts=timeouts_of(document),
        )

    def redactor(self) -> Redactor:
        """Redacts this run's secrets: the keys in the environment and secret header values."""
        keys = (os.environ.get(variable) for variable in KEY_VARIABLES.values())
        return Redactor([*keys, *self.transport.secret_values()])

    def limit(self, name: str) -> int:
        """rpm or concurrent; a profile that needs a figure nobody stated stops with a clear
        message (Enterprise limits are "Custom": the load tester does not guess them)."""
        value = getattr(self, name)
        if value is None:
            stated = OPTION_BY_NAME[ENTERPRISE_LIMIT_OPTIONS[name]]
            raise MissingLimit(
                f"the {self.plan} plan's {name} is custom: give {stated.flag} ({stated.env})"
            )
        return int(value)

    @property
    def explicit_rate(self) -> bool:
        return explicit_rate(self.rate, self.profile_options)

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
