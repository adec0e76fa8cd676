"""Collect what the cells left behind (work directories, CI artifacts) into a Report: one
record per cell (copies that disagree are a conflict, never "the last one wins"), its suites
counted from their JUnit files, paths relative to the repository."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from compatmatrix._text import plural
from compatmatrix.errors import UsageError
from compatmatrix.host.paths import repository_root
from compatmatrix.model.outcomes import SuiteResult, SuiteStatus
from compatmatrix.model.plan import Cell, plan_cells
from compatmatrix.model.record import (
    CellRecord,
    RecordError,
    Status,
    load_record,
    reproduce_command,
)
from compatmatrix.model.spec import NONE, Matrix
from compatmatrix.report.junit import (
    JUnitEvidence,
    inspect_junit,
)
from compatmatrix.report.model import (
    MISSING,
    REPORT_SCHEMA,
    CellReport,
    Report,
    SuiteSummary,
)

__all__ = [
    "collect",
    "scrub_paths",
]

# --- collecting --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    record: CellRecord
    root: Path  # the work directory (or artifact folder) that holds the record


def collect(matrix: Matrix, sources: Sequence[Path], *, commit: str | None = None,
            records: str = "results") -> Report:
    """The report of the matrix's planned cells from what ``sources`` hold.

    Each source is laid out like a work directory (``results/``, ``junit/``), or holds such
    folders one level down (CI artifacts). A cell found more than once counts once when the
    copies are identical (a re-uploaded artifact) or agree on the verdict; copies that
    disagree are never settled by "the last one wins": the worst verdict stands, with the
    conflict as a problem that fails the gate. A record that cannot be read, or that is not
    the cell its name says, leaves the cell missing, with that problem.
    """
    roots = [root for source in sources for root in _workdirs(source, records)]
    found, unreadable = _records(roots, records)
    cells = []
    base = repository_root(matrix.root)
    for cell in plan_cells(matrix):
        reproduce = reproduce_command(matrix.path, cell.id, base)
        copies = [f for f in found.get(cell.id, []) if not _foreign(cell, f, unreadable)]
        if copies:
            chosen, conflict = _settle(copies)
            # what the run was told beyond the matrix (--wheels DIR, --requirement ...)
            _, marker, told = chosen.record.reproduce.partition(f" --cell {cell.id} ")
            report = _cell_report(matrix, cell, chosen,
                                  f"{reproduce} {_told(told, chosen.record.root)}"
                                  if marker else reproduce)
            if conflict:
                report = replace(report, evidence=(conflict,))
            cells.append(report)
        else:
            cells.append(_missing_cell(cell, unreadable.get(cell.id), reproduce))
    return Report(REPORT_SCHEMA, commit, tuple(axis.name for axis in matrix.axes),
                  tuple(sorted(cells, key=lambda c: c.id)))


def _workdirs(source: Path, records: str = "results") -> list[Path]:
    if not source.is_dir():
        what = "not a folder" if os.path.lexists(source) else "no such folder"
        raise UsageError(f"{source}: {what} (expected a work directory or a folder "
                         f"of CI artifacts holding {records}/)")
    if (source / records).is_dir():
        return [source]
    try:
        children = sorted(source.iterdir())
    except OSError as exc:
        raise UsageError(f"{source}: cannot list the folder: {exc.strerror}") from None
    return [child for child in children if (child / records).is_dir()]


def _records(roots: Iterable[Path],
             records: str = "results") -> tuple[dict[str, list[_Found]], dict[str, str]]:
    found: dict[str, list[_Found]] = {}
    unreadable: dict[str, str] = {}
    for root in roots:
        for path in sorted((root / records).glob("*.json")):
            try:
                record = load_record(path)
            except RecordError as exc:  # the cell is missing, and the report says why
                unreadable[path.stem] = (f"results/{path.name} is unreadable: {exc}; run the "
                                         "cell again, or delete the file")
                continue
            if record.cell != path.stem:
                unreadable[path.stem] = (f"results/{path.name} holds the record of cell "
                                         f"{record.cell}, not {path.stem}; run the cell again, "
                                         "or delete the file")
                continue
            found.setdefault(record.cell, []).append(_Found(record, root))
    return found, unreadable


def _foreign(cell: Cell, copy: _Found, unreadable: dict[str, str]) -> bool:
    """Whether a record's axes are not its cell's (a record copied or edited by hand)."""
    axes = _axes(cell)
    if copy.record.axes == axes:
        return False
    wrong = sorted(set(axes) | set(copy.record.axes))
    shown = ", ".join(f"{name}={copy.record.axes.get(name)!s}" for name in wrong
                      if copy.record.axes.get(name) != axes.get(name))
    unreadable[cell.id] = (f"results/{cell.id}.json says {shown}, which is not cell {cell.id}; "
                           "run the cell again, or delete the file")
    return True


_WORST = {"error": 0, "failed": 1, "unavailable": 2, "incompatible": 3, "passed": 4}


def _settle(copies: list[_Found]) -> tuple[_Found, str]:
    """One record for a cell found in several sources, and the conflict, if any."""
    distinct: dict[str, _Found] = {}
    for copy in copies:  # identical copies (a re-uploaded artifact) count once
        key = json.dumps(copy.record.to_json(), sort_keys=True, default=str)
        distinct.setdefault(key, copy)
    unique = list(distinct.values())
    verdicts = {(c.record.status.value, c.record.stage) for c in unique}
    worst = min(unique, key=lambda c: _WORST.get(c.record.status.value, 0))
    if len(verdicts) == 1:
        return unique[0], ""
    seen = ", ".join(sorted(f"{c.record.status.value}"
                            + (f" at {c.record.stage}" if c.record.stage else "")
                            + f" ({c.root.name}/results/{c.record.cell}.json)" for c in unique))
    return worst, (f"conflicting records: {seen}; the worst stands (never the last one); "
                   "rerun the cell, or remove the stale copy")


def _axes(cell: Cell) -> dict[str, str | None]:
    return {name: (None if value == NONE else value) for name, value in cell.axes}


def _missing_cell(cell: Cell, why: str | None, reproduce: str) -> CellReport:
    return CellReport(
        id=cell.id, axes=_axes(cell), status=MISSING, stage=None,
        reason=why or "no record: the cell has not run", details=(),
        reproduce=reproduce, build_key=cell.build_key, resolved={},
        suites=(), durations={}, wheel_reused=False, built_with_torch=None,
        running_torch=None, evidence=(why,) if why else ())


def _cell_report(matrix: Matrix, cell: Cell, found: _Found, reproduce: str) -> CellReport:
    record = found.record
    return CellReport(
        id=cell.id, axes=_axes(cell), status=record.status.value, stage=record.stage,
        reason=scrub_paths(record.reason, record.root),
        details=tuple(scrub_paths(line, record.root) for line in record.details),
        reproduce=reproduce, root=record.root,
        declared=tuple((text, extra) for text, extra in record.declared),
        build_key=record.build_key or cell.build_key,
        resolved=dict(sorted(record.resolved.items())),
        suites=_suites(matrix, record, _junit_files(cell.id, found.root)),
        durations={k: round(v, 1) for k, v in sorted(record.durations.items())},
        wheel_reused=record.wheel_reused, built_with_torch=record.built_with_torch,
        running_torch=record.running_torch,
        artifact=record.artifact.to_json() if record.artifact is not None else None)


def _junit_files(cell_id: str, root: Path) -> Mapping[str, Path]:
    """Suite name -> JUnit file, by the layout beside the record (the paths in the record
    are from the machine that ran it). Never from another source: a stale file from an
    older run must not pass for the evidence of this one."""
    folder = root / "junit" / cell_id
    return {path.stem: path for path in sorted(folder.glob("*.xml"))} if folder.is_dir() else {}


def _suites(matrix: Matrix, record: CellRecord,
            junit: Mapping[str, Path]) -> tuple[SuiteSummary, ...]:
    planned = [suite.name for suite in matrix.suites]
    recorded = record.suites
    names = [n for n in planned if n in recorded]
    names += sorted(n for n in recorded if n not in planned)
    gpu = {suite.name: suite.gpu for suite in matrix.suites}
    summaries = [_suite(name, recorded[name], junit.get(name), gpu.get(name))
                 for name in names]
    if recorded or record.status is Status.PASSED:
        # a cell that reached its suites must account for every one of them
        summaries += [SuiteSummary(n, MISSING, "not in the record", 0, 0, 0, 0, 0,
                                   problems=("not in the record",))
                      for n in planned if n not in recorded]
    return tuple(summaries)


def _suite(name: str, result: SuiteResult, junit: Path | None,
           gpu: str | None = None) -> SuiteSummary:
    status, reason = result.status.value, result.reason
    counts = (result.collected, result.passed, result.failed, result.errors, result.skipped)
    if result.status is SuiteStatus.NOT_RUN:
        # A GPU suite without its GPU here is expected; any other suite that ran no test
        # (every test skipped or deselected) proves nothing: the cell is not verified.
        problems = () if gpu else (f"not run: {reason}",)
        return SuiteSummary(name, status, reason, *counts, problems=problems, junit=junit)
    evidence = inspect_junit(junit)
    if evidence.problem:
        if status == "passed":  # never a pass without the file that shows it
            status, reason = MISSING, evidence.problem
        return SuiteSummary(name, status, reason, *counts, problems=(evidence.problem,),
                            junit=junit)
    return SuiteSummary(
        name, status, reason, counts[0], evidence.passed, evidence.failed, evidence.errors,
        evidence.skipped, flaky=evidence.flaky, failed_tests=evidence.failed_tests,
        problems=_count_problems(status, counts[0], evidence), junit=junit)


def _count_problems(status: str, collected: int, evidence: JUnitEvidence) -> tuple[str, ...]:
    problems = []
    if evidence.tests == 0:
        problems.append("no tests in the JUnit file")
    if evidence.duplicated:
        problems.append(plural(evidence.duplicated, "duplicated test case"))
    if collected > evidence.tests:
        problems.append(f"{collected - evidence.tests} of {collected} collected tests are "
                        "not in the JUnit file")
    if status == "passed" and (evidence.failed or evidence.errors):
        problems.append(f"recorded as passed, but the JUnit file has {evidence.failed} "
                        f"failed and {evidence.errors} errors")
    return tuple(problems)



def _told(args: str, root: str) -> str:
    """A run's options beyond the matrix (``--wheels DIR``) with no path of that machine: a
    folder outside the repository is named by its last part (CI downloads the wheels into
    a folder of that name in the checkout)."""
    try:
        words = shlex.split(scrub_paths(args, root))
    except ValueError:
        return ""
    return " ".join(shlex.quote(Path(w).name if w.startswith(("/", "~")) else w)
                    for w in words)


def scrub_paths(text: str, root: str) -> str:
    """``text`` with the run's repository root (and home folder) taken out of its paths: a
    committed report shows paths relative to the repository, never a machine's."""
    if root and root != "/":
        text = text.replace(root.rstrip("/") + "/", "").replace(root.rstrip("/"), ".")
    home = str(Path.home())
    if home not in ("", "/"):
        text = text.replace(home.rstrip("/") + "/", "~/")
    return text
