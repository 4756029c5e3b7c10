"""Redaction, applied once where evidence is recorded, so nothing downstream can leak a key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from opconform.contract import KEY_PREFIX

REDACTED = "[REDACTED]"
# Anything shaped like a key, known to us or not. The documented prefix stays visible, which is
# useful evidence ("a key with the op_sk_ prefix was sent") and nothing more.
_KEY_SHAPED = re.compile(r"op_sk_(?!\[REDACTED\])[A-Za-z0-9_\-]+")
LEAK_PATTERN = _KEY_SHAPED


class Redactor:
    """Replaces secrets in text. A secret added with a label is replaced by a placeholder that
    says what was sent ("Basic <main key>", "Bearer <main key without op_sk_>"), so redaction
    never hides what a check did; anything else key-shaped becomes op_sk_[REDACTED]."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self._labels: dict[str, str] = {}
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        for secret in secrets:
            if not secret:
                continue
            # The key without its prefix is sent by the malformed-key check: just as secret.
            variants = {secret, secret.removeprefix(KEY_PREFIX)}
            self._secrets.extend(v for v in variants if len(v) >= 4 and v not in self._secrets)
        self._secrets.sort(key=len, reverse=True)

    def add_labelled(self, labels: Mapping[str, str | None]) -> None:
        """{label: secret}: e.g. {"main": "op_sk_..."} is shown as <main key>."""
        for label, secret in labels.items():
            if not secret:
                continue
            self.add(secret)
            self._labels.setdefault(secret, f"<{label} key>")
            bare = secret.removeprefix(KEY_PREFIX)
            if bare != secret and len(bare) >= 4:
                self._labels.setdefault(bare, f"<{label} key without {KEY_PREFIX}>")

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, self._labels.get(secret, REDACTED))
        return _KEY_SHAPED.sub(KEY_PREFIX + REDACTED, value)

    def headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
        items = headers.items() if isinstance(headers, Mapping) else headers
        return {name: self.text(value) for name, value in items}

    def find_leaks(self, value: str) -> list[str]:
        """Known secrets or key-shaped strings present in `value` (for tests and self-checks)."""
        found = [s for s in self._secrets if s in value]
        found.extend(m.group(0) for m in _KEY_SHAPED.finditer(value))
        return found


# Files of a run folder that are text (reports, evidence, Locust's CSV and HTML, samples).
TEXT_SUFFIXES = (".json", ".jsonl", ".xml", ".txt", ".md", ".html", ".csv")


def sweep(folder: Path, secrets: Iterable[str | None]) -> list[Path]:
    """Defence in depth, once a run has finished: evidence is redacted where it is recorded,
    but other tools write into the run folder too (JUnit, Allure, Locust). Scrub known secrets
    and anything key-shaped from every text file; returns the files that needed it."""
    redactor = Redactor(secrets)
    cleaned = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
            clean = redactor.text(text)
            if clean != text:
                path.write_text(clean, encoding="utf-8")
                cleaned.append(path)
    return cleaned
