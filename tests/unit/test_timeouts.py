"""The deadlines of a request (opconform/timeouts.py): declared once, read once, mapped once per
kind of client."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from opconform.config import OPTION_BY_NAME
from opconform.exitcodes import UsageError
from opconform.limits import Limits
from opconform.target import timeouts_of
from opconform.timeouts import DEFAULT_TIMEOUTS, Timeouts


def test_the_options_and_the_clients_take_the_one_default() -> None:
    assert OPTION_BY_NAME["connect_timeout"].default == DEFAULT_TIMEOUTS.connect
    assert OPTION_BY_NAME["read_timeout"].default == DEFAULT_TIMEOUTS.read
    assert OPTION_BY_NAME["request_timeout"].default == DEFAULT_TIMEOUTS.request
    assert Limits().timeouts == DEFAULT_TIMEOUTS
    assert timeouts_of({}) == DEFAULT_TIMEOUTS


def test_httpx_gets_every_phase_and_no_read_longer_than_the_request() -> None:
    timeout = Timeouts(connect=2.0, read=30.0, request=10.0).to_httpx()
    assert timeout == httpx.Timeout(connect=2.0, read=10.0, write=2.0, pool=2.0)
    assert Timeouts(connect=1.0, read=4.0, request=9.0).to_httpx().read == 4.0


def test_the_runners_get_every_deadline_in_milliseconds_and_no_read_longer_than_the_request() -> (
    None
):
    assert Timeouts(connect=1.5, read=3.0, request=12.0).to_runner_env() == {
        "OP_SDK_CONNECT_TIMEOUT_MS": "1500",
        "OP_SDK_READ_TIMEOUT_MS": "3000",
        "OP_SDK_REQUEST_TIMEOUT_MS": "12000",
    }
    clamped = Timeouts(connect=0.0001, read=30.0, request=10.0).to_runner_env()
    assert clamped["OP_SDK_READ_TIMEOUT_MS"] == "10000"
    assert clamped["OP_SDK_CONNECT_TIMEOUT_MS"] == "1"  # never 0, which a runner refuses


def test_read_once_from_the_resolved_options_a_zero_refused() -> None:
    values = {"connect_timeout": 1.5, "read_timeout": 3.0, "request_timeout": 12.0}
    assert timeouts_of(values) == Timeouts(1.5, 3.0, 12.0)
    assert timeouts_of({"read_timeout": 7.0}) == Timeouts(read=7.0)
    with pytest.raises(UsageError, match="--read-timeout must be more than zero"):
        timeouts_of({"read_timeout": 0.0})


def test_a_zero_deadline_is_refused_before_an_embedded_gateway_starts() -> None:
    from opconform.conformance.settings import RunSettings

    with pytest.raises(UsageError, match="--connect-timeout must be more than zero"):
        RunSettings.resolve({"connect_timeout": 0.0}, Path(os.devnull), target=True, env={})


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
    assert timeouts_of(document) == run.timeouts  # what each Locust process reads
    longer = LoadRun("steady", {**shared, "read_timeout": 80.0}, own, 20.0, cli_plan=None)
    assert grace_seconds(longer.timeouts) - grace_seconds(run.timeouts) == 40.0
