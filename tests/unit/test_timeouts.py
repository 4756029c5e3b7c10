"""The deadlines of a request (opconform/timeouts.py): declared once, mapped once to httpx."""

from __future__ import annotations

import httpx

from opconform.config import OPTION_BY_NAME
from opconform.limits import Limits
from opconform.timeouts import DEFAULT_TIMEOUTS, Timeouts


def test_the_options_and_the_clients_take_the_one_default() -> None:
    assert OPTION_BY_NAME["connect_timeout"].default == DEFAULT_TIMEOUTS.connect
    assert OPTION_BY_NAME["read_timeout"].default == DEFAULT_TIMEOUTS.read
    assert OPTION_BY_NAME["request_timeout"].default == DEFAULT_TIMEOUTS.request
    assert Limits().timeouts == DEFAULT_TIMEOUTS
    assert Timeouts.from_values({}) == DEFAULT_TIMEOUTS


def test_httpx_gets_every_phase_and_no_read_longer_than_the_request() -> None:
    timeout = Timeouts(connect=2.0, read=30.0, request=10.0).to_httpx()
    assert timeout == httpx.Timeout(connect=2.0, read=10.0, write=2.0, pool=2.0)
    assert Timeouts(connect=1.0, read=4.0, request=9.0).to_httpx().read == 4.0


def test_from_resolved_options_and_from_a_holder_of_them() -> None:
    values = {"connect_timeout": 1.5, "read_timeout": 3.0, "request_timeout": 12.0}
    timeouts = Timeouts.from_values(values)
    assert timeouts == Timeouts(1.5, 3.0, 12.0)
    assert Timeouts.of(Limits(connect_timeout=1.5, read_timeout=3.0, request_timeout=12.0)) == (
        timeouts
    )


def test_a_load_run_takes_the_runs_timeouts_and_its_grace_follows_them() -> None:
    from opconform.loadtests.command import LoadRun, grace_seconds
    from opconform.loadtests.options import resolve_load, settings_document

    shared, own = resolve_load(
        {"connect_timeout": 3.0, "read_timeout": 40.0}, env={}, config_file=None
    )
    run = LoadRun("steady", shared, own, 20.0, cli_plan=None)
    assert run.timeouts == Timeouts(3.0, 40.0, DEFAULT_TIMEOUTS.request)
    document = settings_document(own, plan="free", rpm=60, concurrent=5, timeouts=run.timeouts)
    assert (document["connect_timeout"], document["read_timeout"]) == (3.0, 40.0)
    assert Timeouts.from_values(document) == run.timeouts  # what each Locust process reads
    longer = LoadRun("steady", {**shared, "read_timeout": 80.0}, own, 20.0, cli_plan=None)
    assert grace_seconds(longer.timeouts) - grace_seconds(run.timeouts) == 40.0
