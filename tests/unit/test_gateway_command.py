"""The gateway's own argument check (gateway/command.py), which `run` and `load` apply to
--gateway-args before anything starts."""

from __future__ import annotations


def test_good_gateway_args_pass() -> None:
    from opconform.gateway.command import check_gateway_args

    check_gateway_args("--fault stream-no-done,429-no-retry-after --window-seconds 3")
    check_gateway_args("--ttft-ms 200 --tpot-ms 20 --jitter-ms 2")
    check_gateway_args("--tpot-ms 5")  # a first token without a wait: explicit, and allowed


def test_every_faults_own_gateway_args_pass() -> None:
    import shlex

    from opconform.gateway.command import check_gateway_args
    from opconform.gateway.faults import FAULTS

    for fault in FAULTS.values():
        check_gateway_args(shlex.join(["--fault", fault.name, *fault.serve_args]))
