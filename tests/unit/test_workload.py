"""What the load run asks for (loadtests/workload.py): token distributions, synthetic prompts
and prompts read from a dataset."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from opconform.exitcodes import UsageError
from opconform.loadtests.workload import Distribution, Workload, read_dataset


def test_workloads_draw_their_targets(tmp_path: Path) -> None:
    rng = random.Random(3)
    assert Distribution.parse("256").draw(rng) == 256
    uniform = [Distribution.parse("uniform:10:20").draw(rng) for _ in range(500)]
    assert min(uniform) == 10 and max(uniform) == 20
    normal = [Distribution.parse("normal:300:30").draw(rng) for _ in range(2000)]
    assert statistics.mean(normal) == pytest.approx(300, rel=0.03)
    for bad in ("many", "uniform:5", "uniform:9:3", "gamma:1:2", "-4"):
        with pytest.raises(UsageError):
            Distribution.parse(bad)
    request = Workload(Distribution.parse("200"), Distribution.parse("64"), seed=1).next()
    words = request.messages[0]["content"].split()
    assert request.max_tokens == 64 and 180 <= len(words) <= 220
    assert "Count from 1 to 64" in request.messages[0]["content"]
    dataset = tmp_path / "prompts.jsonl"
    dataset.write_text(
        '{"prompt": "hi", "max_tokens": 7}\n{"messages": [{"role": "user", "content": "yo"}]}\n'
    )
    workload = Workload(Distribution.parse("1"), Distribution.parse("9"), read_dataset(dataset))
    drawn = [workload.next() for _ in range(4)]
    assert sorted(r.max_tokens for r in drawn) == [7, 7, 9, 9]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"text": 1}\n')
    with pytest.raises(UsageError, match=r"bad\.jsonl:2"):
        read_dataset(tmp_path / "bad.jsonl")
