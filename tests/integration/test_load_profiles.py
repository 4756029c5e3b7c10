"""Load profiles: metrics from raw samples, arrivals and workloads, each profile against the
reference gateway (clean, short-and-fast, and with the faults that break its limits) and against
an independent minimal server, distributed runs, hostile targets and bad input.

Conformant behaviour must give pass or inconclusive, never fail; a fault that breaks a profile's
limit must give fail."""

from __future__ import annotations

import itertools
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from opconform.gateway.embedded import EmbeddedGateway
from opconform.metrics import Sample, summarise
from opconform.redact import LEAK_PATTERN
from tests.conftest import ROOT, clean_env, opconform_cli
from tests.support.minimal_server import MinimalServer
from tests.support.samples import chat_sample, stream_sample

PROFILE_DIR = ROOT / "loadtests" / "profiles"
SHORT_WINDOW = ["--window-seconds", "3"]


# Profile judgements import Locust (which patches the interpreter with gevent): they are checked
# in a child process, on made-up samples.
_JUDGE = """
import json, sys
from opconform.metrics import Sample
from opconform.loadtests.options import document_from_environment
from opconform.loadtests.settings import Settings
import opconform.loadtests.profiles.{module} as profile
samples = [Sample.from_dict(d) for d in json.loads(sys.stdin.read())]
settings = Settings.from_document(document_from_environment({{}}))  # Free: 60/min, 5 streams
print(json.dumps({{e["name"]: e["status"] for e in profile.expectations(samples, settings)}}))
"""


def _judge(module: str, samples: list[Sample]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _JUDGE.format(module=module)],
        input=json.dumps([s.to_dict() for s in samples]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_short_streams_leave_the_cap_inconclusive_never_failed() -> None:
    """The independent gateway's case: every stream ended before the disconnect phase."""
    samples = [
        stream_sample(100.0 + r + i * 0.002, 0.001, f"round-{r}")
        for r in range(5)
        for i in range(5)
    ]
    samples += [stream_sample(100.5 + r, 0.001, f"excess-{r}") for r in range(5)]
    verdicts = _judge("concurrency_cap", samples)
    assert "fail" not in verdicts.values(), verdicts
    assert verdicts["slots free after streams end and clients disconnect"] == "inconclusive"
    assert verdicts["the excess over the cap is rejected with 429"] == "inconclusive"
    # Held streams: the excess got 200 while 5 were open, and a disconnect leaked slots.
    held = [
        stream_sample(200.0 + i * 0.01, 1.0, "round-1", disconnected=i % 2 == 0) for i in range(5)
    ]
    held += [stream_sample(200.2, 0.01, "excess-1")]
    held += [stream_sample(202.0 + i * 0.01, 1.0, "round-2") for i in range(2)]
    held += [stream_sample(202.05 + i * 0.01, 0.001, "round-2", status=429) for i in range(3)]
    verdicts = _judge("concurrency_cap", held)
    assert verdicts["the excess over the cap is rejected with 429"] == "fail"
    assert verdicts["slots free after streams end and clients disconnect"] == "fail"


def test_a_fixed_window_across_a_reset_is_no_failure_of_key_isolation() -> None:
    """A Free key's fixed window may accept 60 at the end of one minute and 60 at the start of
    the next: 89 in 30 s is conformant. Only more than twice the limit within one window, or a
    window seen from its start that accepted more than the limit, shows no limiter at work."""
    name = "key A is limited (429s)"
    straddle = [
        chat_sample("flood", i / 3, ratelimit_limit=60, ratelimit_remaining=r, ratelimit_reset=10)
        for i, r in enumerate([*range(18, -1, -1), *range(59, 11, -1)][:89])
    ]
    assert _judge("key_isolation", straddle)[name] == "inconclusive"
    assert _judge("key_isolation", [chat_sample("flood", i / 3) for i in range(89)])[name] == (
        "inconclusive"
    )
    assert (
        _judge("key_isolation", [chat_sample("flood", i / 5) for i in range(150)])[name] == "fail"
    )
    overfilled = [
        chat_sample("flood", i / 3, ratelimit_limit=60, ratelimit_remaining=max(0, 59 - i))
        for i in range(70)
    ]
    assert _judge("key_isolation", overfilled)[name] == "fail"


def test_an_unenforced_limit_fails_rpm_burst_without_headers() -> None:
    verdicts = _judge("rpm_burst", [chat_sample("abusive", i / 3) for i in range(208)])
    assert verdicts["abusive: 429 starts at the documented limit of 60"] == "fail", verdicts
    verdicts = _judge("rpm_burst", [chat_sample("polite", i / 2) for i in range(120)])
    assert verdicts["polite: 429 starts at the documented limit of 60"] == "inconclusive"


def test_missing_headers_are_one_finding_not_an_error() -> None:
    """A complete stream without X-RateLimit-* is judged by the headers expectation alone (it
    used to count as an error and hide its latency); every answer is judged, 500s too."""
    complete = [
        stream_sample(100.0 + i, 0.2, "", ttft=0.05, ratelimit_headers=False) for i in range(4)
    ]
    verdicts = _judge("steady", complete)
    assert verdicts["main key: no errors or broken streams"] == "pass", verdicts
    assert verdicts["main key: rate-limit headers on every response"] == "fail", verdicts
    summary = summarise(complete, None, {})
    assert summary["ttft"]["p50"] == 0.05 and summary["error_rate"] == 0.0, summary
    failed = stream_sample(200.0, 0.01, "", status=500, ratelimit_headers=False)
    failed.outcome = "unexpected_status"
    with_headers = stream_sample(201.0, 0.2, "", ratelimit_headers=True)
    verdicts = _judge("steady", [with_headers, failed])
    assert verdicts["main key: rate-limit headers on every response"] == "fail", verdicts
    verdicts = _judge("steady", [with_headers])
    assert verdicts["main key: rate-limit headers on every response"] == "pass", verdicts


def test_drift_needs_more_than_a_handful_of_requests_per_slice() -> None:
    """One request a slice (a short soak) is noise, not drift; twelve a slice can show it
    (five slices by default)."""
    few = [stream_sample(100.0, 0.05, "", ttft=0.009), stream_sample(101.0, 0.05, "", ttft=0.09)]
    assert _judge("soak", few)["no latency drift"] == "inconclusive"
    slow_end = [stream_sample(100.0 + i, 0.3, "", ttft=0.05 if i < 48 else 0.3) for i in range(61)]
    assert _judge("soak", slow_end)["no latency drift"] == "fail"
    steady = [stream_sample(100.0 + i, 0.3, "", ttft=0.05 + (i % 3) * 0.001) for i in range(61)]
    assert _judge("soak", steady)["no latency drift"] == "pass"


def test_streams_in_flight_are_no_evidence_of_the_cap() -> None:
    """Requests in flight that the target refused or failed never had a slot: "never more than
    5 open" needs a request sent while 5 accepted streams were open."""
    failed = [stream_sample(100.0 + i * 0.01, 0.5, "round-1", status=500) for i in range(8)]
    for sample in failed:
        sample.outcome = "unexpected_status"
    verdicts = _judge("concurrency_cap", failed)
    assert verdicts["never more than 5 streams open at once"] == "inconclusive", verdicts


def test_rpm_windows_whatever_the_reset_convention() -> None:
    """Windows are cut where Remaining goes up: epoch resets and seconds-to-go alike."""

    def burst(start: float, reset: Any) -> list[Sample]:
        return [
            Sample(
                group="polite",
                kind="chat",
                scheduled=None,
                sent=start + i * 0.1,
                status=200 if i < 60 else 429,
                outcome="ok" if i < 60 else "expected_429",
                ratelimit_limit=60,
                ratelimit_remaining=max(0, 59 - i),
                ratelimit_reset=reset(i),
                retry_after="5" if i >= 60 else None,
                retry_wait=5.0 if i == 61 else 0.0,
            )
            for i in range(62)
        ]

    for reset in (lambda i: 1_700_000_060, lambda i: max(1, 60 - i // 10)):
        verdicts = _judge("rpm_burst", burst(0.0, reset) + burst(70.0, reset))
        assert verdicts["polite: 429 starts at the documented limit of 60"] == "pass", verdicts
    verdicts = _judge("rpm_burst", burst(0.0, lambda i: 9)[:30])  # never filled to the limit
    assert verdicts["polite: 429 starts at the documented limit of 60"] == "inconclusive"


def _load(
    report_dir: Path,
    profile: str,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> tuple[int, dict]:
    done = opconform_cli(
        "load",
        profile,
        "--report-dir",
        str(report_dir),
        "--progress-seconds",
        "2",
        *args,
        timeout=timeout,
        env=env,
    )
    result = report_dir / "load.json"
    document = (
        json.loads(result.read_text())
        if result.is_file()
        else {"stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    )
    document["_dir"], document["_stdout"] = str(report_dir), done.stdout[-3000:]
    return done.returncode, document


def _broken(document: dict[str, Any]) -> list[str]:
    return [e["name"] for e in document.get("expectations", []) if e["status"] == "fail"]


# (id, profile, options, gateway faults, expected exit, an expectation that must break)
REFERENCE_CASES = [
    (  # synthetic prompts, output targets drawn per request
        "steady",
        "steady",
        ["--duration", "5s", "--output-tokens", "uniform:16:48", "--prompt-tokens", "100"],
        [],
        0,
        None,
    ),
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
    # A 3 s window lets the Free key carry ~16 req/s: enough requests per slice to judge drift.
    (
        "soak",
        "soak",
        ["--duration", "6s", "--profile-option", "buckets=3", *SHORT_WINDOW],
        [],
        0,
        None,
    ),
    (  # open loop above the plan's requests/min, waiting as Retry-After says: goodput apart
        "steady-over-quota",
        "steady",
        [
            "--duration",
            "6s",
            *SHORT_WINDOW,
            "--arrival",
            "constant",
            "--rate",
            "30",
            "--honour-retry-after",
        ],
        [],
        0,
        None,
    ),
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


NOT_FAILED = -1  # conformant behaviour: pass or inconclusive (exit 0 or 3), never fail
FAST = "--ttft-ms 0 --tpot-ms 0 --answer-tokens 8"  # the reference, short and fast
# Every profile against targets whose streams end before anyone can hold them: the reference in
# its short-and-fast mode and an independent minimal server (tests/support/minimal_server.py).
OTHER_CASES: list[tuple[Any, ...]] = [
    (f"{target}-{name}", profile, options, [], NOT_FAILED, None, target)
    for target in ("fast", "minimal")
    for name, profile, options in (
        ("steady", "steady", ["--duration", "3s"]),
        ("burst", "rpm-burst", ["--duration", "7s", *SHORT_WINDOW]),
        ("cap", "concurrency-cap", ["--duration", "5s", *SHORT_WINDOW]),
        ("isolation", "key-isolation", ["--duration", "5s", *SHORT_WINDOW]),
        ("soak", "soak", ["--duration", "3s", "--profile-option", "buckets=2"]),
    )
] + [
    # open-loop Poisson arrivals, one sweep step long enough for the statistics
    (
        "poisson-sweep",
        "sweep",
        [
            "--duration",
            "12s",
            "--arrival",
            "poisson",
            "--profile-option",
            "rates=50",
            "--profile-option",
            "step_seconds=7",
            "--seed",
            "5",
        ],
        [],
        0,
        None,
        "reference",
    ),
]
CASES = [(*case, "reference") for case in REFERENCE_CASES] + OTHER_CASES


@pytest.fixture(scope="module")
def profile_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, dict]]:
    folder = tmp_path_factory.mktemp("load")

    def one(case: tuple) -> tuple[int, dict]:
        name, profile, options, faults, _, _, target = case
        window = ["--window-seconds 3"] * ("--window-seconds" in options)
        if target == "minimal":
            with MinimalServer(window_seconds=3 if window else 60) as server:
                return _load(folder / name, profile, *options, env=server.env)
        gateway = " ".join(window + [FAST] * (target == "fast") + [f"--fault {f}" for f in faults])
        return _load(folder / name, profile, *options, "--gateway-args", gateway)

    # Three at once: most runs wait on timers at a few requests/s; the longest run first.
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip([c[0] for c in CASES], pool.map(one, CASES), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_profile_verdict(profile_runs: dict[str, tuple[int, dict]], case: tuple) -> None:
    name, _, _, _, expected_code, must_break, _ = case
    code, document = profile_runs[name]
    shown = json.dumps(document, indent=1, default=str)[:3000]
    if expected_code == NOT_FAILED:
        assert code in (0, 3) and not _broken(document), shown
    else:
        assert code == expected_code, shown
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
    streams = [
        json.loads(line)
        for line in (Path(steady["_dir"]) / "samples.jsonl").read_text().splitlines()
    ]
    targets = {s["max_tokens"] for s in streams}
    assert len(targets) > 1 and min(targets) >= 16 and max(targets) <= 48, targets
    # max_tokens set per request, output counted from usage: the answer reached its target
    assert all(s["output_tokens"] == s["max_tokens"] for s in streams if s["outcome"] == "ok")
    _, ramp = profile_runs["ramp"]
    assert ramp["extra"]["steps"] and ramp["extra"]["capacity"]
    _, quota = profile_runs["quota"]
    assert quota["extra"]["cut_off"]
    assert 100_000 <= quota["extra"]["tokens_before_cutoff"] <= 125_000
    _, over = profile_runs["steady-over-quota"]
    quota = over["metrics"]
    assert quota["rate_limited"] > 0 and quota["retry_wait_s"] > 0, quota
    assert 0 < quota["goodput_rps"] < quota["offered_rps"], quota
    _, cap = profile_runs["cap"]  # what the profile did, planned from its probe
    assert cap["extra"]["probe"]["streams"] == 2 and cap["extra"]["rounds"]
    assert "opconform: [" in steady["_stdout"]  # the live status line, without a TTY
    lines = (Path(steady["_dir"]) / "report.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("|")]
    assert rows and all(line.endswith("|") for line in rows), rows  # one row per line
    assert len({line.count(" | ") for line in rows if line.startswith("| metric")}) == 1


@pytest.mark.slow
def test_open_loop_poisson_arrivals(profile_runs: dict[str, tuple[int, dict]]) -> None:
    """Open-loop Poisson at 50/s for 7 s: inter-arrival CV near 1, achieved = offered, and the
    sweep reports the rate as capacity with its curve."""
    code, document = profile_runs["poisson-sweep"]
    assert code == 0, json.dumps(document, indent=1, default=str)[:3000]
    samples = [
        json.loads(line)
        for line in (Path(document["_dir"]) / "samples.jsonl").read_text().splitlines()
    ]
    times = sorted(s["scheduled"] for s in samples if s["phase"] == "rate-50")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.15)
    step = document["extra"]["steps"][0]
    assert step["offered_rps"] == pytest.approx(50, rel=0.15)  # Poisson noise: 350 arrivals
    assert step["achieved_rps"] == pytest.approx(step["offered_rps"], rel=0.03)
    assert document["extra"]["capacity_rps"] == 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_master_with_two_workers_merges_every_request(tmp_path: Path) -> None:
    port = _free_port()
    with EmbeddedGateway() as gateway:
        # Locust started by hand: its settings come from the OP_* and OP_LOAD_* variables.
        env = clean_env(
            {
                "OP_API_KEY": gateway.env["OP_ENTERPRISE_API_KEY"],
                "OP_PLAN": "enterprise",
                "OP_LOAD_PROFILE_OPTION": "rate=20",
            }
        )
        common = [
            "-f",
            str(PROFILE_DIR / "steady.py"),
            "--host",
            gateway.base_url,
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
            ],
            env={**env, "OP_LOAD_REPORT_DIR": str(tmp_path)},
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
    (
        ["steady", "--plan", "enterprise", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "x"],
        "--enterprise-requests-per-min",
    ),
    (["steady", "--arrival", "poisson"], "needs --rate"),
    (["ramp", "--arrival", "constant", "--rate", "2"], "soak, steady and sweep only"),
    (["concurrency-cap", "--processes", "2"], "--processes 1"),
    (["steady", "--read-timeout", "0"], "--read-timeout must be more than zero"),
    (["steady", "--output-tokens", "uniform:9:3"], "--output-tokens"),
    (["steady", "--dataset", "/nonexistent/prompts.jsonl"], "cannot read"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[a[0] + a[-1] for a, _ in BAD_INPUT])
def test_bad_load_input_is_one_clear_line(tmp_path: Path, argv: list[str], message: str) -> None:
    started = time.monotonic()
    done = opconform_cli("load", *argv, "--report-dir", str(tmp_path / "r"), timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and message in output and "Traceback" not in output, output
    assert time.monotonic() - started < 30


def test_unreachable_target_trips_the_breaker(tmp_path: Path) -> None:
    """The target goes away after the pre-check's one connection: after --breaker transport
    failures in a row the run stops, and load.json says the target could not be judged (exit 3)
    long before the duration."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def accept_once_then_vanish() -> None:
        connection, _ = listener.accept()  # the pre-check's; every later one is refused
        connection.close()
        listener.close()

    threading.Thread(target=accept_once_then_vanish, daemon=True).start()
    started = time.monotonic()
    code, document = _load(
        tmp_path / "r",
        "steady",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--api-key",
        "op_sk_test_x",
        "--duration",
        "60s",
        "--profile-option",
        "rate=40",
        "--breaker",
        "10",
        timeout=90,
    )
    assert code == 3 and document["verdict"] == "unreachable", document
    assert "transport failures in a row" in document["breaker"]
    assert time.monotonic() - started < 40


@pytest.mark.slow
def test_silent_target_never_hangs(tmp_path: Path) -> None:
    """A target that accepts and never answers: the run ends at its duration plus the stop
    timeout with a finished load.json, not a hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # never accepted: requests sit unanswered
        port = silent.getsockname()[1]
        started = time.monotonic()
        code, document = _load(
            tmp_path / "r",
            "steady",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--api-key",
            "op_sk_test_x",
            "--duration",
            "3s",
            timeout=120,
        )
    assert code == 3 and document.get("verdict") in ("inconclusive", "unreachable"), document
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_tls_target_is_verified_and_trusted_with_a_ca_bundle(
    tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    """Certificates are verified (Locust's own default is not to); --ca-bundle trusts a
    private CA; a secret --header never reaches load.json."""
    with EmbeddedGateway(["--tls-cert", str(tls_files["server"])]) as gateway:
        common = ["--base-url", gateway.base_url, "--api-key", gateway.env["OP_API_KEY"]]
        code, trusted = _load(
            tmp_path / "trusted",
            "steady",
            *common,
            "--duration",
            "3s",
            "--ca-bundle",
            str(tls_files["ca"]),
            "--secret-header",
            "X-Proxy-Token: sekrit-0123",
        )
        assert code == 0, trusted
        assert "sekrit-0123" not in (tmp_path / "trusted" / "load.json").read_text()
        code, untrusted = _load(
            tmp_path / "untrusted",
            "steady",
            *common,
            "--duration",
            "20s",
            "--profile-option",
            "rate=20",
            "--breaker",
            "5",
        )
    # Without --ca-bundle the private CA is not trusted: the pre-check's handshake fails, and
    # nothing is judged (exit 3, Locust never started).
    assert code == 3 and untrusted["verdict"] == "inconclusive", untrusted
    assert "certificate" in " ".join(untrusted["invalid_reasons"]), untrusted


@pytest.mark.slow
def test_no_key_in_any_load_artifact(tmp_path: Path) -> None:
    """A target that echoes the key it was sent into its errors: neither the console, load.json,
    samples.jsonl, the report nor Locust's own CSV and HTML may show it."""
    secret = "op_sk_live_echoed0123456789"
    with EmbeddedGateway(["--fault", "error-echoes-key"]) as gateway:
        done = opconform_cli(
            "load",
            "steady",
            "--duration",
            "3s",
            "--base-url",
            gateway.base_url,
            "--api-key",
            secret,
            "--report-dir",
            str(tmp_path / "run"),
            timeout=120,
        )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    texts = {"console": done.stdout + done.stderr}
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            texts[path.name] = path.read_text(encoding="utf-8", errors="replace")
    assert {"samples.jsonl", "locust_failures.csv", "locust.html", "report.html"} <= set(texts)
    assert "unexpected_status" in texts["samples.jsonl"]  # the 401s were recorded
    for where, text in texts.items():
        assert secret not in text and secret.removeprefix("op_sk_") not in text, where
        assert not LEAK_PATTERN.findall(text), (where, LEAK_PATTERN.findall(text)[:3])
