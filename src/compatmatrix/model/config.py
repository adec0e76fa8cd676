"""Where a project keeps its matrix: ``[tool.compatmatrix] matrix`` in its pyproject.toml.

::

    [tool.compatmatrix]
    matrix = "ci/matrix.yaml"   # relative to pyproject.toml's folder

It is the default for ``--matrix`` (else ``matrix.yaml``), for the nox support and for the
tox plugin, which needs it (or tox's own ``compatmatrix_matrix`` key) to define any
environment. Only this table is read: nothing else in pyproject.toml matters here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from compatmatrix.errors import Location, ProjectFileError, did_you_mean
from compatmatrix.model.project import toml_error, tomllib

__all__ = ["DEFAULT_MATRIX", "PYPROJECT", "TABLE", "configured_matrix", "default_matrix"]

DEFAULT_MATRIX = "matrix.yaml"
PYPROJECT = "pyproject.toml"
TABLE = "tool.compatmatrix"
KEYS = ("matrix",)
_HEADER = re.compile(r"^\s*\[\s*tool\s*\.\s*compatmatrix\s*\]")
_ANY_HEADER = re.compile(r"^\s*\[")


def default_matrix(root: Path) -> Path:
    """The matrix of the project in ``root``: what pyproject.toml names, else
    ``root/matrix.yaml``."""
    return configured_matrix(root) or root / DEFAULT_MATRIX


def configured_matrix(root: Path) -> Path | None:
    """``[tool.compatmatrix] matrix`` of ``root/pyproject.toml`` (relative to ``root``), or
    None when there is no such file, table or key. A file that is not TOML, a table that is
    not one, a key that is not a non-empty string, an unknown key: ProjectFileError (exit 2)
    with the place."""
    path = root / PYPROJECT
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectFileError(path, f"cannot read it: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where, message = toml_error(path, text, exc)
        raise ProjectFileError(where, f"invalid TOML: {message}",
                               "fix the file; compatmatrix reads [tool.compatmatrix] from it"
                               ) from None
    tool = data.get("tool")
    table: Any = tool.get("compatmatrix") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ProjectFileError(_locate(path, text, None), f"[{TABLE}] must be a table",
                               f'write [{TABLE}] with matrix = "{DEFAULT_MATRIX}" under it')
    for key in table:
        if key not in KEYS:
            raise ProjectFileError(_locate(path, text, key),
                                   f"[{TABLE}] has the unknown key {key!r}",
                                   did_you_mean(key, KEYS))
    value = table.get("matrix")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ProjectFileError(_locate(path, text, "matrix"),
                               f"[{TABLE}] matrix must be the path of the matrix file, "
                               f"not {value!r}",
                               f'e.g. matrix = "{DEFAULT_MATRIX}" (relative to {PYPROJECT})')
    return root / value


def _locate(path: Path, text: str, key: str | None) -> Location:
    """The line of ``key`` in the [tool.compatmatrix] table (or of the table's header; 1:1
    when it is written another way, e.g. as a dotted key)."""
    lines = text.splitlines()
    header = next((n for n, line in enumerate(lines) if _HEADER.match(line)), None)
    if header is None:
        return Location(path, 1, 1)
    if key is not None:
        assignment = re.compile(rf"^(\s*)[\"']?{re.escape(key)}[\"']?\s*=")
        for number in range(header + 1, len(lines)):
            if _ANY_HEADER.match(lines[number]):
                break
            found = assignment.match(lines[number])
            if found:
                return Location(path, number + 1, len(found[1]) + 1)
    return Location(path, header + 1, 1)
