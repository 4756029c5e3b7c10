"""benchmarks/load_accuracy.py pairs the client's streams with the server's timing log as it
says. Timing itself is a benchmark, not a test: nothing here is timed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest


def _benchmark() -> Any:
    """benchmarks/ is scripts, not a package: load the file as the module it is."""
    path = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "load_accuracy.py"
    spec = importlib.util.spec_from_file_location("load_accuracy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BENCHMARK = _benchmark()
server_truth, client_view, client_end, saturation = (
    BENCHMARK.server_truth,
    BENCHMARK.client_view,
    BENCHMARK.client_end,
    BENCHMARK.saturation,
)


def _log(path: Path, streams: dict[str, list[tuple[float, bool, bool]]]) -> Path:
    with path.open("w") as out:
        for ident, events in streams.items():
            for seq, (t, content, done) in enumerate(events):
                line = {"id": ident, "seq": seq, "t": t, "content": content, "done": done}
                out.write(json.dumps(line) + "\n")
    return path


def test_server_truth_gaps_between_content_events_of_finished_streams(tmp_path: Path) -> None:
    role, done = (0.0, False, False), (0.5, False, True)
    log = _log(
        tmp_path / "timing.jsonl",
        {
            # role chunk, three content events, finish chunk, [DONE]
            "a": [role, (0.2, True, False), (0.22, True, False), (0.25, True, False), done],
            "b": [role, (0.2, True, False), (0.23, True, False)],  # cut by the end of the run
        },
    )
    gaps, itls = server_truth(log)
    assert gaps == pytest.approx([0.02, 0.03])
    assert itls == pytest.approx([0.025])
    # a stream the gateway finished after the client's last one: the client had stopped reading
    assert server_truth(log, until=0.4) == ([], [])
    assert server_truth(log, until=0.5)[0] == pytest.approx([0.02, 0.03])


def test_client_end_is_the_last_finished_stream() -> None:
    samples = [
        {"outcome": "ok", "sent": 10.0, "e2e": 1.5},
        {"outcome": "ok", "sent": 11.0, "e2e": 0.2},
        {"outcome": "broken_stream", "sent": 12.0, "e2e": 5.0},
    ]
    assert client_end(samples) == 11.5
    assert client_end([]) is None


def test_client_view_takes_finished_streams_only() -> None:
    samples = [
        {"outcome": "ok", "kind": "stream", "gaps": [0.02, 0.03], "itl": 0.025},
        {"outcome": "broken_stream", "kind": "stream", "gaps": [9.0], "itl": 9.0},
        {"outcome": "ok", "kind": "chat", "gaps": [], "itl": None},
        {"outcome": "ok", "kind": "stream", "gaps": [], "itl": None},
    ]
    assert client_view(samples) == ([0.02, 0.03], [0.025])


def test_saturation_names_what_makes_a_row_invalid() -> None:
    fine = saturation({"valid": True, "invalid_reasons": []}, [0.4, 0.5], 0.6, 201.0, 200.0)
    assert fine == []
    reasons = saturation(
        {"valid": False, "invalid_reasons": ["Locust's CPU warning fired"]},
        [0.4, 0.95],
        0.97,
        547.0,
        200.0,
    )
    assert any("generator process" in r and "95%" in r for r in reasons)
    assert any("gateway" in r and "97%" in r for r in reasons)
    assert any("first token" in r for r in reasons)
    assert "Locust's CPU warning fired" in reasons
