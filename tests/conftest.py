from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

WriteMatrix = Callable[[str], Path]


@pytest.fixture
def write_matrix(tmp_path: Path) -> WriteMatrix:
    """Write a matrix.yaml (dedented) next to an empty project folder ``pkg``."""
    (tmp_path / "pkg").mkdir(exist_ok=True)

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
