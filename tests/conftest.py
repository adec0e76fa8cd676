from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteMatrix = Callable[[str], Path]


def make_package(folder: Path) -> Path:
    """A minimal package under test: a folder with a static pyproject.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{folder.name}"\nversion = "1.0"\n', encoding="utf-8")
    return folder


@pytest.fixture
def write_matrix(tmp_path: Path) -> WriteMatrix:
    """Write a matrix.yaml (dedented) next to a project folder ``pkg`` (a pyproject.toml)."""
    make_package(tmp_path / "pkg")

    def write(text: str) -> Path:
        path = tmp_path / "matrix.yaml"
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


MINIMAL = """
version: 1
project: {path: pkg, import: pkg}
axes:
  python: ["3.11"]
"""

# tests/projects/ holds whole projects that compatmatrix runs as packages under test; their
# tests run inside those projects' cells, never in this suite.
collect_ignore = ["projects"]
