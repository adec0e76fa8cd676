"""Registers compatmatrix's sessions in a noxfile, so the noxfile itself stays thin.

Usage in a noxfile::

    import compatmatrix.noxsupport as cm
    cm.register_cell_sessions("matrix.yaml")

Each cell becomes a session named by its cell id (``nox -s py3.11-torch2.13.0-cpu``); it runs
the same code as ``compatmatrix run --cell``. Cell sessions manage their own environments
(``python=False``): the interpreter of each cell is found by compatmatrix, not by nox.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import nox

from .cli import main
from .errors import CompatError
from .plan import plan_cells
from .spec import Matrix, load_matrix

__all__ = ["register_cell_sessions"]


def register_cell_sessions(matrix_file: str | os.PathLike[str] = "matrix.yaml") -> Matrix:
    """One session per cell (named by its id) and the ``matrix`` session."""
    path = Path(matrix_file).resolve()
    try:
        matrix = load_matrix(path)
    except CompatError as error:  # a person's mistake: the message, never a traceback
        print(f"compatmatrix: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    for cell in plan_cells(matrix):
        register = nox.session(name=cell.id, python=False, tags=["cells"], default=False)
        register(_run_session(path, ["--cell", cell.id], f"cell {cell.id}",
                              f"{cell.id} did not pass (see its record and logs)"))
    nox.session(name="matrix", python=False, default=False)(_run_session(
        path, ["--exit-zero"],
        "every cell, in parallel and incrementally (-- --select, --force, -j N)",
        "a cell errored: a bug in compatmatrix, see the cell's error.log"))
    return matrix


def _run_session(matrix: Path, args: list[str], doc: str,
                 failure: str) -> Callable[[Any], None]:
    def session(session: nox.Session) -> None:
        code = main(["run", "--matrix", str(matrix), *args, *session.posargs])
        if code == 130:
            session.error("interrupted")
        if code != 0:
            session.error(failure)

    session.__doc__ = doc
    return session
