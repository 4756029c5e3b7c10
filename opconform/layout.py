"""The source checkout as it is installed: the folders conformance/, gateway/, loadtests/,
reports/ and schemas/ at the top of the repository are the packages opconform.conformance,
opconform.gateway, ... (pyproject.toml: package-dir), so the wheel adds one top-level name.

Two kinds of tools find modules by folder rather than by import, and would take such a folder for
a top-level package of its own:
- pytest names a module it collects after its folder's __init__.py chain: conformance/conftest.py
  and conformance/test_auth.py would become `conformance.conftest` and `conformance.test_auth`,
  copies beside the installed package with state of their own. Registered as a pytest plugin, this
  module makes such a name the very module object of the installed name (`install`).
- mypy and import-linter read a package from one folder: `python -m opconform.layout OUT tests`
  writes the installed layout as links (OUT/opconform/conformance/plugin.py ->
  conformance/plugin.py) for them to read.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = __name__.rpartition(".")[0]
# In a source checkout the folders are this folder's siblings; in an installed wheel they are
# inside it and nothing here applies.
CHECKOUT = Path(__file__).resolve().parent.parent
# What the link tree mirrors: Python sources and the marks type checkers read.
SOURCE_SUFFIXES = (".py", ".pyi", ".typed")
NOT_SOURCE = {"__pycache__", "node_modules"}


class _SameModule(importlib.abc.Loader):
    """Loads a folder's name as the module already imported under the installed name."""

    def __init__(self, installed: str) -> None:
        self.installed = installed
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.installed)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # importlib gave the module the folder name's spec: it keeps its own.
        module.__spec__ = self.spec


class FolderAlias(importlib.abc.MetaPathFinder):
    """`conformance.x`, imported from a checkout's folder, is `opconform.conformance.x`."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top, _, rest = fullname.partition(".")
        if top == PACKAGE:
            return None
        if rest:
            parent = fullname.rpartition(".")[0]
            if (
                parent not in sys.modules
                or sys.modules.get(f"{PACKAGE}.{parent}") is not (sys.modules[parent])
            ):
                return None
        elif not _is_mapped_folder(top):
            return None
        installed = f"{PACKAGE}.{fullname}"
        found = importlib.util.find_spec(installed)
        if found is None:
            return None
        return importlib.util.spec_from_loader(
            fullname,
            _SameModule(installed),
            is_package=found.submodule_search_locations is not None,
        )


def _is_mapped_folder(name: str) -> bool:
    init = CHECKOUT / name / "__init__.py"
    if not init.is_file():
        return False
    installed = importlib.util.find_spec(f"{PACKAGE}.{name}")
    return (
        installed is not None
        and installed.origin is not None
        and Path(installed.origin).resolve() == init.resolve()
    )


_FINDER = FolderAlias()


def install() -> None:
    """Put the alias first on sys.meta_path: ahead of pytest's assertion rewriter, which would
    otherwise load a test module a second time under the folder's name. An installed wheel has
    no folders to alias (and no pyproject.toml beside the package)."""
    if not (CHECKOUT / "pyproject.toml").is_file():
        return
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    sys.meta_path.insert(0, _FINDER)


def pytest_load_initial_conftests() -> None:
    """Runs before pytest imports the first conftest.py (after its import hooks are in place)."""
    install()


install()


def package_dirs(checkout: Path = CHECKOUT) -> dict[str, Path]:
    """The installed package -> its folder, as pyproject.toml maps them."""
    data = tomllib.loads((checkout / "pyproject.toml").read_text())
    mapping: dict[str, str] = data["tool"]["setuptools"]["package-dir"]
    return {name: checkout / folder for name, folder in mapping.items()}


def write_tree(out: Path, extra: Sequence[str] = (), checkout: Path = CHECKOUT) -> list[Path]:
    """Mirror the installed layout under `out` as links to the sources (and the `extra` folders
    of the checkout as they are); returns the roots written. Only what it writes is replaced, so
    a tool's cache beside them stays."""
    roots: dict[Path, Path] = {}
    for name, folder in package_dirs(checkout).items():
        roots[out.joinpath(*name.split("."))] = folder
    for name in extra:
        roots[out / name] = checkout / name
    tops = sorted({out / target.relative_to(out).parts[0] for target in roots})
    for top in tops:
        shutil.rmtree(top, ignore_errors=True)
    for target, source in sorted(roots.items()):
        _link_sources(source, target, skip={s for s in roots.values() if s != source})
    return tops


def _link_sources(folder: Path, target: Path, skip: set[Path]) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in NOT_SOURCE and here / d not in skip]
        for name in filenames:
            if name.endswith(SOURCE_SUFFIXES):
                link = target / here.relative_to(folder) / name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(here / name)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: python -m opconform.layout OUT [FOLDER ...]", file=sys.stderr)
        return 2
    if not (CHECKOUT / "pyproject.toml").is_file():
        print(f"{CHECKOUT} is not a source checkout (no pyproject.toml)", file=sys.stderr)
        return 2
    write_tree(Path(args[0]).resolve(), args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
