"""One installed namespace (opconform/layout.py, pyproject.toml package-dir): every package folder
is installed, the link tree mirrors the installed layout, and a folder's own name is the installed
module, never a copy."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

from opconform import layout

ROOT = layout.CHECKOUT


def test_every_package_folder_is_installed() -> None:
    """setuptools installs only the packages pyproject.toml lists: a new subfolder with an
    __init__.py that is not listed would be missing from the wheel, silently."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for name, folder in layout.package_dirs().items():
        for init in (ROOT / setuptools["package-dir"][name]).rglob("__init__.py"):
            if "node_modules" in init.parts:
                continue
            rel = init.parent.relative_to(folder)
            found.add(".".join((name, *rel.parts)))
    assert found - listed == set(), "packages missing from pyproject.toml"
    assert listed - found == set(), "listed packages without a folder"


def test_the_link_tree_is_the_installed_layout(tmp_path: Path) -> None:
    roots = layout.write_tree(tmp_path, ["tests"])
    assert sorted(p.name for p in roots) == ["opconform", "tests"]
    plugin = tmp_path / "opconform" / "conformance" / "plugin.py"
    assert plugin.is_symlink() and plugin.resolve() == ROOT / "conformance" / "plugin.py"
    assert (tmp_path / "opconform" / "cli.py").resolve() == ROOT / "opconform" / "cli.py"
    assert not list(tmp_path.rglob("node_modules")) and not list(tmp_path.rglob("*.yaml"))
    # A second run replaces what it wrote (a file gone from the checkout is gone from the tree).
    stale = tmp_path / "opconform" / "gone.py"
    stale.symlink_to(ROOT / "opconform" / "cli.py")
    layout.write_tree(tmp_path, ["tests"])
    assert not stale.exists()


def test_a_folder_name_is_the_installed_module() -> None:
    """What pytest does when it collects conformance/ from a checkout: import it by folder."""
    layout.install()
    by_folder = importlib.import_module("conformance.verdicts")
    assert by_folder is importlib.import_module("opconform.conformance.verdicts")
    assert by_folder.__spec__ is not None and by_folder.__spec__.name == by_folder.__name__
    assert importlib.import_module("conformance") is importlib.import_module(
        "opconform.conformance"
    )
