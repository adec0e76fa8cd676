"""compatibility.html: one self-contained page (inline CSS, no script, nothing fetched).

The matrix is drawn as coloured grids, the same pivot as the Markdown; every grid entry
links to the details of its cell further down. Every piece of text is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from compatmatrix.report.declared import declared_ranges
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

__all__ = ["GLYPHS", "mark_svg", "render"]

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
.s-missing{background:#fff6bf}.s-resolvable{background:#ddf4ff}
svg.mark{vertical-align:-2px}.s-not_planned{background:#fff;color:#8c959f}
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


# The marks drawn as inline SVG, never as emoji: a machine without an emoji font (headless
# Chromium on a bare Debian) shows an emoji as an empty box. Each is a filled shape in its
# status colour with a white glyph, so it reads without colour too (the word is beside it).
GLYPHS = {
    "passed": ("circle", "#1a7f37", "M4.5 8.2l2.3 2.3 4.7-5"),
    "unverified": ("triangle", "#bf8700", "M8 5v3.6M8 10.6v.9"),
    "failed": ("circle", "#cf222e", "M5.4 5.4l5.2 5.2M10.6 5.4l-5.2 5.2"),
    "incompatible": ("circle", "#8250df", "M4.5 8h7"),
    "unavailable": ("square", "#6e7781", "M5 8h6"),
    "resolvable": ("circle", "#0969da", "M6.2 9.8l3.6-3.6M5 7.4l-.8.8a1.8 1.8 0 002.6 2.6l.8-.8"
                   "M11 8.6l.8-.8a1.8 1.8 0 00-2.6-2.6l-.8.8"),
    "error": ("diamond", "#a40e26", "M8 4.6v4M8 10.6v.9"),
    "missing": ("circle", "#9a6700", "M6.3 6.3a1.8 1.8 0 113 1.3c-.8.5-1.3.8-1.3 1.7M8 11v.6"),
    "not_planned": ("dot", "#8c959f", ""),
}
_SHAPES = {
    "circle": '<circle cx="8" cy="8" r="7.5" fill="{c}"/>',
    "square": '<rect x=".5" y=".5" width="15" height="15" rx="3" fill="{c}"/>',
    "triangle": '<path d="M8 .6L15.6 15H.4z" fill="{c}"/>',
    "diamond": '<path d="M8 .3L15.7 8 8 15.7.3 8z" fill="{c}"/>',
    "dot": '<circle cx="8" cy="8" r="2" fill="{c}"/>',
}


def mark_svg(status: str) -> str:
    """The mark of ``status`` as an inline SVG (labelled for screen readers)."""
    shape, colour, glyph = GLYPHS.get(status, GLYPHS["error"])
    path = (f'<path d="{glyph}" fill="none" stroke="#fff" stroke-width="1.8" '
            'stroke-linecap="round" stroke-linejoin="round"/>') if glyph else ""
    return (f'<svg class="mark" width="14" height="14" viewBox="0 0 16 16" role="img" '
            f'aria-label="{escape(status)}">{_SHAPES[shape].format(c=colour)}{path}</svg>')


def render(report: Report) -> str:
    body = [_header(report), _grids(report), _together(report), _declared(report),
            _details(report)]
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
    legend = "".join(f'<li class="s-{status}">{mark_svg(status)} {escape(meaning)}</li>'
                     for status, (_, meaning) in MARKS.items())
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
    mark = mark_svg(status)
    if cell is None:
        return f'<td class="s-{status}" title="not planned">{mark}</td>'
    word = status
    if status in ("failed", "error") and cell.stage:
        word = f"{status} ({short_stage(cell.stage)})"
    return (f'<td class="s-{status}"><a href="#{escape(anchor(cell.id))}" '
            f'title="{escape(cell.id)}: {escape(cell.reason or status)}">'
            f"{mark} {escape(word)}</a></td>")


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


def _declared(report: Report) -> str:
    ranges = declared_ranges(report)
    if not ranges:
        return ""
    rows = [_tr(["package", "declared", "passed", "failed", "verdict", "suggest"], "th")]
    for entry in ranges:
        rows.append(_tr([entry.package,
                         entry.declared + (f" (extra {entry.extra})" if entry.extra else ""),
                         ", ".join(v for v, _ in entry.passed) or "—",
                         ", ".join(v for v, _ in entry.failed) or "—",
                         entry.verdict, entry.suggest or "—"]))
    notes = "".join(f"<li>{escape(f)}</li>" for entry in ranges for f in entry.findings)
    return ("<h2>Declared vs measured</h2>\n<table>\n" + "\n".join(rows) + "\n</table>"
            + (f"\n<ul>{notes}</ul>" if notes else ""))


def _tr(cells: Iterable[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{escape(c)}</{tag}>" for c in cells) + "</tr>"


def _details(report: Report) -> str:
    return "\n".join(["<h2>Cells</h2>", *(_cell(cell) for cell in report.cells)])


def _cell(cell: CellReport) -> str:
    status = shown_status(cell)
    facts = [("stage", cell.stage or "—"), ("reason", cell.reason or "—")]
    if cell.status == "incompatible":
        facts.append(("resolver", resolver_reason(cell.details, cell.reason)))
    if cell.status == "unavailable":
        facts += [("missing", fact) for fact in unavailable_facts(cell.details, cell.reason)]
    facts += [("axes", ", ".join(f"{k}={v or 'none'}" for k, v in cell.axes.items())),
              ("build key", cell.build_key)]
    if cell.artifact_text:
        facts.append(("wheel tested", cell.artifact_text))
    facts += [("problem", problem) for problem in cell.problems]
    dl = f"<dt>status</dt><dd>{mark_svg(status)} {escape(cell.status)}</dd>" + "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
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
