"""The suite collected from the checkout, as `opconform run` and plain `pytest conformance` do:
each module is imported once, under its installed name (opconform/layout.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, clean_env

COLLECT = """
import collections, json, os, sys
import pytest
code = pytest.main([sys.argv[1], "--collect-only", "-q", "-p", "no:cacheprovider"])
objects = collections.defaultdict(set)
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path:
        objects[os.path.realpath(path)].add(id(module))
print(json.dumps({
    "code": int(code),
    "copies": sorted(path for path, ids in objects.items() if len(ids) > 1),
    "checks": sorted(n for n in sys.modules if n.startswith("opconform.conformance.test_")),
    "conftest": "opconform.conformance.conftest" in sys.modules,
}))
"""


@pytest.mark.parametrize("suite", ["conformance", str(ROOT / "conformance")])
def test_the_suite_is_imported_once_under_its_installed_name(suite: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", COLLECT, suite],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["code"] == 0
    assert found["copies"] == []
    assert found["conftest"] and "opconform.conformance.test_auth" in found["checks"]
