"""What the Markdown and the HTML report both show: marks, the pivot grids, what was measured
to work together, and the resolver's and the details' lines trimmed for people."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compatmatrix.host.uv import conflict_clause, missing_facts
from compatmatrix.report.model import EN_DASH, MAX_DETAIL_LINES, MISSING, CellReport, Report

__all__ = [
    "MARKS",
    "Grid",
    "Together",
    "detail_lines",
    "pivot",
    "python_ranges",
    "resolver_reason",
    "short_stage",
    "shown_status",
    "unavailable_facts",
    "works_together",
]

# --- reading the report: shared by the Markdown and the HTML page -------------------------


MARKS = {  # what a grid entry shows, and the legend
    "passed": ("✅", "passed"),
    "unverified": ("⚠️", "passed, but the test evidence is incomplete (see below)"),
    "failed": ("❌", "failed (with the stage)"),
    "incompatible": ("⛔", "incompatible: the resolver proved the pins unsatisfiable"),
    "unavailable": ("\u2796", "unavailable here (an interpreter, index or build is missing)"),
    "resolvable": ("🔗", "resolvable: the pins install together; nothing built or tested"),
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

_LIMIT = 300


def resolver_reason(details: Sequence[str], reason: str = "") -> str:
    """uv's proof in one clause (see :func:`compatmatrix.host.uv.conflict_clause`)."""
    return _trim(conflict_clause(details, reason))


def unavailable_facts(details: Sequence[str], reason: str) -> list[str]:
    """What was missing: unreachable indexes, missing builds, uv's hints; else the reason."""
    unique = list(dict.fromkeys(_trim(f) for f in missing_facts(details) if f))
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
