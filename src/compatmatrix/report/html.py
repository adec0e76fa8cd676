"""compatibility.html: one self-contained page (inline CSS, no script, nothing fetched).

The matrix is drawn as coloured grids, the same pivot as the Markdown; every grid entry
links to the details of its cell further down. Every piece of text is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from compatmatrix.report.markdown import summary_line
from compatmatrix.report.model import CellReport, Report, SuiteSummary
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

# One colour per shown status; the words next to the marks carry the meaning without colour.
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
max-width:1280px;padding:0 16px;color:#1b1f24;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;
border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#57606a;margin:0 0 8px}
table{border-collapse:collapse;margin:6px 0 12px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}
table.grid td{padding:0;text-align:center;min-width:120px;vertical-align:middle}
table.grid th{vertical-align:middle}
table.grid td a{display:block;padding:6px 10px;color:inherit;text-decoration:none}
table.grid td a:hover{outline:2px solid #0969da;outline-offset:-2px}
.legend{display:flex;flex-wrap:wrap;gap:6px;padding:0;list-style:none}
.legend li{padding:2px 8px;border-radius:4px;border:1px solid #d0d7de}
.s-passed{background:#ccebd3}.s-unverified{background:#fde7b0}
.s-failed{background:#f9c6c6}.s-incompatible{background:#e4d4f4}
.s-unavailable{background:#e3e6ea}.s-error{background:#f08c8c}
.s-missing{background:#fff6bf}.s-not_planned{background:#fff;color:#8c959f}
section.cell{border:1px solid #d0d7de;border-left:8px solid #d0d7de;border-radius:4px;
margin:10px 0;padding:4px 12px 8px}
section.cell.s-passed{border-left-color:#2da44e}section.cell.s-unverified{border-left-color:#d4a72c}
section.cell.s-failed{border-left-color:#cf222e}section.cell.s-incompatible{border-left-color:#8250df}
section.cell.s-unavailable{border-left-color:#8c959f}section.cell.s-error{border-left-color:#a40e26}
section.cell.s-missing{border-left-color:#d4a72c}section.cell{background:#fff}
section.cell:target{box-shadow:0 0 0 3px #0969da}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0}
dt{color:#57606a}dd{margin:0}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;white-space:pre-wrap;margin:6px 0}
code{background:#f6f8fa;padding:1px 4px;border-radius:3px}
"""


def render(report: Report) -> str:
    body = [_header(report), _grids(report), _together(report), _details(report)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>Compatibility report</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body)
            + "\n</body>\n</html>\n")


def anchor(cell_id: str) -> str:
    return "cell-" + cell_id


def _header(report: Report) -> str:
    parts = ["<h1>Compatibility report</h1>"]
    if report.commit:
        parts.append(f'<p class="meta">generated from commit <code>{escape(report.commit)}'
                     "</code></p>")
    parts.append(f'<p class="summary">{escape(summary_line(report))}</p>')
    legend = "".join(f'<li class="s-{status}">{escape(mark)} {escape(meaning)}</li>'
                     for status, (mark, meaning) in MARKS.items())
    parts.append(f'<ul class="legend">{legend}</ul>')
    return "\n".join(parts)


def _grids(report: Report) -> str:
    return "\n".join(["<h2>Matrix</h2>", *(_grid(grid) for grid in pivot(report))])


def _grid(grid: Grid) -> str:
    head = "".join(f"<th>Python {escape(c)}</th>" for c in grid.columns)
    rows = "".join(f"<tr><th>{escape(label)}</th>{''.join(map(_grid_cell, cells))}</tr>\n"
                   for label, cells in grid.rows)
    title = f"<h3>{escape(grid.title)}</h3>\n" if grid.title else ""
    return (f'{title}<table class="grid"><thead><tr><th>torch (variant)</th>{head}</tr>'
            f"</thead>\n<tbody>\n{rows}</tbody></table>")


def _grid_cell(cell: CellReport | None) -> str:
    status = shown_status(cell)
    mark = MARKS[status][0]
    if cell is None:
        return f'<td class="s-{status}" title="not planned">{escape(mark)}</td>'
    word = status
    if status in ("failed", "error") and cell.stage:
        word = f"{status} ({short_stage(cell.stage)})"
    return (f'<td class="s-{status}"><a href="#{escape(anchor(cell.id))}" '
            f'title="{escape(cell.id)}: {escape(cell.reason or status)}">'
            f"{escape(mark)} {escape(word)}</a></td>")


def _together(report: Report) -> str:
    rest, rows = works_together(report)
    title = "<h2>Measured to work together</h2>"
    if not rows:
        return f"{title}\n<p>No cell passed with complete test evidence.</p>"
    with_not_run = any(row.not_run for row in rows)
    header = [*rest, "torch (variant)", "Python"] + ["suites not run"] * with_not_run
    lines = [_tr(header, "th")]
    for row in rows:
        lines.append(_tr([*row.rest, row.variant, row.pythons]
                         + [", ".join(row.not_run) or "—"] * with_not_run))
    return f"{title}\n<table>\n" + "\n".join(lines) + "\n</table>"


def _tr(cells: Iterable[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{escape(c)}</{tag}>" for c in cells) + "</tr>"


def _details(report: Report) -> str:
    return "\n".join(["<h2>Cells</h2>", *(_cell(cell) for cell in report.cells)])


def _cell(cell: CellReport) -> str:
    status = shown_status(cell)
    facts = [("status", f"{MARKS[status][0]} {cell.status}"),
             ("stage", cell.stage or "—"), ("reason", cell.reason or "—")]
    if cell.status == "incompatible":
        facts.append(("resolver", resolver_reason(cell.details, cell.reason)))
    if cell.status == "unavailable":
        facts += [("missing", fact) for fact in unavailable_facts(cell.details, cell.reason)]
    facts += [("axes", ", ".join(f"{k}={v or 'none'}" for k, v in cell.axes.items())),
              ("build key", cell.build_key)]
    facts += [("problem", problem) for problem in cell.problems]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    parts = [f'<section class="cell s-{status}" id="{escape(anchor(cell.id))}">',
             f"<h3>{escape(cell.id)}</h3>", f"<dl>{dl}</dl>"]
    if lines := detail_lines(cell):
        parts.append("<pre>" + escape("\n".join(lines)) + "</pre>")
    if cell.suites:
        parts.append(_suites(cell.suites))
    parts.append(f"<p>Reproduce: <code>{escape(cell.reproduce)}</code></p></section>")
    return "\n".join(parts)


def _suites(suites: Iterable[SuiteSummary]) -> str:
    header = ["suite", "status", "passed", "failed", "errors", "skipped", "collected",
              "reason / problems", "flaky"]
    rows = [_tr(header, "th")]
    for s in suites:
        why = "; ".join(w for w in dict.fromkeys([s.reason, *s.problems]) if w) or "—"
        rows.append(_tr([s.name, s.status, str(s.passed), str(s.failed), str(s.errors),
                         str(s.skipped), str(s.collected), why, ", ".join(s.flaky) or "—"]))
    return '<table class="suites">' + "\n".join(rows) + "</table>"
