"""The pins table of a resolve-only run: which versions install together, from real metadata.

Its own files (``pins.md``, ``pins.json``), never the compatibility report: nothing was built
or tested, so nothing here is a pass, and the gate never reads it.
"""

from __future__ import annotations

from pathlib import Path

from compatmatrix.host.safeio import dumps_strict, write_atomic
from compatmatrix.host.uv import conflict_clause, missing_facts
from compatmatrix.report.model import CellReport, Report

__all__ = ["PINS_FILES", "render_pins", "write_pins"]

PINS_FILES = ("pins.md", "pins.json")
_MARK = {"resolvable": "yes", "incompatible": "no", "unavailable": "?", "error": "error",
         "missing": "not run"}


def write_pins(report: Report, out: Path) -> list[Path]:
    """Write pins.md and pins.json into ``out`` (only when their bytes change)."""
    texts = {"pins.md": render_pins(report),
             "pins.json": dumps_strict(_json(report), indent=2, sort_keys=True,
                                       ensure_ascii=False) + "\n"}
    changed = []
    for name in PINS_FILES:
        path = out / name
        try:
            same = path.read_bytes() == texts[name].encode("utf-8")
        except OSError:
            same = False
        if not same:
            write_atomic(path, texts[name])
            changed.append(path)
    return changed


def _json(report: Report) -> dict[str, object]:
    return {"schema": 1, "axes": list(report.axes), "summary": report.counts(),
            "cells": [{"id": c.id, "axes": c.axes, "status": c.status, "pins": c.resolved,
                       "reason": _why(c)} for c in report.cells]}


def _why(cell: CellReport) -> str:
    if cell.status == "incompatible":
        return conflict_clause(cell.details, cell.reason)
    if cell.status == "unavailable":
        return "; ".join(missing_facts(cell.details)) or cell.reason
    return cell.reason if cell.status != "resolvable" else ""


def render_pins(report: Report) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items())
    parts = ["# Which pins install together", "",
             "A resolve-only run (`compatmatrix run --until resolve`): each cell's pins "
             "resolved together by uv from the packages' own metadata. Nothing was built or "
             "tested: *yes* means the pins install together, not that they work.", "",
             f"{len(report.cells)} cells: {counts}.", ""]
    rows_axis, columns = _layout(report)
    for python in sorted({c.axes.get("python") or "" for c in report.cells},
                         key=_version_key):
        cells = [c for c in report.cells if (c.axes.get("python") or "") == python]
        parts += _grid(python, cells, rows_axis, columns)
    reasons = sorted((c for c in report.cells if c.status != "resolvable"),
                     key=lambda c: [_version_key(str(c.axes.get(a) or "")) for a in report.axes])
    if reasons:
        # one line per reason, with every cell it holds for: "vllm==0.11.0 depends on
        # torch==2.8.0" says why a whole column is "no"
        groups: dict[tuple[str, str], list[str]] = {}
        for cell in reasons:
            why = (_why(cell) or cell.reason).split(" and you require ")[0]
            groups.setdefault((cell.status, why), []).append(cell.id)
        parts += ["## Why not", ""]
        parts += [f"- {status}: {why} ({', '.join(ids)})" for (status, why), ids in
                  sorted(groups.items(), key=lambda g: (g[0][0], _version_key(
                      g[0][1].replace("==", " "))))]
        parts.append("")
    return "\n".join(parts)


def _layout(report: Report) -> tuple[str | None, list[str]]:
    """The axis of the rows (torch when there is one) and the axes of the columns."""
    axes = [a for a in report.axes if a != "python"]
    rows = "torch" if "torch" in axes else (axes[0] if axes else None)
    return rows, [a for a in axes if a != rows]


def _grid(python: str, cells: list[CellReport], rows_axis: str | None,
          columns: list[str]) -> list[str]:
    def label(cell: CellReport, names: list[str]) -> str:
        return ", ".join(f"{n} {cell.axes.get(n) or 'none'}" for n in names) or "-"

    row_values = sorted({str(c.axes.get(rows_axis) or "none") if rows_axis else "-"
                         for c in cells}, key=_version_key)
    column_values = sorted({label(c, columns) for c in cells}, key=_version_key)
    head = f"| {rows_axis or ''} \\\\ {' · '.join(columns) or ''} | " + " | ".join(
        column_values) + " |"
    lines = [f"## Python {python}", "", head, "|" + "---|" * (len(column_values) + 1)]
    for row in row_values:
        entries = []
        for column in column_values:
            found = [c for c in cells if label(c, columns) == column and (
                not rows_axis or str(c.axes.get(rows_axis) or "none") == row)]
            entries.append(_MARK.get(found[0].status, found[0].status) if found else "")
        lines.append(f"| {row} | " + " | ".join(entries) + " |")
    return [*lines, ""]


def _version_key(text: str) -> tuple[object, ...]:
    parts = []
    for piece in text.replace(",", " ").replace("-", " ").split():
        for token in piece.split("."):
            parts.append((0, int(token), "") if token.isdigit() else (1, 0, token))
    return tuple(parts)
