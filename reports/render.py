"""Render a run folder into report.html (self-contained) and report.md.

A conformance run has results.json (and transcripts/); a load run has load.json (and
samples.jsonl). Evidence was redacted where it was recorded; the rendered text is redacted once
more, so nothing key-shaped reaches a report whatever its inputs.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from opconform.outcome import (
    FAIL,
    INCONCLUSIVE,
    LOAD_FAIL,
    LOAD_INCONCLUSIVE,
    LOAD_PASS,
    NEEDS_ATTENTION,
    PASS,
    load_status,
)
from opconform.redact import Redactor
from opconform.text import elide

TEMPLATES = Path(__file__).resolve().parent / "templates"
EVIDENCE_PER_CHECK = 3
MESSAGE_CHARS = 300  # a message longer than this loses its middle, never its end
REPLAY_PER_CAUSE = 2
# What one curl line cannot show: the state of the key a finding needs first ({...}: the
# target's limits as results.json records them).
SITUATION = {
    "OP-RL-005": "on two requests in a row on this key",
    "OP-RL-007": "after {requests_per_min} requests within 60 s on this key",
    "OP-RL-008": "on the 429 after {requests_per_min} requests within 60 s on this key",
    "OP-RL-009": "after {requests_per_min} requests within 60 s on this key, then waiting "
    "Retry-After",
    "OP-RL-010": "with {concurrent} streams held open on this key",
    "OP-RL-011": "with {concurrent} streams held open on this key, then one closed",
    "OP-RL-012": "after {requests_per_min} requests within 60 s on another key of the plan",
    "OP-RL-013": "after {tokens_per_day} tokens within a day on this key",
}


class ReportError(Exception):
    """The folder holds no run that can be rendered."""


def _environment(markdown: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(
            enabled_extensions=() if markdown else ("j2",), default=not markdown
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    env.filters["first_line"] = lambda text: str(text).strip().split("\n")[0][:200]
    env.filters["elide"] = lambda text: elide(text, MESSAGE_CHARS)
    return env


def reproduction(
    causes: list[dict[str, Any]], checks: dict[str, dict[str, Any]], target: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per root cause: what the key must go through first (when one request cannot show it),
    and its replay lines, each distinct line once in the whole report (later causes refer to
    the first that showed it)."""
    shown: dict[str, str] = {}
    steps = []
    for cause in causes:
        rid = cause["requirement"]
        lines = list(
            dict.fromkeys(line for cid in cause["checks"] for line in checks[cid].get("replay", []))
        )[:REPLAY_PER_CAUSE]
        situation = SITUATION.get(rid)
        try:
            before = situation.format_map(target) if situation else None
        except (KeyError, ValueError):
            before = None
        if before is not None and "None" in before:
            before = None  # a limit the run did not know
        steps.append(
            {
                "requirement": rid,
                "before": before,
                "curl": [line for line in lines if line not in shown],
                "same_as": sorted({shown[line] for line in lines if line in shown}),
            }
        )
        for line in lines:
            shown.setdefault(line, rid)
    return steps


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def kind_of(run_dir: Path) -> str:
    if (run_dir / "results.json").is_file():
        return "conformance"
    if (run_dir / "load.json").is_file():
        return "load"
    raise ReportError(f"{run_dir} holds neither results.json (conformance) nor load.json (load)")


def load_document(run_dir: Path) -> dict[str, Any]:
    name = "results.json" if kind_of(run_dir) == "conformance" else "load.json"
    try:
        data: dict[str, Any] = json.loads((run_dir / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {run_dir / name}: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{run_dir / name} holds a JSON {type(data).__name__}, not an object")
    return data


def render_run(run_dir: Path) -> list[Path]:
    """Write report.html and report.md into the run folder; returns their paths."""
    if kind_of(run_dir) == "conformance":
        context = conformance_context(load_document(run_dir), run_dir)
        names = ("conformance.html.j2", "conformance.md.j2")
    else:
        context = load_context(load_document(run_dir), run_dir)
        names = ("load.html.j2", "load.md.j2")
    redactor = Redactor()
    written = []
    for template, suffix in zip(names, ("html", "md"), strict=True):
        text = _environment(suffix == "md").get_template(template).render(**context)
        path = run_dir / f"report.{suffix}"
        path.write_text(redactor.text(text), encoding="utf-8")
        written.append(path)
    return written


# ---------------------------------------------------------------------------- conformance
def _evidence(run_dir: Path, relative: str | None) -> list[dict[str, Any]]:
    if not relative:
        return []
    try:
        transcript = json.loads((run_dir / relative).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    shown = []
    for exchange in transcript.get("exchanges", [])[-EVIDENCE_PER_CHECK:]:
        request, response = exchange["request"], exchange["response"]
        headers = "\n".join(f"{k}: {v}" for k, v in response.get("headers", {}).items())
        request_headers = "\n".join(f"{k}: {v}" for k, v in request.get("headers", {}).items())
        text = (
            f"{request['method']} {request['url']}\n{request_headers}\n\n"
            f"{request.get('body', '')}\n\n--- response {response.get('status')} ---\n"
            f"{headers}\n\n{response.get('body', '')}"
        )
        if exchange.get("error"):
            text += f"\n--- transport error ---\n{exchange['error']}"
        shown.append({**exchange, "text": text})
    return shown


def conformance_context(document: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    checks = {c["id"]: c for c in document["checks"]}
    areas: dict[str, list[dict[str, Any]]] = {}
    problems = []
    for row in document["requirements"]:
        row = dict(row)
        row["check_rows"] = []
        for check_id in row["checks"]:
            check = dict(checks[check_id])
            check["evidence"] = (
                _evidence(run_dir, check.get("evidence"))
                if check["status"] in NEEDS_ATTENTION
                else []
            )
            row["check_rows"].append(check)
        areas.setdefault(row["area"], []).append(row)
        if row["status"] in NEEDS_ATTENTION or row["stale_baseline"]:
            problems.append(row)
    verdict = document["verdict"]
    causes = []
    for cause in document.get("root_causes") or []:
        replay = [line for cid in cause["checks"] for line in checks[cid].get("replay", [])]
        causes.append({**cause, "replay": list(dict.fromkeys(replay))[:REPLAY_PER_CAUSE]})
    return {
        **document,
        "partial": document.get("partial"),
        "selection": document.get("selection"),  # runs before it was recorded: the whole suite
        "root_causes": causes,
        "reproduce": reproduction(causes, checks, document.get("target") or {}),
        "blocked_total": sum(len(c["blocked"]) for c in causes),
        "css": (TEMPLATES / "style.css").read_text(),
        "needs_attention": NEEDS_ATTENTION,
        "verdict_text": verdict.upper(),
        "verdict_class": verdict.replace(" ", "-"),
        "started": _utc(document["started_at"]),
        "finished": _utc(document["finished_at"]),
        "duration": document["duration_s"],
        # results.json lists requirements in catalogue order, so areas come in the catalogue's.
        "areas": areas,
        "problems": problems,
    }


# ---------------------------------------------------------------------------- load
def _samples(run_dir: Path) -> list[Any]:
    from opconform.metrics import Sample

    path = run_dir / "samples.jsonl"
    if not path.is_file():
        return []
    return [
        Sample.from_dict(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def load_context(document: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from opconform.reports import plots

    samples = _samples(run_dir)
    metrics = document.get("metrics", {})
    columns = ["p50", "p90", "p95", "p99", "p99.9", "mean"]
    latency = {
        name: {p: _ms((metrics.get(name) or {}).get(p)) for p in columns}
        for name in ("ttfb", "ttft", "itl", "gaps", "e2e", "send_lag")
        if (metrics.get(name) or {}).get("count")
    }
    share = metrics.get("rate_limited_share")
    rates = {
        "requests": metrics.get("requests"),
        "window (first to last send), s": _round(metrics.get("window_s")),
        "target requests/s": _round(metrics.get("target_rps")),
        "offered requests/s (sent in the window)": _round(metrics.get("offered_rps")),
        "achieved requests/s (completed in the window)": _round(metrics.get("achieved_rps")),
        "goodput requests/s (succeeded and met --slo)": _round(metrics.get("goodput_rps")),
        "output tokens/s": _round(metrics.get("output_tokens_per_s"))
        + (" (approximate: no usage)" if metrics.get("tokens_approximate") else ""),
        "error rate": _round(metrics.get("error_rate")),
        "rate limited (429)": f"{metrics.get('rate_limited')}"
        + (f" ({share:.1%} of requests)" if isinstance(share, float) else ""),
        "waited as Retry-After said, s": _round(metrics.get("retry_wait_s")),
    }
    rates = {k: v for k, v in rates.items() if v not in (None, "-", "None")}
    extra_document = document.get("extra") or {}
    curve, curve_columns, capacity_text = _curve(extra_document)
    figures = []
    for title, svg in (
        ("Latency percentiles", plots.latency_percentiles(samples)),
        ("TTFT over time", plots.latency_over_time(samples)),
        ("Throughput and 429s over time, per key", plots.throughput_over_time(samples)),
        ("TTFT histogram", plots.histogram(samples, "ttft")),
        ("ITL histogram", plots.histogram(samples, "itl")),
        (
            "429 onset against the documented limit",
            plots.onset(
                extra_document.get("windows") or {}, extra_document.get("documented_limit") or 0
            ),
        ),
        ("Capacity curve", plots.capacity_curve(extra_document.get("steps") or [])),
    ):
        if svg:
            figures.append({"title": title, "svg": svg})
    extra = {k: v for k, v in extra_document.items() if k not in ("windows", "steps")}
    expectations = [
        {**e, "label": _LABELS.get(load_status(e), load_status(e).upper())}
        for e in document.get("expectations", [])
    ]
    return {
        **document,
        "expectations": expectations,
        "unjudged": [
            f"{e['name']} (needs {e.get('needs') or 'evidence'})"
            for e in expectations
            if load_status(e) == LOAD_INCONCLUSIVE
        ],
        "css": (TEMPLATES / "style.css").read_text(),
        "columns": columns,
        "latency": latency,
        "latency_rows": [[name, *(row[p] for p in columns)] for name, row in latency.items()],
        "rates": rates,
        "curve": curve,
        "curve_columns": curve_columns,
        "capacity_text": capacity_text,
        "figures": figures,
        "extra": json.dumps(extra, indent=1, default=str) if extra else "",
    }


_LABELS = {LOAD_PASS: PASS, LOAD_FAIL: f"**{FAIL}**", LOAD_INCONCLUSIVE: INCONCLUSIVE}


def _curve(extra: dict[str, Any]) -> tuple[list[list[str]], list[str], str]:
    """The capacity curve of a sweep (rates) or a ramp (users), one row per step."""
    steps = extra.get("steps") or []
    if not steps:
        return [], [], ""
    by_rate = "rate" in steps[0]
    columns = [
        "rate/s" if by_rate else "users",
        "achieved/s",
        "goodput/s",
        "TTFT p50",
        "TTFT p95",
        "error rate",
        "verdict",
    ]
    rows = [
        [
            _round(step.get("rate") if by_rate else step.get("users")),
            _round(step.get("achieved_rps")),
            _round(step.get("goodput_rps")),
            _ms(step.get("ttft_p50")),
            _ms(step.get("ttft_p95")),
            _round(step.get("error_rate")),
            ("broken: " + str(step.get("why") or "")).strip() if step.get("broken") else "met",
        ]
        for step in steps
    ]
    if by_rate:
        found = extra.get("capacity_rps")
        text = (
            "none: the lowest rate already broke the thresholds"
            if found is None
            else f"{found:g} requests/s"
            + (
                " or more (no rate tried broke the thresholds)"
                if extra.get("capacity_is_lower_bound")
                else ""
            )
        )
    else:
        good = extra.get("capacity") or {}
        text = f"{good.get('users')} users" if good else "none: the first step broke"
    return [[cell.replace("|", "\\|") for cell in row] for row in rows], columns, text


def _round(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
