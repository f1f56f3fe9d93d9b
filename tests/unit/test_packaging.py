"""pyproject.toml lists every sub-package (setuptools' package-dir mapping cannot discover them)."""
from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top in ("core", "app"):
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO).parts
            found.add(".".join(("semirest",) + rel))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"


def test_core_never_imports_qt():
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "core").rglob("*.py")
        if any(line.lstrip().startswith(("import PySide6", "from PySide6", "import PyQt", "from PyQt")) for line in p.read_text().splitlines())
    ]
    assert not offenders, f"core/ must not import Qt: {offenders}"
