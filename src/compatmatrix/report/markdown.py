"""compatibility.md: what a person reads, in the order they ask: does it work, where not,
why, and how to see it fail themselves."""

from __future__ import annotations

import re
from collections.abc import Iterable

from compatmatrix.report.declared import declared_ranges
from compatmatrix.report.declared import lines as declared_lines
from compatmatrix.report.model import CellReport, Report
from compatmatrix.report.views import (
    MARKS,
    Grid,
    detail_lines,
    pivot,
    resolver_reason,
    short_stage,
    shown_status,
    unavailable_facts,
    works_together,
)

__all__ = ["render"]

# What would turn a reason into markup (emphasis, HTML, a table cell, a link); `code` from
# uv's output is kept as code, and the rest stays readable in the raw file.
_SPECIAL = re.compile(r"([\\*<>|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|(?<=\])\()")


def render(report: Report) -> str:
    parts = [_header(report), _legend(), _grids(report), _together(report),
             "\n".join(declared_lines(declared_ranges(report))).rstrip(),
             _failures(report), _incompatible(report), _unavailable(report),
             _not_run(report), _problems(report), _flaky(report), _missing(report),
             _artifacts(report)]
    return "\n\n".join(part for part in parts if part) + "\n"


def _artifacts(report: Report) -> str:
    """The wheel each cell tested: a release gate judges the files that ship."""
    cells = [cell for cell in report.cells if cell.artifact_text]
    if not cells:
        return ""
    lines = ["## Wheels tested", "", "| cell | wheel | sha256 | origin |", "|---|---|---|---|"]
    lines += [_row([cell.id, code(str(cell.artifact.get("file", ""))) if cell.artifact else "",
                    code(str(cell.artifact.get("sha256", ""))[:12]) if cell.artifact else "",
                    str(cell.artifact.get("origin", "")) if cell.artifact else ""])
              for cell in cells]
    return "\n".join(lines)


def text(value: str) -> str:
    return _SPECIAL.sub(r"\\\1", value)


def code(value: str) -> str:
    """An inline code span that survives backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def block(lines: Iterable[str]) -> str:
    body = "\n".join(lines)
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}text\n{body}\n{fence}"


def summary_line(report: Report) -> str:
    unverified = sum(1 for c in report.cells if shown_status(c) == "unverified")
    parts = []
    for status, count in report.counts().items():
        note = f" ({unverified} with incomplete test evidence)" \
            if status == "passed" and unverified else ""
        parts.append(f"{count} {status}{note}")
    return f"{len(report.cells)} cells: " + ", ".join(parts) + "."


def _header(report: Report) -> str:
    lines = ["# Compatibility report", ""]
    if report.commit:
        lines += [f"generated from commit {code(report.commit)}", ""]
    return "\n".join([*lines, summary_line(report)])


def _legend() -> str:
    return "Legend: " + " · ".join(f"{mark} {meaning}" for mark, meaning in MARKS.values())


def entry(cell: CellReport | None) -> str:
    status = shown_status(cell)
    mark = MARKS[status][0]
    if cell is not None and status in ("failed", "error") and cell.stage:
        return f"{mark} {short_stage(cell.stage)}"
    return mark


def _grids(report: Report) -> str:
    return "\n\n".join(["## Matrix", *(_grid(grid) for grid in pivot(report))])


def _grid(grid: Grid) -> str:
    header = ["torch (variant)", *(f"Python {c}" for c in grid.columns)]
    lines = [_row(header), "|---|" + ":-:|" * len(grid.columns)]
    lines += [_row([label, *(entry(cell) for cell in cells)]) for label, cells in grid.rows]
    table = "\n".join(lines)
    return f"### {text(grid.title)}\n\n{table}" if grid.title else table


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _together(report: Report) -> str:
    rest, rows = works_together(report)
    title = "## Measured to work together"
    if not rows:
        return f"{title}\n\nNo cell passed with complete test evidence."
    with_not_run = any(row.not_run for row in rows)
    header = [*rest, "torch (variant)", "Python"] + ["suites not run"] * with_not_run
    lines = [_row(header), _row(["---"] * len(header))]
    for row in rows:
        cells = [*map(text, row.rest), row.variant, row.pythons]
        lines.append(_row(cells + [", ".join(row.not_run) or "—"] * with_not_run))
    intro = ("Passed cells, with their resolved versions; a row covers each Python listed. "
             "Suites not run were not measured (see below).")
    return "\n\n".join([title, intro, "\n".join(lines)])


def _cells(report: Report, *statuses: str) -> list[CellReport]:
    return [cell for cell in report.cells if cell.status in statuses]


def _failures(report: Report) -> str:
    cells = _cells(report, "failed", "error")
    if not cells:
        return ""
    return "\n\n".join(["## Failures", *(_failure(cell) for cell in cells)])


def _failure(cell: CellReport) -> str:
    where = f" at {cell.stage}" if cell.stage else ""
    parts = [f"### {cell.id}", f"**{cell.status}{where}**: {text(cell.reason)}"]
    if lines := detail_lines(cell):
        parts.append(block(lines))
    parts.append(f"Reproduce: {code(cell.reproduce)}")
    return "\n\n".join(parts)


def _incompatible(report: Report) -> str:
    cells = _cells(report, "incompatible")
    if not cells:
        return ""
    lines = [f"- **{c.id}**: {text(resolver_reason(c.details, c.reason))}" for c in cells]
    return "## Incompatible\n\nThe resolver's reason:\n\n" + "\n".join(lines)


def _unavailable(report: Report) -> str:
    cells = _cells(report, "unavailable")
    if not cells:
        return ""
    lines = []
    for cell in cells:
        lines.append(f"- **{cell.id}**: {text(cell.reason)}")
        facts = unavailable_facts(cell.details, cell.reason)
        lines += [f"  - {text(fact)}" for fact in facts if fact != cell.reason]
    return "## Unavailable\n\nWhat is missing here:\n\n" + "\n".join(lines)


def _not_run(report: Report) -> str:
    """Suites recorded as not run (a GPU kind missing), grouped by suite and reason."""
    groups: dict[tuple[str, str], list[str]] = {}
    for cell in report.cells:
        for suite in cell.suites:
            if suite.status == "not_run":
                groups.setdefault((suite.name, suite.reason), []).append(cell.id)
    if not groups:
        return ""
    lines = [f"- **{name}**: {text(reason)} — {len(ids)} cells: {', '.join(ids)}"
             if len(ids) > 1 else f"- **{name}**: {text(reason)} — {ids[0]}"
             for (name, reason), ids in sorted(groups.items())]
    return "## Suites not run\n\n" + "\n".join(lines)


def _problems(report: Report) -> str:
    lines = [f"- **{cell.id}** {text(problem)}"
             for cell in report.cells for problem in cell.problems]
    if not lines:
        return ""
    intro = ("Missing or empty JUnit files, suites without tests and duplicated test cases: "
             "a cell with any of these is not counted as a pass above.")
    return "## Test evidence problems\n\n" + intro + "\n\n" + "\n".join(lines)


def _flaky(report: Report) -> str:
    lines = [f"- **{cell.id}** {suite.name}: {code(test)}"
             for cell in report.cells for suite in cell.suites for test in suite.flaky]
    if not lines:
        return ""
    return "## Flaky tests\n\nFailed, then passed on a rerun:\n\n" + "\n".join(lines)


def _missing(report: Report) -> str:
    cells = _cells(report, "missing")
    if not cells:
        return ""
    lines = [f"- **{c.id}**: {text(c.reason)} — {code(c.reproduce)}" for c in cells]
    return "## Not run\n\n" + "\n".join(lines)
