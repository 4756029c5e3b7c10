"""What the load profiles send: prompts with prompt and output token targets, synthetic or from a
JSONL dataset. Pure Python (no Locust), so it is tested on its own.

A synthetic request asks for *at least* its output target and sets `max_tokens` to the target,
so the answer's length is set by `max_tokens` on any model rather than by how a particular model
reads the prompt. Counting is the task whose answer length every model gets right (each line is
one token or more); the reference gateway's mock reads the same sentence. The prompt's own
length comes from filler words that are one token each in common tokenizers.

Targets are drawn from a distribution: "256" or "fixed:256", "uniform:64:512" (inclusive),
"normal:256:64" (mean, standard deviation; clamped to 1..MAX_TOKENS).

A dataset is JSONL, one request a line: {"prompt": "..."} or {"messages": [...]}, with an
optional "max_tokens" (otherwise drawn from the output distribution).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opconform.exitcodes import UsageError

MAX_TOKENS = 200_000  # far above any model's context: only guards against a typo
_FILLER = (
    "the of and to in is it that for on as with by this be are from at or an was which model "
    "answer request token stream data value time world code line word light open fast small"
).split()
INSTRUCTION = "Count from 1 to {n}, one number per line, and write nothing else."


@dataclass(frozen=True)
class Distribution:
    kind: str  # fixed, uniform, normal
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, text: str, *, what: str = "token target") -> Distribution:
        parts = str(text).strip().split(":")
        try:
            numbers = [float(p) for p in parts[1:]] if len(parts) > 1 else [float(parts[0])]
        except ValueError:
            raise UsageError(f"{what}: cannot read {text!r}; {EXAMPLES}") from None
        kind = parts[0] if len(parts) > 1 else "fixed"
        shapes = {"fixed": 1, "uniform": 2, "normal": 2}
        if kind not in shapes or len(numbers) != shapes[kind] or min(numbers) < 0:
            raise UsageError(f"{what}: cannot read {text!r}; {EXAMPLES}")
        if kind != "normal" and (numbers[0] < 1 or numbers[-1] < numbers[0]):
            raise UsageError(f"{what}: {text!r} needs 1 <= low <= high")
        return cls(kind, numbers[0], numbers[1] if len(numbers) > 1 else 0.0)

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = rng.randint(int(self.a), int(self.b))
        else:
            value = rng.gauss(self.a, self.b)
        return int(min(MAX_TOKENS, max(1, round(value))))

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def describe(self) -> str:
        return {
            "fixed": f"{self.a:g}",
            "uniform": f"uniform {self.a:g}..{self.b:g}",
            "normal": f"normal mean {self.a:g} sd {self.b:g}",
        }[self.kind]


EXAMPLES = "use e.g. 256, uniform:64:512 or normal:256:64"


@dataclass(frozen=True)
class Request:
    messages: list[dict[str, Any]]
    max_tokens: int
    prompt_target: int | None  # synthetic prompts: the prompt-token target


def synthetic(output_tokens: int, prompt_tokens: int, rng: random.Random) -> Request:
    """A prompt of about `prompt_tokens` tokens asking for at least `output_tokens`."""
    instruction = INSTRUCTION.format(n=output_tokens)
    # The instruction is ~15 tokens; random filler makes every prompt different, so no cache
    # of an earlier identical prompt shortens the target's work.
    words = max(0, prompt_tokens - 15)
    filler = " ".join(rng.choice(_FILLER) for _ in range(words))
    text = f"{filler}\n\n{instruction}" if filler else instruction
    return Request([{"role": "user", "content": text}], output_tokens, prompt_tokens)


def read_dataset(path: Path) -> list[dict[str, Any]]:
    """The dataset's requests; UsageError names the first bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--dataset: cannot read {path}: {exc.strerror}") from None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise UsageError(f"--dataset {path}:{number}: not JSON") from None
        prompt, messages = (
            (row.get("prompt"), row.get("messages"))
            if isinstance(row, dict)
            else (
                None,
                None,
            )
        )
        if not (isinstance(prompt, str) and prompt) and not (
            isinstance(messages, list) and messages
        ):
            raise UsageError(f'--dataset {path}:{number}: needs a "prompt" or "messages"')
        max_tokens = row.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise UsageError(f"--dataset {path}:{number}: max_tokens must be a positive integer")
        rows.append(row)
    if not rows:
        raise UsageError(f"--dataset {path}: no requests in it")
    return rows


class Workload:
    """Draws the next request: from the dataset in order (cycling), or synthetic."""

    def __init__(
        self,
        prompt_tokens: Distribution,
        output_tokens: Distribution,
        dataset: list[dict[str, Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.dataset = dataset
        self.rng = random.Random(seed)
        self.position = self.rng.randrange(len(dataset)) if dataset else 0

    def next(self, output_tokens: int | None = None) -> Request:
        """The next request; `output_tokens` overrides the drawn target (profiles that need
        long streams ask for them)."""
        if self.dataset and output_tokens is None:
            row = self.dataset[self.position % len(self.dataset)]
            self.position += 1
            messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
            target = row.get("max_tokens") or self.output_tokens.draw(self.rng)
            return Request(messages, int(target), None)
        target = output_tokens or self.output_tokens.draw(self.rng)
        return synthetic(target, self.prompt_tokens.draw(self.rng), self.rng)

    def describe(self) -> dict[str, Any]:
        return {
            "source": "dataset" if self.dataset else "synthetic",
            "dataset_requests": len(self.dataset) if self.dataset else None,
            "prompt_tokens": self.prompt_tokens.describe(),
            "output_tokens": self.output_tokens.describe(),
        }
