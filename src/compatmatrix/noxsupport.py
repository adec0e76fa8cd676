"""Registers compatmatrix's sessions in a noxfile, so the noxfile itself stays thin.

Usage in a noxfile::

    import compatmatrix.noxsupport as cm
    cm.register_cell_sessions("matrix.yaml")

or ``cm.register_cell_sessions()``: the file ``[tool.compatmatrix] matrix`` in pyproject.toml
names, else ``matrix.yaml``.

Each cell becomes a session named by its cell id (``nox -s py3.11-torch2.13.0-cpu``); it runs
the same code as ``compatmatrix run --cell``. Cell sessions manage their own environments
(``python=False``): the interpreter of each cell is found by compatmatrix, not by nox.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nox

from compatmatrix.cli import main
from compatmatrix.errors import CompatError
from compatmatrix.model.config import default_matrix
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.spec import Matrix, load_matrix

__all__ = ["register_cell_sessions"]


def register_cell_sessions(matrix_file: str | os.PathLike[str] | None = None) -> Matrix:
    """One session per cell (named by its id), and ``matrix``, ``report``, ``gate``, ``ci``.

    ``matrix_file`` defaults to what ``[tool.compatmatrix] matrix`` in ./pyproject.toml names
    (nox runs in the noxfile's folder), else ``matrix.yaml``."""
    try:
        path = (default_matrix(Path(".")) if matrix_file is None else Path(matrix_file))
        path = path.resolve()
        matrix = load_matrix(path)
    except CompatError as error:  # a person's mistake: the message, never a traceback
        print(f"compatmatrix: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    for cell in plan_cells(matrix):
        register = nox.session(name=cell.id, python=False, tags=["cells"], default=False)
        register(_cli_session(f"cell {cell.id}", ["run", "--matrix", str(path), "--cell",
                                                   cell.id]))
    _register("matrix", "every cell, in parallel and incrementally, then the report "
              "(-- --select AXIS=GLOB, --force, -j N)",
              ["run", "--matrix", str(path), "--exit-zero"],
              ["report", "--matrix", str(path)])
    _register("report", "aggregate the records (or CI artifacts: -- --from DIR) into reports/",
              ["report", "--matrix", str(path)])
    _register("gate", "the release gate: exit 1 with reasons when it must not go ahead",
              ["gate", "--matrix", str(path)])
    _register("ci", "write the GitHub Actions and Buildkite pipelines "
              "(-- --check: exit 1 when they are stale against matrix.yaml)",
              ["ci", "--matrix", str(path)])
    return matrix


def _register(name: str, doc: str, *commands: list[str]) -> None:
    nox.session(name=name, python=False, default=False)(_cli_session(doc, *commands))


def _cli_session(doc: str, *commands: list[str]) -> Callable[[Any], None]:
    """A session that runs compatmatrix commands in turn; posargs go to the first one."""

    def session(session: nox.Session) -> None:
        # a resolve-only run's table goes to pins.md, never the compatibility report
        resolve_only = any(arg == "--until" or arg.startswith("--until=")
                           for arg in session.posargs)
        for index, command in enumerate(commands):
            argv = [*command, *session.posargs] if index == 0 else command
            if index and resolve_only and command[0] == "report":
                argv = [*command, "--pins"]
            code = main(argv)
            if code == 130:
                session.error("interrupted")
            if code != 0:
                session.error(f"compatmatrix {command[0]} exited {code} (see above)")

    session.__doc__ = doc
    return session
