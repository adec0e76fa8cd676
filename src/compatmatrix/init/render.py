"""The text of the files ``compatmatrix init`` writes: a commented matrix.yaml, a noxfile and
a tox.toml (or the lines to add to a project's own tox configuration).

Pure: a :class:`Draft` (what init decided, and why) in, text out. Every key gets a short
comment, inline when it fits in 100 columns, else on the line above.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from compatmatrix import __version__

__all__ = [
    "Axis",
    "Draft",
    "Exclude",
    "Suite",
    "Variant",
    "render_matrix",
    "render_noxfile",
    "render_tox_keys",
    "render_tox_toml",
    "tox_requirement",
]

NOX_REQUIREMENT = "nox>=2025.2.9"
TOX_REQUIREMENT = "tox>=4.29"  # tox_extend_envs
WIDTH = 100
COMMENT_COLUMN = 32
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n"})


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[str, ...]
    comment: str
    quoted: bool = True  # versions are always quoted ("3.10" is not 3.1)


@dataclass(frozen=True)
class Exclude:
    entry: tuple[tuple[str, str], ...]  # (axis, value) pairs
    comment: str


@dataclass(frozen=True)
class Variant:
    """An ``indexes`` entry: where one torch variant comes from."""

    name: str
    index: str
    comment: str


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    workers_auto: bool
    comment: str


@dataclass(frozen=True)
class Draft:
    """What init decided for matrix.yaml, each value with the reason that goes beside it."""

    title: str
    import_name: str
    import_comment: str
    axes: tuple[Axis, ...]
    suggested_axes: tuple[Axis, ...] = ()  # written commented out
    excludes: tuple[Exclude, ...] = ()
    variants: tuple[Variant, ...] = ()
    suites: tuple[Suite, ...] = ()
    missing_suites: str = ""  # why there are no suites (then an example is commented out)
    gate_cell: tuple[tuple[str, str], ...] = ()
    ci_install: str = ""
    notes: tuple[str, ...] = ()


def render_matrix(draft: Draft) -> str:
    words = {"python": "Python", "torch": "torch", "cuda": "CUDA"}
    combination = " x ".join(words.get(axis.name, axis.name) for axis in draft.axes)
    out = [
        f"# The compatibility matrix of {draft.title}: which {combination} "
        + ("combinations work." if len(draft.axes) > 1 else "versions work."),
        f"# Written by `compatmatrix init` (compatmatrix {__version__}); edit it freely. "
        "`compatmatrix plan`",
        "# lists its cells, `nox -s matrix` runs them; every key is documented in "
        "compatmatrix's README",
        '# ("matrix.yaml reference").',
    ]
    for note in draft.notes:
        out += _comment("note: " + note, "")
    out += ["", *_line("version: 1", "the format of this file"), ""]
    out += _line("project:", "the package under test")
    out += _line("  path: .", "its folder (pyproject.toml, setup.py), relative to this file")
    out += _line(f"  import: {_plain(draft.import_name)}", draft.import_comment)
    out += ["", *_line("axes:", "every combination of their values is a cell")]
    for axis in draft.axes:
        out += _line(f"  {axis.name}: {_list(axis.values, quoted=axis.quoted)}", axis.comment)
    for axis in draft.suggested_axes:
        out += _line(f"  # {axis.name}: {_list(axis.values, quoted=axis.quoted)}",
                     axis.comment)
    if draft.excludes:
        out += ["", *_line("exclude:", "combinations left out")]
        for exclude in draft.excludes:
            out += _line(f"  - {_cell(exclude.entry)}", exclude.comment)
    out += ["", *_line("indexes:", "where each torch variant comes from")]
    for variant in draft.variants:
        out += _line(f"  {variant.name}: {variant.index}", variant.comment)
    out += _line("  find_links: [pip-config]",
                 "also where pip finds wheels (PIP_FIND_LINKS, pip.conf)")
    out.append("")
    if draft.suites:
        out += _line("suites:", "pytest runs of each cell, in this order")
        for suite in draft.suites:
            workers = ", workers: auto" if suite.workers_auto else ""
            out += _line(f"  {_plain(suite.name)}: {{paths: [{_plain(suite.path)}]{workers}}}",
                         suite.comment)
    else:
        out += _line("# suites:", draft.missing_suites)
        out += _line("#   tests: {paths: [tests], workers: auto}",
                     "a folder of test_*.py files, run with pytest-xdist")
    out.append("")
    out += _line("# gate:", "the release gate (nox -s gate); uncomment to use it")
    out += _line("#   required:", "cells that must pass")
    out.append(f"#     - {_cell(draft.gate_cell)}")
    if draft.ci_install:
        out.append("")
        key = f"ci: {{install: {_quote(draft.ci_install)}}}"
        comment = "where CI installs compatmatrix from (as noxfile.py says)"
        out += _line(key, comment)
    return "\n".join(out) + "\n"


def render_noxfile(requirement: str) -> str:
    """A noxfile that registers one session per cell plus matrix, report, gate and ci; its
    PEP 723 block lets nox (>= 2025.2.9) install compatmatrix when the running Python lacks it."""
    return (
        "# /// script\n"
        "# # nox installs these into .nox/ when the Python running it lacks them "
        "(nox >= 2025.2.9)\n"
        "# dependencies = [\n"
        f"#     {json.dumps(NOX_REQUIREMENT)},\n"
        f"#     {json.dumps(requirement)},\n"
        "# ]\n"
        "# ///\n"
        "import compatmatrix.noxsupport as cm\n"
        "\n"
        'cm.register_cell_sessions("matrix.yaml")\n'
    )


def tox_requirement(requirement: str) -> str:
    """compatmatrix's requirement with the ``tox`` extra (the plugin's tox)."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        return requirement
    parsed.extras.add("tox")
    return str(parsed)


def render_tox_keys(syntax: str, requirement: str, matrix: str) -> str:
    """The two keys of tox's core configuration that give a project compatmatrix's
    environments, in ``syntax`` ("ini" or "toml"): ``requires`` (tox installs them into
    .tox/.tox and runs itself from there when the running tox lacks them) and
    ``compatmatrix_matrix``."""
    requires = (TOX_REQUIREMENT, tox_requirement(requirement))
    if syntax == "ini":
        return ("requires =\n" + "".join(f"    {r}\n" for r in requires)
                + f"compatmatrix_matrix = {matrix}\n")
    return (f"requires = [{', '.join(json.dumps(r) for r in requires)}]\n"
            f"compatmatrix_matrix = {json.dumps(matrix)}\n")


def render_tox_toml(requirement: str, matrix: str) -> str:
    """A tox.toml that gives tox one environment per cell of ``matrix``, plus compat-matrix,
    compat-report, compat-gate and compat-ci."""
    about = (f"compatmatrix's tox environments: `tox l` lists one per cell of {matrix}, plus "
             "compat-matrix (every cell, then the report), compat-report, compat-gate and "
             "compat-ci. tox installs what `requires` names into .tox/ when the tox running "
             "it lacks it. Written by `compatmatrix init`; add your own environments below.")
    return "\n".join(_comment(about, "")) + "\n" + render_tox_keys("toml", requirement, matrix)


def _cell(entry: Sequence[tuple[str, str]]) -> str:
    """``{python: "3.12", torch: "2.6.0", cuda: cpu}``: versions quoted, variants bare."""
    return "{" + ", ".join(f"{name}: {value if name == 'cuda' else _quote(value)}"
                           for name, value in entry) + "}"


def _line(code: str, comment: str) -> list[str]:
    """``code`` with ``comment`` beside it (at COMMENT_COLUMN when there is room), or above
    it when the line would pass WIDTH."""
    if not comment:
        return [code]
    for column in (max(COMMENT_COLUMN, len(code) + 2), len(code) + 2):
        inline = code.ljust(column) + "# " + comment
        if len(inline) <= WIDTH:
            return [inline]
    indent = code[: len(code) - len(code.lstrip())]
    if code.lstrip().startswith("#"):  # a commented-out key: its comment stays a comment
        indent += "# "
    return [*_comment(comment, indent), code]


def _comment(text: str, indent: str) -> list[str]:
    width = WIDTH - len(indent) - 2
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return [f"{indent}# {line}" for line in lines or [""]]


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _plain(text: str) -> str:
    """A bare YAML word where that reads as the same string, else quoted."""
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return _quote(text)


def _list(values: Sequence[str], *, quoted: bool) -> str:
    return "[" + ", ".join(_quote(v) if quoted else _plain(v) for v in values) + "]"
