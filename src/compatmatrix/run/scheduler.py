"""Run cells: build the context once, select cells, run each, return their records."""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from compatmatrix.errors import UsageError, did_you_mean
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.gpu import gpu_capabilities
from compatmatrix.host.indexes import expand_find_links
from compatmatrix.host.interpreters import InterpreterFinder
from compatmatrix.host.paths import repository_root
from compatmatrix.host.uv import uv_command
from compatmatrix.model.outcomes import Stage
from compatmatrix.model.plan import Cell, plan_cells
from compatmatrix.model.project import read_project
from compatmatrix.model.record import CellRecord, Status
from compatmatrix.model.spec import NONE, PREINSTALLED, Matrix, is_specifier
from compatmatrix.model.workdir import REPORT_FILES, WorkDir, report_dir
from compatmatrix.run.cell import Cancelled, RunContext, run_cell
from compatmatrix.run.inputs import ProjectDigests
from compatmatrix.run.progress import LineProgress, Progress
from compatmatrix.stages.select import GivenWheel, Selection, read_wheel, select_wheel

__all__ = ["RESOLVE_ONLY_FACTOR", "choose_wheels", "find_given_wheels", "make_context",
           "run_cells", "select_cells"]

RESOLVE_ONLY_FACTOR = 8  # resolve-only cells in flight per core




def make_context(matrix: Matrix, workdir: Path, env: Mapping[str, str],
                 jobs: int | None = None, *, force: bool = False,
                 reports: Path | None = None, until: Stage | None = None) -> RunContext:
    """Everything the cells share, computed once. ``reports``: where the report goes (default
    as ``compatmatrix report``); like the work directory, never build input. ``until``:
    Stage.RESOLVE for a resolve-only run (its records go to pins/)."""
    if until is not Stage.RESOLVE:
        matrix.package  # noqa: B018  # a project is needed past resolve: else exit 2
    # a setup mistake in the project stops here, exit 2 (only a source that is built)
    project = (read_project(matrix.project.path) if matrix.project is not None
               and matrix.project.mode == "built" and matrix.project.path is not None
               else None)
    given, where = find_given_wheels(matrix)
    work = WorkDir(workdir.resolve(), "pins" if until is Stage.RESOLVE else "results")
    work.ensure()
    snapshot = None
    if until is Stage.RESOLVE:  # one snapshot of the indexes per resolve-only run
        snapshot = work.root / "index-snapshot"
        shutil.rmtree(snapshot, ignore_errors=True)
    reports = (reports or report_dir(matrix.root, env)).resolve()
    exclude = (work.root, *(reports / name for name in REPORT_FILES))
    jobs = jobs or os.cpu_count() or 1
    return RunContext(
        matrix=matrix, cells=tuple(plan_cells(matrix)), workdir=work, project=project,
        repo_root=repository_root(matrix.root),
        env=dict(env), finder=InterpreterFinder(env, dict(matrix.interpreters)),
        uv=uv_command(env), find_links=tuple(expand_find_links(matrix.indexes, env)),
        jobs=jobs, gpus=gpu_capabilities(env),
        digests=ProjectDigests(matrix, exclude, env), force=force, until=until,
        index_snapshot=snapshot, given=given, given_where=where)


def find_given_wheels(matrix: Matrix) -> tuple[tuple[GivenWheel, ...], str]:
    """The wheel files project.wheels (or run --wheels) names, read once, and how messages
    name where they are. A glob that matches no wheel is a usage error: a release whose
    wheels are not where the matrix says is not tested."""
    project = matrix.project
    if project is None or project.mode != "given":
        return (), ""
    found: dict[Path, GivenWheel] = {}
    for index, pattern in enumerate(project.wheels):
        full = Path(pattern) if os.path.isabs(pattern) else matrix.root / pattern
        paths = sorted(Path(p) for p in glob.glob(str(full)) if p.endswith(".whl")
                       and os.path.isfile(p))
        if not paths:
            at = f"{project.wheels_at[index]}: " if index < len(project.wheels_at) else ""
            where = f"project.wheels {pattern!r}" if at else f"--wheels {full.parent}"
            raise UsageError(f"{at}{where} matches no wheel file (*.whl); build the wheels "
                             "first (e.g. uv build --wheel, cibuildwheel), or point it at "
                             "the folder that holds them")
        for path in paths:
            found.setdefault(path.resolve(), read_wheel(path.resolve()))
    return tuple(found[p] for p in sorted(found)), _where(matrix)


def _where(matrix: Matrix) -> str:
    """The wheels' folder (or globs) for messages, relative to matrix.yaml where it is under
    it, else by its name: a report read on another machine names no path of this one."""
    assert matrix.project is not None
    shown = []
    for pattern in matrix.project.wheels:
        path = Path(pattern)
        if path.is_absolute():
            path = (path.relative_to(matrix.root.resolve())
                    if path.is_relative_to(matrix.root.resolve())
                    else Path(path.parent.name) / path.name)
        text = str(path)
        shown.append(text[:-len("/*.whl")] + "/" if text.endswith("/*.whl") else text)
    return ", ".join(shown)


def choose_wheels(ctx: RunContext, cells: Sequence[Cell]) -> dict[str, Selection]:
    """Each cell's given wheel, before any cell runs: a cell that more than one wheel fits
    is a usage error (which of them would ship?)."""
    project = ctx.matrix.project
    if project is None or project.mode != "given":
        return {}
    chosen: dict[str, Selection] = {}
    ambiguous: list[str] = []
    for cell in cells:
        torch = cell.value("torch")
        known = torch is not None and (torch == NONE or not (
            torch == PREINSTALLED or is_specifier(torch)))
        selection = select_wheel(
            ctx.given, where=ctx.given_where, python=cell.python,
            variant=cell.value("cuda"), torch=None if torch == NONE else torch,
            torch_known=known)
        if selection.ambiguous:
            ambiguous.append(f"  {cell.id}: {', '.join(selection.ambiguous)}")
        chosen[cell.id] = selection
    if ambiguous:
        raise UsageError(f"more than one wheel in {ctx.given_where} fits a cell, so which one "
                         "ships is not clear:\n" + "\n".join(sorted(ambiguous)) +
                         "\n  keep one wheel per Python, platform, torch and variant in the "
                         "folder (or narrow project.wheels)")
    return chosen


def select_cells(cells: Sequence[Cell], ids: Sequence[str] = (),
                 selects: Sequence[str] = ()) -> list[Cell]:
    """Cells by id or glob (any of ``ids``) and by axis value (all of ``selects``,
    each ``axis=glob``), in plan order; a pattern that matches nothing is a usage error."""
    chosen = list(cells)
    if ids:
        wanted: set[str] = set()
        for pattern in ids:
            matched = {c.id for c in cells if fnmatch.fnmatchcase(c.id, pattern)}
            if not matched:
                raise UsageError(f"no cell matches {pattern!r}; "
                                 + did_you_mean(pattern, [c.id for c in cells])
                                 + "\n  'compatmatrix plan' lists the cells")
            wanted |= matched
        chosen = [c for c in chosen if c.id in wanted]
    for select in selects:
        axis, sep, pattern = select.partition("=")
        names = [name for name, _ in cells[0].axes] if cells else []
        if not sep or axis not in names:
            raise UsageError(f"--select {select!r}: expected AXIS=GLOB with AXIS one of "
                             f"{', '.join(names)}"
                             + (f"; {did_you_mean(axis, names)}" if sep else ""))
        chosen = [c for c in chosen if fnmatch.fnmatchcase(c.value(axis) or NONE, pattern)]
    if not chosen:
        raise UsageError("the selection matches no cell; 'compatmatrix plan' lists the cells")
    return chosen


def run_cells(ctx: RunContext, cells: Sequence[Cell], progress: Progress | None = None,
              *, fail_fast: bool = False) -> list[CellRecord]:
    """Run ``cells`` in parallel within ``ctx.jobs``; records come back in plan order.

    Ctrl-C kills every child process, keeps the records already written, writes none for
    the interrupted cells, and re-raises KeyboardInterrupt.
    """
    if ctx.given:
        ctx = replace(ctx, selections=choose_wheels(ctx, cells))
    return _Scheduler(ctx, cells, progress or LineProgress(verbosity=0), fail_fast).run()


class _Scheduler:
    def __init__(self, ctx: RunContext, cells: Sequence[Cell], progress: Progress,
                 fail_fast: bool) -> None:
        self.cells, self.progress, self.fail_fast = list(cells), progress, fail_fast
        # A resolve-only cell mostly waits on the index (about 2 s of wall time for 0.6 s of
        # CPU): such runs are not bound by the CPU job count.
        budget = ctx.jobs * RESOLVE_ONLY_FACTOR if ctx.until is Stage.RESOLVE else ctx.jobs
        self.slots = max(1, min(budget, len(self.cells)))
        # the CPU budget is shared: each running cell builds and tests with its share
        self.ctx = replace(ctx, jobs=max(1, ctx.jobs // min(self.slots, ctx.jobs)))
        self.cancel = ctx.cancel
        self.cond = threading.Condition()
        self.pending = list(self.cells)
        self.held: set[str] = set()  # build keys a running cell may still build
        self.running = 0
        self.stopped = False
        self.records: dict[str, CellRecord] = {}
        self.threads: list[threading.Thread] = []

    def run(self) -> list[CellRecord]:
        self.progress.start(len(self.cells))
        try:
            with self.cond:
                while True:
                    self._start_ready()
                    if self.running == 0 and (self.stopped or not self.pending):
                        break
                    self.cond.wait(0.5)
        except BaseException:
            self.cancel.set()
            _cmd.stop_all()
            for thread in self.threads:
                thread.join()
            raise
        finally:
            self.progress.close()
        return [self.records[c.id] for c in self.cells if c.id in self.records]

    def _start_ready(self) -> None:
        while self.running < self.slots and not self.stopped:
            cell = next((c for c in self.pending if c.build_key not in self.held
                         or self.ctx.built_nothing), None)
            if cell is None:
                return
            self.pending.remove(cell)
            self.held.add(cell.build_key)
            self.running += 1
            thread = threading.Thread(target=self._work, args=(cell,), daemon=True,
                                      name=f"cell {cell.id}")
            self.threads.append(thread)
            thread.start()

    def _work(self, cell: Cell) -> None:
        holding = [True]

        def on_stage(cell_id: str, stage: str) -> None:
            if holding[0] and stage not in ("metadata", "resolve", "build"):
                self._release(cell.build_key, holding)  # the wheel exists: others may reuse it
            self.progress.stage(cell_id, stage)

        record: CellRecord | None = None
        try:
            record = run_cell(self.ctx, cell, on_stage)
        except Cancelled:
            pass
        finally:
            self._release(cell.build_key, holding)
            if record is not None:  # before the count drops: the run ends after this line
                self.progress.finished(record)
            with self.cond:
                self.running -= 1
                if record is not None:
                    self.records[cell.id] = record
                    if self.fail_fast and record.status in (Status.FAILED, Status.ERROR):
                        self.stopped = True
                self.cond.notify_all()

    def _release(self, key: str, holding: list[bool]) -> None:
        with self.cond:
            if holding[0]:
                holding[0] = False
                self.held.discard(key)
                self.cond.notify_all()
