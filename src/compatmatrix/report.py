"""The compatibility report: what the cells left behind, gathered into one value and written.

:func:`collect` reads records and JUnit files from work directories (a local ``--workdir``,
or CI artifacts), :func:`write_report` writes ``compatibility.{md,json,html}`` and a merged
``junit.xml``, and :func:`load_report` reads a committed ``compatibility.json`` back (the
gate's baseline). The same records give the same bytes: nothing here reads a clock, and
everything is sorted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ._junit_merge import JUnitEvidence, MergeEntry, inspect_junit, merge_junit, merged_text
from ._safeio import MiB, dumps_strict, loads_strict, read_bounded
from .errors import UsageError
from .plan import Cell, plan_cells
from .results import (
    CellRecord,
    RecordError,
    Status,
    json_kind,
    load_record,
    reproduce_command,
)
from .spec import NONE, Matrix
from .workdir import repository_root, write_atomic

__all__ = [
    "MARKS",
    "REPORT_FILES",
    "REPORT_SCHEMA",
    "CellReport",
    "Grid",
    "Report",
    "SuiteSummary",
    "Together",
    "collect",
    "detail_lines",
    "load_report",
    "parse_report",
    "pivot",
    "python_ranges",
    "resolver_reason",
    "short_stage",
    "shown_status",
    "unavailable_facts",
    "works_together",
    "write_report",
]

REPORT_SCHEMA = 1
REPORT_FILES = ("compatibility.md", "compatibility.json", "compatibility.html", "junit.xml")
MISSING = "missing"  # a planned cell without a record; a suite without its JUnit file
STATUS_ORDER = ("passed", "failed", "incompatible", "unavailable", "error", MISSING)
MAX_DETAIL_LINES = 10
EN_DASH = "\u2013"


# --- the values --------------------------------------------------------------------------


_COUNTS = ("collected", "passed", "failed", "errors", "skipped")


@dataclass(frozen=True)
class SuiteSummary:
    name: str
    status: str            # passed, failed, not_run, missing (no usable JUnit for a pass)
    reason: str
    collected: int
    passed: int
    failed: int
    errors: int
    skipped: int
    flaky: tuple[str, ...] = ()          # test ids that failed, then passed on a rerun
    problems: tuple[str, ...] = ()       # why the counts cannot be taken as a clean pass
    failed_tests: tuple[str, ...] = ()   # test ids that failed or errored (pytest node ids
    #                                      when the runner's collected list was found)
    # Where collect found the JUnit file; used for junit.xml only, never serialised (a path
    # on this machine), so a report read back from JSON has none.
    junit: Path | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason,
                **{key: getattr(self, key) for key in _COUNTS},
                "flaky": list(self.flaky), "problems": list(self.problems),
                "failed_tests": list(self.failed_tests)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SuiteSummary:
        return cls(str(data["name"]), str(data["status"]), str(data.get("reason", "")),
                   *_counts(data), flaky=tuple(data.get("flaky", ())),
                   problems=tuple(data.get("problems", ())),
                   failed_tests=tuple(data.get("failed_tests", ())))


def _counts(data: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    collected, passed, failed, errors, skipped = (int(data.get(key) or 0) for key in _COUNTS)
    return collected, passed, failed, errors, skipped


@dataclass(frozen=True)
class CellReport:
    id: str
    axes: dict[str, str | None]
    status: str            # a record's status, or "missing" when the cell has no record
    stage: str | None
    reason: str
    details: tuple[str, ...]
    reproduce: str
    build_key: str
    resolved: dict[str, str]
    suites: tuple[SuiteSummary, ...]
    durations: dict[str, float]      # seconds, rounded to 0.1
    wheel_reused: bool
    built_with_torch: str | None
    running_torch: str | None
    # The repository root of the machine that ran the cell: its paths are shown relative to
    # it, in junit.xml too. Never serialised (a path on that machine).
    root: str = field(default="", compare=False, repr=False)
    # What makes the cell's record itself untrustworthy: copies that disagree, a record
    # that is not this cell's or cannot be read. Fails the gate, whatever the cell's status.
    evidence: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        """The record's own problems, then the honest-counting findings of every suite, as
        ``"<suite>: <finding>"``."""
        return self.evidence + tuple(f"{s.name}: {p}" for s in self.suites for p in s.problems)

    @property
    def verified(self) -> bool:
        """Passed, and the JUnit files back that up."""
        return self.status == "passed" and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "axes": self.axes, "status": self.status, "stage": self.stage,
                "reason": self.reason, "details": list(self.details),
                "reproduce": self.reproduce, "build_key": self.build_key,
                "resolved": self.resolved, "suites": [s.to_json() for s in self.suites],
                "durations": self.durations, "wheel_reused": self.wheel_reused,
                "built_with_torch": self.built_with_torch, "running_torch": self.running_torch,
                "evidence": list(self.evidence), "problems": list(self.problems),
                "verified": self.verified}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellReport:
        return cls(
            id=str(data["id"]), axes=dict(data["axes"]), status=str(data["status"]),
            stage=data.get("stage"), reason=str(data.get("reason", "")),
            details=tuple(data.get("details", ())), reproduce=str(data.get("reproduce", "")),
            build_key=str(data.get("build_key", "")), resolved=dict(data.get("resolved", {})),
            suites=tuple(SuiteSummary.from_json(s) for s in data.get("suites", ())),
            durations={k: float(v) for k, v in data.get("durations", {}).items()},
            wheel_reused=bool(data.get("wheel_reused", False)),
            built_with_torch=data.get("built_with_torch"),
            evidence=tuple(data.get("evidence", ())),
            running_torch=data.get("running_torch"))


@dataclass(frozen=True)
class Report:
    schema: int
    commit: str | None
    axes: tuple[str, ...]            # axis order of the matrix
    cells: tuple[CellReport, ...]    # sorted by cell id

    def cell(self, id: str) -> CellReport | None:
        return next((cell for cell in self.cells if cell.id == id), None)

    def counts(self) -> dict[str, int]:
        """Cells by status, in STATUS_ORDER (then any other status), zeros left out."""
        found: dict[str, int] = {}
        for cell in self.cells:
            found[cell.status] = found.get(cell.status, 0) + 1
        order = [*STATUS_ORDER, *sorted(set(found) - set(STATUS_ORDER))]
        return {status: found[status] for status in order if status in found}

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "commit": self.commit, "axes": list(self.axes),
                "summary": self.counts(), "cells": [c.to_json() for c in self.cells]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        return cls(schema=int(data["schema"]), commit=data.get("commit"),
                   axes=tuple(data["axes"]),
                   cells=tuple(CellReport.from_json(c) for c in data["cells"]))


# --- collecting --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    record: CellRecord
    root: Path  # the work directory (or artifact folder) that holds the record


def collect(matrix: Matrix, sources: Sequence[Path], *, commit: str | None = None) -> Report:
    """The report of the matrix's planned cells from what ``sources`` hold.

    Each source is laid out like a work directory (``results/``, ``junit/``), or holds such
    folders one level down (CI artifacts). A cell found more than once counts once when the
    copies are identical (a re-uploaded artifact) or agree on the verdict; copies that
    disagree are never settled by "the last one wins": the worst verdict stands, with the
    conflict as a problem that fails the gate. A record that cannot be read, or that is not
    the cell its name says, leaves the cell missing, with that problem.
    """
    roots = [root for source in sources for root in _workdirs(source)]
    found, unreadable = _records(roots)
    cells = []
    base = repository_root(matrix.root)
    for cell in plan_cells(matrix):
        reproduce = reproduce_command(matrix.path, cell.id, base)
        copies = [f for f in found.get(cell.id, []) if not _foreign(cell, f, unreadable)]
        if copies:
            chosen, conflict = _settle(copies)
            report = _cell_report(matrix, cell, chosen, reproduce)
            if conflict:
                report = replace(report, evidence=(conflict,))
            cells.append(report)
        else:
            cells.append(_missing_cell(cell, unreadable.get(cell.id), reproduce))
    return Report(REPORT_SCHEMA, commit, tuple(axis.name for axis in matrix.axes),
                  tuple(sorted(cells, key=lambda c: c.id)))


def _workdirs(source: Path) -> list[Path]:
    if not source.is_dir():
        what = "not a folder" if os.path.lexists(source) else "no such folder"
        raise UsageError(f"{source}: {what} (expected a work directory or a folder "
                         "of CI artifacts holding results/)")
    if (source / "results").is_dir():
        return [source]
    try:
        children = sorted(source.iterdir())
    except OSError as exc:
        raise UsageError(f"{source}: cannot list the folder: {exc.strerror}") from None
    return [child for child in children if (child / "results").is_dir()]


def _records(roots: Iterable[Path]) -> tuple[dict[str, list[_Found]], dict[str, str]]:
    found: dict[str, list[_Found]] = {}
    unreadable: dict[str, str] = {}
    for root in roots:
        for path in sorted((root / "results").glob("*.json")):
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
        build_key=record.build_key or cell.build_key,
        resolved=dict(sorted(record.resolved.items())),
        suites=_suites(matrix, record, _junit_files(cell.id, found.root)),
        durations={k: round(v, 1) for k, v in sorted(record.durations.items())},
        wheel_reused=record.wheel_reused, built_with_torch=record.built_with_torch,
        running_torch=record.running_torch)


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


def _suite(name: str, data: Mapping[str, Any], junit: Path | None,
           gpu: str | None = None) -> SuiteSummary:
    status, reason = str(data.get("status", "")), str(data.get("reason", ""))
    counts = _counts(data)
    if status == "not_run":
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
        problems.append(_plural(evidence.duplicated, "duplicated test case"))
    if collected > evidence.tests:
        problems.append(f"{collected - evidence.tests} of {collected} collected tests are "
                        "not in the JUnit file")
    if status == "passed" and (evidence.failed or evidence.errors):
        problems.append(f"recorded as passed, but the JUnit file has {evidence.failed} "
                        f"failed and {evidence.errors} errors")
    return tuple(problems)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


# --- reading the report: shared by the Markdown and the HTML page -------------------------


MARKS = {  # what a grid entry shows, and the legend
    "passed": ("✅", "passed"),
    "unverified": ("⚠️", "passed, but the test evidence is incomplete (see below)"),
    "failed": ("❌", "failed (with the stage)"),
    "incompatible": ("⛔", "incompatible: the resolver proved the pins unsatisfiable"),
    "unavailable": ("\u2796", "unavailable here (an interpreter, index or build is missing)"),
    "error": ("💥", "error: a bug in compatmatrix"),
    MISSING: ("❔", "missing: planned, but no record"),
    "not_planned": ("·", "not planned"),
}


def shown_status(cell: CellReport | None) -> str:
    """The status a grid shows: a pass the JUnit files do not back up is not a pass."""
    if cell is None:
        return "not_planned"
    if cell.status == "passed" and not cell.verified:
        return "unverified"
    return cell.status if cell.status in MARKS else "error"


def short_stage(stage: str | None) -> str:
    return (stage or "").removeprefix("suite:")


@dataclass(frozen=True)
class Grid:
    """One pivot table: rows torch (variant), columns Python, for one value of the rest."""

    title: str                     # e.g. "vllm 0.30.0, extras dev"; "" with no other axes
    columns: tuple[str, ...]       # Python versions
    rows: tuple[tuple[str, tuple[CellReport | None, ...]], ...]  # (label, one per column)


_ROW_AXES = ("torch", "cuda")


def pivot(report: Report) -> list[Grid]:
    rest = [a for a in report.axes if a != "python" and a not in _ROW_AXES]
    columns = _sorted_values(c.axes.get("python") for c in report.cells)
    by_title: dict[tuple[Any, ...], dict[tuple[Any, ...], dict[str | None, CellReport]]] = {}
    titles: dict[tuple[Any, ...], str] = {}
    labels: dict[tuple[Any, ...], str] = {}
    for cell in report.cells:
        title_key = tuple(_value_key(cell.axes.get(a)) for a in rest)
        row_key = tuple(_value_key(cell.axes.get(a)) for a in _ROW_AXES)
        titles[title_key] = ", ".join(_axis_phrase(a, cell.axes.get(a)) for a in rest)
        labels[row_key] = _variant_label(cell.axes.get("torch"), cell.axes.get("cuda"))
        row = by_title.setdefault(title_key, {}).setdefault(row_key, {})
        row[cell.axes.get("python")] = cell
    return [Grid(titles[t], tuple(str(c) for c in columns),
                 tuple((labels[r], tuple(rows[r].get(c) for c in columns))
                       for r in sorted(rows)))
            for t, rows in sorted(by_title.items())]


def _axis_phrase(axis: str, value: str | None) -> str:
    return f"no {axis}" if value is None else f"{axis} {value}"


def _variant_label(torch: str | None, cuda: str | None) -> str:
    """"torch 2.13.0 (cu130)"; "cu130" with no torch in the cell (or no torch axis)."""
    if torch is None:
        return cuda or "no torch"
    return f"torch {torch}" + (f" ({cuda})" if cuda else "")


def _value_key(value: str | None) -> tuple[Any, ...]:
    """Sorts axis values the way people read them: none, versions, variants, the rest."""
    if value is None:
        return (0, Version("0"), "")
    try:
        return (1, Version(value), value)
    except InvalidVersion:
        pass
    variant = re.match(r"^([a-z]+)(\d+(?:\.\d+)*)?$", value)
    if variant:  # cpu < cu118 < cu128 < cu130 < rocm6.3
        return (2, variant[1], Version(variant[2] or "0"))
    return (3, Version("0"), value)


def _sorted_values(values: Iterable[str | None]) -> list[str | None]:
    return sorted(set(values), key=_value_key)


@dataclass(frozen=True)
class Together:
    """One row of "what was measured to work together"."""

    rest: tuple[str, ...]      # the other axes' values (resolved versions), "—" for none
    variant: str               # "torch 2.13.0 (cu130)"
    pythons: str               # "3.10-3.12", with an en dash
    not_run: tuple[str, ...]   # suites not run in these cells (e.g. gpu: no GPU here)


def works_together(report: Report) -> tuple[tuple[str, ...], list[Together]]:
    """The other axes' names, and the rows, from verified passed cells only."""
    rest = [a for a in report.axes if a != "python" and a not in _ROW_AXES]
    groups: dict[tuple[Any, ...], tuple[tuple[str, ...], str, set[str], set[str]]] = {}
    for cell in report.cells:
        if not cell.verified:
            continue
        values = [_measured(cell, a) for a in rest]
        torch, cuda = _measured(cell, "torch"), cell.axes.get("cuda")
        key = (*(_value_key(v) for v in values), _value_key(torch), _value_key(cuda))
        shown = tuple("—" if v is None else v for v in values)
        entry = groups.setdefault(key, (shown, _variant_label(torch, cuda), set(), set()))
        entry[2].add(str(cell.axes.get("python")))
        entry[3].update(s.name for s in cell.suites if s.status == "not_run")
    rows = [Together(shown, variant, python_ranges(pythons), tuple(sorted(not_run)))
            for _, (shown, variant, pythons, not_run) in sorted(groups.items())]
    return tuple(rest), rows


def _measured(cell: CellReport, axis: str) -> str | None:
    """A package axis' version as resolved (a specifier axis says which one was measured)."""
    value = cell.axes.get(axis)
    if value is None or axis == "extras":
        return value
    resolved = cell.resolved.get(canonicalize_name(axis))
    return resolved.split("+", 1)[0] if resolved else value


def python_ranges(versions: Iterable[str]) -> str:
    """``3.10, 3.11, 3.12, 3.14`` -> ``3.10-3.12, 3.14`` (consecutive minors as a range,
    written with an en dash)."""
    ordered = sorted(set(versions), key=_value_key)
    runs: list[list[str]] = []
    for version in ordered:
        if runs and _next_minor(runs[-1][-1]) == version:
            runs[-1].append(version)
        else:
            runs.append([version])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}{EN_DASH}{run[-1]}" for run in runs)


def _next_minor(version: str) -> str:
    major, _, minor = version.partition(".")
    return f"{major}.{int(minor) + 1}" if minor.isdigit() else ""


# --- resolver output, trimmed for people -------------------------------------------------

_BECAUSE = re.compile(r"\bBecause (.+?),? we can conclude")
# uv's decorations: "  \u00d7 No solution found", "  \u2570\u2500\u25b6 Because ...", "  cause: ..."
_MARKS_PREFIX = re.compile("^[\\s\u00d7\u2570\u2500\u25b6\u2502|]*(?:cause:|error:)?\\s*")
_REACHABLE = re.compile(r"index \S+ is not reachable(?: \([^)]*\))?")
_LIMIT = 300


def _plain_lines(details: Iterable[str]) -> list[str]:
    return [_MARKS_PREFIX.sub("", line).strip() for line in details]


def resolver_reason(details: Sequence[str], reason: str = "") -> str:
    """uv's proof in one clause: ``vllm==0.30.0 depends on torch==2.13.0 and you require
    torch==2.9.0``, from the first "Because ..." that names a dependency."""
    text = " ".join(_plain_lines(details))  # uv may wrap one sentence over lines
    clauses = _BECAUSE.findall(text)
    best = next((c for c in clauses if " depends on " in c), clauses[0] if clauses else "")
    if not best:
        best = next((line for line in _plain_lines(details)
                     if line and "No solution found" not in line), reason)
    return _trim(best)


def unavailable_facts(details: Sequence[str], reason: str) -> list[str]:
    """What was missing: unreachable indexes, missing builds, uv's hints; else the reason."""
    lines = _plain_lines(details)
    text = " ".join(lines)
    facts = [*_REACHABLE.findall(text), *_BECAUSE.findall(text),
             *(line.removeprefix("hint:").strip() for line in lines if line.startswith("hint:"))]
    unique = list(dict.fromkeys(_trim(f) for f in facts if f))
    return unique or [_trim(reason)]


def _trim(text: str) -> str:
    return text if len(text) <= _LIMIT else text[:_LIMIT - 1] + "…"


def detail_lines(cell: CellReport) -> list[str]:
    """The first error lines, each kept to one readable line (the reason is said already)."""
    lines = [_trim(line.rstrip()) for line in cell.details
             if line.strip() and line.strip() != cell.reason]
    if len(lines) > MAX_DETAIL_LINES:
        lines = [*lines[:MAX_DETAIL_LINES], f"… {len(lines) - MAX_DETAIL_LINES} more lines"]
    return lines


# --- writing and reading back ------------------------------------------------------------


def write_report(report: Report, out: Path) -> list[Path]:
    """Write the report files into ``out``; only those whose bytes changed. Returns those."""
    # Imported here: the renderers import this module for its values and helpers.
    from . import _report_html, _report_md

    texts = {
        "compatibility.md": _report_md.render(report),
        "compatibility.json": dumps_strict(report.to_json(), indent=2, sort_keys=True,
                                           ensure_ascii=False) + "\n",
        "compatibility.html": _report_html.render(report),
        "junit.xml": _scrub_all(merged_text(merge_junit(junit_entries(report))),
                                {cell.root for cell in report.cells}),
    }
    changed = []
    for name in REPORT_FILES:
        path = out / name
        if _same_bytes(path, texts[name]):
            continue
        write_atomic(path, texts[name])
        changed.append(path)
    return changed


def scrub_paths(text: str, root: str) -> str:
    """``text`` with the run's repository root (and home folder) taken out of its paths: a
    committed report shows paths relative to the repository, never a machine's."""
    if root and root != "/":
        text = text.replace(root.rstrip("/") + "/", "").replace(root.rstrip("/"), ".")
    home = str(Path.home())
    if home not in ("", "/"):
        text = text.replace(home.rstrip("/") + "/", "~/")
    return text


def _scrub_all(text: str, roots: Iterable[str]) -> str:
    for root in sorted(roots, key=len, reverse=True):  # the longest (most specific) first
        text = scrub_paths(text, root)
    return scrub_paths(text, "")


def _same_bytes(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


MAX_REPORT_BYTES = 256 * MiB


def load_report(path: Path) -> Report | None:
    """A compatibility.json written by write_report; None when there is none.

    Anything else there — a folder or a FIFO (never opened), a file over MAX_REPORT_BYTES,
    garbage, a JSON list, another schema, fields of the wrong types — is a UsageError
    (exit 2) that names the file and says what to do.
    """
    if not os.path.lexists(path):
        return None
    try:
        data = read_bounded(path, MAX_REPORT_BYTES)
    except OSError as exc:
        raise _not_a_report(str(path), str(exc)) from None
    return parse_report(data, str(path))


def parse_report(text: str | bytes, where: str) -> Report:
    """The report in ``text`` (a compatibility.json); UsageError naming ``where`` when it
    is not one."""
    try:
        data = loads_strict(text)
    except ValueError as exc:
        raise _not_a_report(where, f"not JSON: {exc}") from None
    problem = _report_problem(data)
    if problem:
        raise _not_a_report(where, problem)
    try:
        return Report.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise _not_a_report(where, str(exc)) from None


def _not_a_report(where: str, why: str) -> UsageError:
    return UsageError(f"{where}: not a readable compatibility report ({why}); point "
                      "--baseline at a compatibility.json written by `compatmatrix report`, "
                      "or regenerate and commit reports/")


def _report_problem(data: object) -> str:
    """What makes ``data`` not a report of this schema ("" when nothing): the shape that
    Report.from_json and the gate rely on."""
    if not isinstance(data, dict):
        return f"{json_kind(data)}, not an object"
    schema = data.get("schema")
    if schema != REPORT_SCHEMA or isinstance(schema, bool):
        return f"schema {schema!r}, expected {REPORT_SCHEMA}"
    if not _strings(data.get("axes")):
        return "'axes' is not a list of names"
    if not isinstance(data.get("commit"), (str, type(None))):
        return "'commit' is not a string"
    cells = data.get("cells")
    if not isinstance(cells, list):
        return "'cells' is not a list"
    for index, cell in enumerate(cells):
        problem = _cell_problem(cell)
        if problem:
            return f"cells[{index}]: {problem}"
    return ""


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _text_map(value: object, *, nullable: bool = False) -> bool:
    kinds = (str, type(None)) if nullable else (str,)
    return isinstance(value, dict) and all(isinstance(v, kinds) for v in value.values())


def _cell_problem(cell: object) -> str:
    if not isinstance(cell, dict):
        return "not an object"
    for key in ("id", "status"):
        if not isinstance(cell.get(key), str):
            return f"{key!r} is not a string"
    if not _text_map(cell.get("axes"), nullable=True):
        return "'axes' is not an object of values"
    checks = (("stage", lambda v: isinstance(v, (str, type(None)))),
              ("reason", lambda v: isinstance(v, str)), ("details", _strings),
              ("reproduce", lambda v: isinstance(v, str)),
              ("build_key", lambda v: isinstance(v, str)), ("resolved", _text_map),
              ("durations", lambda v: isinstance(v, dict) and all(
                  isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) < 1e300
                  for x in v.values())),
              ("built_with_torch", lambda v: isinstance(v, (str, type(None)))),
              ("running_torch", lambda v: isinstance(v, (str, type(None)))),
              ("suites", lambda v: isinstance(v, list) and all(_suite_shape(s) for s in v)))
    for key, check in checks:
        if key in cell and not check(cell[key]):
            return f"{key!r} has the wrong type"
    return ""


def _suite_shape(suite: object) -> bool:
    return (isinstance(suite, dict) and isinstance(suite.get("name"), str)
            and isinstance(suite.get("status"), str)
            and isinstance(suite.get("reason", ""), str)
            and all(suite.get(key) is None or (isinstance(suite[key], int)
                                               and not isinstance(suite[key], bool))
                    for key in _COUNTS)
            and all(_strings(suite.get(key, [])) for key in ("flaky", "problems",
                                                               "failed_tests")))


def junit_entries(report: Report) -> list[MergeEntry]:
    """One <testsuite> per cell and suite (``<cell>/<suite>``), sorted by cell and suite;
    a cell without suites gets one (``<cell>``) saying why, so that a failed build shows in
    a CI test view and an incompatible cell shows as skipped."""
    entries = []
    for cell in report.cells:
        for suite in sorted(cell.suites, key=lambda s: s.name):
            entries.append(_suite_entry(cell, suite))
        if not cell.suites and cell.status != "passed":
            entries.append(_cell_entry(cell))
    return entries


def _suite_entry(cell: CellReport, suite: SuiteSummary) -> MergeEntry:
    note, kind = suite.reason, "skipped"
    if suite.problems:
        note, kind = "; ".join(suite.problems), "error"
    elif suite.status != "not_run":
        # only a report read back from JSON has no files, and no problems to tell
        note = "the test cases were not collected into this report"
    return MergeEntry(name=f"{cell.id}/{suite.name}",
                      properties=(("cell", cell.id), ("suite", suite.name),
                                  ("status", suite.status)),
                      junit=suite.junit, note=note, note_kind=kind,
                      note_type=f"compatmatrix.{suite.status}")


def _cell_entry(cell: CellReport) -> MergeEntry:
    kind = "failure" if cell.status == "failed" else \
        "error" if cell.status == "error" else "skipped"
    stage = f" at {cell.stage}" if cell.stage else ""
    return MergeEntry(name=cell.id, properties=(("cell", cell.id), ("status", cell.status)),
                      note=f"{cell.status}{stage}: {cell.reason}", note_kind=kind,
                      note_type=f"compatmatrix.{cell.status}",
                      note_text="\n".join([*cell.details, f"reproduce: {cell.reproduce}"]))
