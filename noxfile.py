# /// script
# # What this file imports to list and run its sessions: nox installs it into
# # .nox/_nox_script_mode when the running Python lacks it (nox >= 2025.2.9).
# dependencies = [
#     "nox>=2025.2.9,<2027",
#     "packaging>=23,<27",
#     "pyyaml>=6,<7",
#     "junitparser>=3,<6",
#     "uv>=0.4,<1",
#     "tomli>=1.1,<3; python_version < '3.11'",
# ]
# ///
"""Sessions of this repository. Thin: every piece of logic lives in the compatmatrix package.

    nox -l                      all sessions: one per cell of matrix.yaml, plus the ones below
    nox -s tests                compatmatrix's own test suite (pytest-xdist)
    nox -s lint                 ruff and mypy
    nox -s <cell id>            one cell, end to end, as CI runs it
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "src"))  # this repository's compatmatrix, not an installed one

import compatmatrix.noxsupport as cm  # noqa: E402

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint"]

cm.register_cell_sessions(ROOT / "matrix.yaml")


@nox.session
def tests(session: nox.Session) -> None:
    """compatmatrix's own tests, unit and integration, in parallel with pytest-xdist."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict) over the package, the tests and this file."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "noxfile.py")
    session.run("mypy")
