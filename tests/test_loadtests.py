"""Load profiles: metrics from raw samples, each profile against the reference gateway (clean
and with the faults that break its limits), distributed runs, and bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.embedded import EmbeddedGateway
from loadtests.metrics import Sample, SloError, judge_slo, parse_slo, percentile, summarise
from tests.conftest import ROOT, clean_env, opconform_cli

PROFILE_DIR = ROOT / "loadtests" / "profiles"
SHORT_WINDOW = ["--window-seconds", "3"]


def test_percentiles_are_nearest_rank_on_raw_samples() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100 and percentile([], 50) is None


def test_slo_parsing_and_judging() -> None:
    slo = parse_slo("ttft_p95=800ms,error_rate=0.01,output_tokens_per_s=8")
    assert slo == {"ttft_p95": 0.8, "error_rate": 0.01, "output_tokens_per_s": 8}
    for bad in ("ttft=1s", "ttft_p95=fast", "latency_p95=1s"):
        with pytest.raises(SloError):
            parse_slo(bad)
    samples = [
        Sample(
            group="main",
            kind="stream",
            scheduled=None,
            sent=100.0 + i,
            ttft=0.1 * i,
            e2e=1.0,
            output_tokens=10,
        )
        for i in range(1, 11)
    ]
    summary = summarise(samples, slo={"ttft_p95": 0.5})
    assert summary["ttft"]["p95"] == pytest.approx(1.0)
    # one window for every rate: first send (101) to last send (110); 5 good requests ended in it
    assert summary["goodput_rps"] == pytest.approx(5 / 9)
    assert summary["offered_rps"] == pytest.approx(9 / 9)
    verdicts = {v["name"]: v["passed"] for v in judge_slo(summary, slo)}
    assert verdicts == {
        "slo ttft_p95": False,
        "slo error_rate": True,
        "slo output_tokens_per_s": True,
    }


def _load(report_dir: Path, profile: str, *args: str, timeout: float = 120) -> tuple[int, dict]:
    done = opconform_cli("load", profile, "--report-dir", str(report_dir), *args, timeout=timeout)
    result = report_dir / "load.json"
    document = (
        json.loads(result.read_text())
        if result.is_file()
        else {"stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    )
    return done.returncode, document


def _broken(document: dict[str, Any]) -> list[str]:
    return [e["name"] for e in document.get("expectations", []) if not e["passed"]]


# (id, profile, options, gateway faults, expected exit, an expectation that must break)
CASES = [
    ("steady", "steady", ["--duration", "5s"], [], 0, None),
    ("burst", "rpm-burst", ["--duration", "7s", *SHORT_WINDOW], [], 0, None),
    (
        "burst-off-by-one",
        "rpm-burst",
        ["--duration", "7s", *SHORT_WINDOW],
        ["ratelimit-off-by-one"],
        1,
        "starts at the documented limit",
    ),
    (
        "burst-retry-after-early",
        "rpm-burst",
        ["--duration", "7s", *SHORT_WINDOW],
        ["429-retry-after-too-early"],
        1,
        "after waiting Retry-After",
    ),
    (
        "burst-not-enforced",
        "rpm-burst",
        ["--duration", "5s", *SHORT_WINDOW],
        ["ratelimit-not-enforced"],
        1,
        "starts at the documented limit",
    ),
    ("cap", "concurrency-cap", ["--duration", "8s", *SHORT_WINDOW], [], 0, None),
    (
        "cap-not-enforced",
        "concurrency-cap",
        ["--duration", "8s", *SHORT_WINDOW],
        ["concurrency-not-enforced"],
        1,
        "the excess over the cap is rejected",
    ),
    (
        "cap-slot-leak",
        "concurrency-cap",
        ["--duration", "8s", *SHORT_WINDOW],
        ["concurrency-slot-leak-on-disconnect"],
        1,
        "slots free",
    ),
    ("isolation", "key-isolation", ["--duration", "7s", *SHORT_WINDOW], [], 0, None),
    (
        "isolation-shared",
        "key-isolation",
        ["--duration", "7s", *SHORT_WINDOW],
        ["ratelimit-shared-across-keys"],
        1,
        "key B: no 429",
    ),
    (
        "steady-no-headers",
        "steady",
        ["--duration", "4s"],
        ["ratelimit-headers-missing-on-stream"],
        1,
        "rate-limit headers on every response",
    ),
    (
        "steady-no-done",
        "steady",
        ["--duration", "4s"],
        ["stream-no-done"],
        1,
        "no errors or broken streams",
    ),
    ("soak", "soak", ["--duration", "6s", "--profile-option", "buckets=3"], [], 0, None),
    (
        "ramp",
        "ramp",
        [
            "--duration",
            "8s",
            "--profile-option",
            "step_seconds=2",
            "--profile-option",
            "max_users=8",
        ],
        [],
        0,
        None,
    ),
    ("quota", "quota", ["--duration", "20s"], [], 0, None),
    (
        "quota-not-enforced",
        "quota",
        ["--duration", "6s", "--max-tokens-total", "300000"],
        ["tokens-per-day-not-enforced"],
        1,
        "tokens/day cutoff",
    ),
]


@pytest.fixture(scope="module")
def profile_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, dict]]:
    folder = tmp_path_factory.mktemp("load")

    def one(case: tuple) -> tuple[int, dict]:
        name, profile, options, faults, _, _ = case
        gateway = " ".join(
            ["--window-seconds 3"] * ("--window-seconds" in options)
            + [f"--fault {f}" for f in faults]
        )
        return _load(folder / name, profile, *options, "--gateway-args", gateway)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c[0] for c in CASES], pool.map(one, CASES), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_profile_verdict(profile_runs: dict[str, tuple[int, dict]], case: tuple) -> None:
    name, _, _, _, expected_code, must_break = case
    code, document = profile_runs[name]
    assert code == expected_code, json.dumps(document, indent=1, default=str)[:3000]
    assert document["valid"], document["invalid_reasons"]
    if must_break:
        assert any(must_break in broken for broken in _broken(document)), _broken(document)


@pytest.mark.slow
def test_profile_reports_what_users_need(profile_runs: dict[str, tuple[int, dict]]) -> None:
    _, burst = profile_runs["burst"]
    onsets = [
        w["onset"]
        for w in burst["extra"]["windows"]["polite"]
        if w["fresh"] and w["onset"] is not None
    ]
    assert onsets and set(onsets) == {60}, onsets  # exactly the documented limit
    _, steady = profile_runs["steady"]
    metrics = steady["metrics"]
    for name in ("ttft", "ttfb", "itl", "e2e"):
        assert set(metrics[name]) >= {"p50", "p90", "p95", "p99", "p99.9"}
    assert metrics["output_tokens"] > 0 and not metrics["tokens_approximate"]
    _, ramp = profile_runs["ramp"]
    assert ramp["extra"]["steps"] and ramp["extra"]["capacity"]
    _, quota = profile_runs["quota"]
    assert quota["extra"]["cut_off"]
    assert 100_000 <= quota["extra"]["tokens_before_cutoff"] <= 125_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_master_with_two_workers_merges_every_request(tmp_path: Path) -> None:
    port = _free_port()
    with EmbeddedGateway() as gateway:
        env = clean_env({"OP_API_KEY": gateway.env["OP_ENTERPRISE_API_KEY"]})
        common = [
            "-f",
            str(PROFILE_DIR / "steady.py"),
            "--host",
            gateway.base_url,
            "--op-plan",
            "enterprise",
            "--loglevel",
            "WARNING",
        ]
        master = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                *common,
                "--master",
                "--headless",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--expect-workers",
                "2",
                "-u",
                "4",
                "-r",
                "4",
                "--run-time",
                "5s",
                "--json-file",
                str(tmp_path / "locust"),
                "--op-report-dir",
                str(tmp_path),
                "--op-profile-option",
                "rate=20",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "locust",
                    *common,
                    "--worker",
                    "--master-host",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            output, _ = master.communicate(timeout=90)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                worker.wait(timeout=10)
            if master.poll() is None:
                master.kill()
    assert master.returncode == 0, output[-3000:]
    document = json.loads((tmp_path / "load.json").read_text())
    stats = json.loads((tmp_path / "locust.json").read_text())
    sent = sum(e["num_requests"] for e in stats if e["method"] in ("GET", "POST"))
    assert sent > 20
    assert document["requests_recorded"] == sent, (document["requests_recorded"], sent)


BAD_INPUT = [
    (["steady", "--duration", "forever"], "--duration"),
    (["steady", "--slo", "ttft=fast"], "--slo"),
    (
        ["steady", "--base-url", "http://192.0.2.10/v1", "--api-key", "op_sk_test_x"],
        "not on this machine",
    ),
    (["nonsense"], "invalid choice"),
    (["steady", "--slo", "@/nonexistent/slo.txt"], "cannot read"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[a[0] + a[-1] for a, _ in BAD_INPUT])
def test_bad_load_input_is_one_clear_line(tmp_path: Path, argv: list[str], message: str) -> None:
    started = time.monotonic()
    done = opconform_cli("load", *argv, "--report-dir", str(tmp_path / "r"), timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and message in output and "Traceback" not in output, output
    assert time.monotonic() - started < 30
