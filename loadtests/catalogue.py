"""The load profiles as `opconform load` sees them before Locust starts: each profile file's
`Profile(...)` declares its facts (default duration, the limits it needs, how it sends), and
they are read from that call without importing the file (a profile imports Locust, which patches
the interpreter with gevent). No Locust import here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass
class ProfileSpec:
    """What a profile declares about itself; opconform.loadtests.verdict.Profile adds its
    judgement."""

    name: str
    duration: str = "60s"  # the default --duration
    needs_limits: tuple[str, ...] = ()  # figures it must know: "rpm", "concurrent"
    # An explicit rate (--rate, or the profile option rate=) stands in for the key's rpm.
    rate_replaces_rpm: bool = False
    capacity: bool = False  # finds the target's capacity: the embedded Enterprise key
    # Open-loop arrivals (--arrival constant|poisson): "rate" at --rate, "own" at rates of its
    # own choosing; "" closed loop only.
    open_loop: str = ""
    # How many users by default: "one"; "per-key", one per identity given; "closed-loop", one
    # per concurrency slot but one (up to 4), or one per generator process when open-loop.
    users: str = "one"
    one_process: bool = False  # counts what it sees in one process (--processes 1)

    def needed_limits(self, explicit_rate: bool) -> tuple[str, ...]:
        if explicit_rate and self.rate_replaces_rpm:
            return tuple(name for name in self.needs_limits if name != "rpm")
        return self.needs_limits


def explicit_rate(rate: float | None, profile_options: Iterable[str]) -> bool:
    """The run states its rate (--rate, or the profile option rate=...)."""
    return bool(rate) or "rate" in profile_options


_DECLARED = {field.name for field in fields(ProfileSpec)} - {"name"}


@dataclass(frozen=True)
class ProfileFile:
    path: Path
    spec: ProfileSpec

    def summary(self) -> str:
        """The first sentence of the profile's own docstring."""
        tree = ast.parse(self.path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        name = self.spec.name
        if first.startswith(name):  # "quota (opt-in): burns ..." -> "(opt-in) burns ..."
            first = first[len(name) :].replace(":", "", 1).strip()
        return first


@cache
def profiles(directory: Path = PROFILE_DIR) -> dict[str, ProfileFile]:
    """Every profile of `directory` by name, from the literal arguments of its Profile(...)."""
    found: dict[str, ProfileFile] = {}
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Profile"
            ):
                continue
            name = ast.literal_eval(node.args[0])
            declared = {
                keyword.arg: ast.literal_eval(keyword.value)
                for keyword in node.keywords
                if keyword.arg in _DECLARED
            }
            found[name] = ProfileFile(path, ProfileSpec(name, **declared))
    return found
