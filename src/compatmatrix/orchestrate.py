"""Run cells: build the context once, select cells, run each, return their records."""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .cell import RunContext, run_cell
from .errors import UsageError, did_you_mean
from .gpu import gpu_capabilities
from .indexes import expand_find_links
from .interpreters import InterpreterFinder
from .plan import Cell, plan_cells
from .results import CellRecord
from .spec import Matrix
from .workdir import WorkDir

__all__ = ["make_context", "run_cells", "select_cells", "uv_command"]


def uv_command(env: Mapping[str, str]) -> tuple[str, ...]:
    """The uv that ships with compatmatrix (a dependency), else the one on PATH."""
    try:
        from uv import find_uv_bin

        return (find_uv_bin(),)
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv", path=env.get("PATH"))
        if found is None:
            raise UsageError("uv is not installed: pip install uv") from None
        return (found,)


def make_context(matrix: Matrix, workdir: Path, env: Mapping[str, str],
                 jobs: int | None = None, reproduce_prefix: str = "compatmatrix run"
                 ) -> RunContext:
    return RunContext(
        matrix=matrix, cells=tuple(plan_cells(matrix)), workdir=WorkDir(workdir.resolve()),
        env=dict(env), finder=InterpreterFinder(env, dict(matrix.interpreters)),
        uv=uv_command(env), find_links=tuple(expand_find_links(matrix.indexes, env)),
        jobs=jobs or os.cpu_count() or 1, gpus=gpu_capabilities(env),
        reproduce_prefix=reproduce_prefix)


def select_cells(cells: Sequence[Cell], ids: Sequence[str]) -> list[Cell]:
    """Cells by id or glob, in plan order; an id that matches nothing is a usage error."""
    if not ids:
        return list(cells)
    chosen = []
    for pattern in ids:
        matched = [c for c in cells if fnmatch.fnmatchcase(c.id, pattern)]
        if not matched:
            raise UsageError(f"no cell matches {pattern!r}; "
                             + did_you_mean(pattern, [c.id for c in cells])
                             + "\n  'compatmatrix plan' lists the cells")
        chosen += matched
    wanted = {c.id for c in chosen}
    return [c for c in cells if c.id in wanted]


def run_cells(ctx: RunContext, cells: Sequence[Cell],
              progress: Callable[[str], object] | None = None) -> list[CellRecord]:
    records = []
    for index, cell in enumerate(cells, 1):
        if progress is not None:
            progress(f"[{index}/{len(cells)}] {cell.id}: running")
        record = run_cell(ctx, cell)
        if progress is not None:
            stage = f" at {record.stage}" if record.stage else ""
            progress(f"[{index}/{len(cells)}] {cell.id}: {record.status.value}{stage}"
                     + (f" ({record.reason.splitlines()[0]})" if record.reason else ""))
        records.append(record)
    return records
