"""Short text for one line of a console, a table cell or a "blocked by" note."""

from __future__ import annotations


def elide(text: object, limit: int = 300) -> str:
    """One line of at most `limit` characters that keeps the start (what broke) and the end
    (often the request it names): the middle goes, marked, so a JSON body is never cut off
    mid-way without saying so."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    head = limit * 2 // 3
    tail = max(limit - head - 7, 0)
    return f"{line[:head]} [...] {line[len(line) - tail :]}"
