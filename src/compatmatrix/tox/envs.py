"""The tox environments compatmatrix defines, as plain values (no tox import here).

Each cell of the matrix becomes an environment named by its cell id; compatmatrix's own
environments are prefixed (``compat-``) so that they never clash with a project's. Every
environment runs ``python -m compatmatrix ...`` with the Python running tox: compatmatrix
makes the cells' environments itself, tox makes none.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.model.plan import Cell

__all__ = [
    "CELLS_LABEL",
    "CI_ENV",
    "GATE_ENV",
    "MATRIX_ENV",
    "MATRIX_KEY",
    "PREFIX",
    "REPORT_ENV",
    "ToxEnvSpec",
    "cpu_share",
    "env_specs",
]

MATRIX_KEY = "compatmatrix_matrix"  # in tox's core configuration: [tox], tox.toml, [tool.tox]
PREFIX = "compat-"
MATRIX_ENV = PREFIX + "matrix"
REPORT_ENV = PREFIX + "report"
GATE_ENV = PREFIX + "gate"
CI_ENV = PREFIX + "ci"
CELLS_LABEL = PREFIX + "cells"  # tox -m compat-cells: every cell, one tox environment each


@dataclass(frozen=True)
class ToxEnvSpec:
    """One environment: the compatmatrix commands it runs, in turn.

    ``steps`` are compatmatrix's arguments; the first step gets the posargs (as the nox
    sessions do) and, when ``shares_cpus``, ``-j`` with this environment's share of the
    cores."""

    name: str
    description: str
    steps: tuple[tuple[str, ...], ...]
    shares_cpus: bool = False
    depends: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def commands(self, python: str, jobs: int, posargs: Sequence[str] = ()) -> list[list[str]]:
        out = []
        for index, step in enumerate(self.steps):
            argv = [python, "-m", "compatmatrix", *step]
            if index == 0:
                argv += [*(["-j", str(jobs)] if self.shares_cpus else []), *posargs]
            out.append(argv)
        return out


def env_specs(matrix: Path, cells: Sequence[Cell],
              leave_out: Collection[str] = ()) -> list[ToxEnvSpec]:
    """The cells' environments in plan order, then compat-matrix, -report, -gate and -ci;
    without the names in ``leave_out`` (the project's own environments)."""
    where = ("--matrix", str(matrix))
    cells = [cell for cell in cells if cell.id not in leave_out]
    ids = tuple(cell.id for cell in cells)
    specs = [ToxEnvSpec(cell.id, f"compatmatrix cell {cell.id}: "
                        + ", ".join(f"{name} {value}" for name, value in cell.axes),
                        (("run", *where, "--cell", cell.id),), shares_cpus=True,
                        labels=(CELLS_LABEL,))
             for cell in cells]
    # run after any cell run by the same tox invocation, and reuse its record
    specs.append(ToxEnvSpec(
        MATRIX_ENV, "every cell in parallel and incrementally, then the report "
        "(-- --select AXIS=GLOB, --force)",
        (("run", *where, "--exit-zero"), ("report", *where)), shares_cpus=True, depends=ids))
    specs.append(ToxEnvSpec(
        REPORT_ENV, "aggregate the records (or CI artifacts: -- --from DIR) into reports/",
        (("report", *where),), depends=(*ids, MATRIX_ENV)))
    specs.append(ToxEnvSpec(
        GATE_ENV, "the release gate: exit 1 with reasons when it must not go ahead",
        (("gate", *where),), depends=(*ids, MATRIX_ENV)))
    specs.append(ToxEnvSpec(
        CI_ENV, "write the GitHub Actions and Buildkite pipelines (-- --check: exit 1 when "
        "they are stale)", (("ci", *where),)))
    return [spec for spec in specs if spec.name not in leave_out]


def cpu_share(cpus: int, parallel: int | None, selected: int) -> int:
    """The cores one environment may use when tox runs ``selected`` environments, at most
    ``parallel`` at a time (None: all at once; 0: one after another, as ``tox run`` does):
    the machine's cores divided among those that run together, at least one."""
    together = selected if parallel is None else min(max(parallel, 1), selected)
    return max(1, cpus // max(1, together))
