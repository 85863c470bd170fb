"""pyproject's package list: what a wheel of conciser (`make gpu-wheels`) carries.

Run: .venv/bin/python -m pytest tests/test_packaging.py
"""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_importable_data_folder_is_a_listed_package_with_its_files():
    """setuptools warns that it will leave out folders Python could import but `packages` does not list
    (recipes/toy, configs/*, eval/data were such): each must be listed, with package data that matches its files."""
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, dirs, data = cfg["packages"], cfg["package-dir"], cfg["package-data"]

    def folder(pkg: str) -> Path:
        parent = next(p for p in sorted(dirs, key=len, reverse=True) if pkg == p or pkg.startswith(p + "."))
        return REPO / dirs[parent] / Path(*pkg[len(parent):].split(".")[1:])

    for pkg in packages:
        for sub in folder(pkg).iterdir():
            if sub.is_dir() and sub.name.isidentifier() and sub.name != "__pycache__":
                assert f"{pkg}.{sub.name}" in packages, f"{sub} is importable as {pkg}.{sub.name}: list it in packages"
    for pkg in packages:
        root = folder(pkg)
        files = [f for f in root.iterdir() if f.is_file() and f.suffix not in {".py", ".pyc"}]
        # and the files of folders Python cannot import (recipes/r1-distill-*), which stay the package's data
        files += [f for sub in root.iterdir() if sub.is_dir() and not sub.name.isidentifier() for f in sub.rglob("*")
                  if f.is_file()]
        for f in files:
            rel = f.relative_to(root)
            assert any(rel.match(pat) for pat in data.get(pkg, [])), f"{f} is not in package-data of {pkg}"
    assert (REPO / "recipes" / "toy" / "laser.yaml").exists() and folder("conciser.recipes.toy") == REPO / "recipes" / "toy"
