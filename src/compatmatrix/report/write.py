"""Write the report files: compatibility.md, .json, .html and the merged junit.xml, each only
when its bytes change."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from compatmatrix.host.safeio import dumps_strict, write_atomic
from compatmatrix.report import html as _report_html
from compatmatrix.report import markdown as _report_md
from compatmatrix.report.collect import scrub_paths
from compatmatrix.report.declared import declared_ranges
from compatmatrix.report.junit import (
    MergeEntry,
    merge_junit,
    merged_text,
)
from compatmatrix.report.model import REPORT_FILES, CellReport, Report, SuiteSummary

__all__ = [
    "junit_entries",
    "write_report",
]

# --- writing and reading back ------------------------------------------------------------


def report_json(report: Report) -> dict[str, object]:
    """compatibility.json: the report, and the declared ranges set against what passed."""
    return {**report.to_json(), "declared": [d.to_json() for d in declared_ranges(report)]}


def write_report(report: Report, out: Path) -> list[Path]:
    """Write the report files into ``out``; only those whose bytes changed. Returns those."""

    texts = {
        "compatibility.md": _report_md.render(report),
        "compatibility.json": dumps_strict(report_json(report), indent=2, sort_keys=True,
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


def _scrub_all(text: str, roots: Iterable[str]) -> str:
    for root in sorted(roots, key=len, reverse=True):  # the longest (most specific) first
        text = scrub_paths(text, root)
    return scrub_paths(text, "")


def _same_bytes(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


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
