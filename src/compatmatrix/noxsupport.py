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

from .errors import CompatError
from .orchestrate import make_context, run_cells, select_cells
from .plan import plan_cells
from .results import Status
from .spec import Matrix, load_matrix

__all__ = ["register_cell_sessions"]


def register_cell_sessions(matrix_file: str | os.PathLike[str] = "matrix.yaml") -> Matrix:
    try:
        matrix = load_matrix(Path(matrix_file).resolve())
    except CompatError as error:  # a person's mistake: the message, never a traceback
        print(f"compatmatrix: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    for cell in plan_cells(matrix):
        register = nox.session(name=cell.id, python=False, tags=["cells"], default=False)
        register(_cell_session(matrix, cell.id))
    return matrix


def _cell_session(matrix: Matrix, cell_id: str) -> Callable[[Any], None]:
    def session(session: nox.Session) -> None:
        """One cell of matrix.yaml, end to end."""
        workdir = Path(os.environ.get("COMPATMATRIX_WORKDIR") or matrix.root / ".compatmatrix")
        ctx = make_context(matrix, workdir, os.environ)
        records = run_cells(ctx, select_cells(ctx.cells, [cell_id]), progress=session.log)
        record = records[0]
        session.log(f"record: {ctx.workdir.record(cell_id)}")
        if record.status in (Status.FAILED, Status.ERROR):
            session.error(f"{cell_id}: {record.status.value} at {record.stage}: {record.reason}")
        if record.status is not Status.PASSED:
            session.skip(f"{cell_id}: {record.status.value}: {record.reason}")

    session.__doc__ = f"cell {cell_id}"
    return session
