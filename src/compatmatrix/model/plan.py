"""Axes -> cells. Pure: no file system, no subprocess, fast for tens of thousands of cells.

Semantics (modelled on GitHub Actions' matrix):

1. the Cartesian product of the axes, in axis order, values in the order written;
2. minus every cell that matches an ``exclude`` entry (an entry matches when each axis it
   names matches: equal value, a PEP 440 specifier containing the cell's exact version,
   or a glob over CUDA variants);
3. plus each ``include`` entry as one more cell, appended in file order. Axes an include
   does not name are ``none``. Includes come after excludes, so an include can bring back an
   excluded combination; an include equal to a cell already planned adds nothing.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from compatmatrix._text import short_hash
from compatmatrix.model.spec import DEFAULT_RESOLUTION, NONE, PREINSTALLED, Matrix, is_specifier

__all__ = ["Cell", "build_key", "cell_id", "matches", "plan_cells"]


@dataclass(frozen=True)
class Cell:
    """One combination of axis values. ``axes`` keeps the matrix's axis order."""

    id: str
    axes: tuple[tuple[str, str], ...]
    build_key: str

    def value(self, axis: str) -> str | None:
        return dict(self.axes).get(axis)

    @property
    def python(self) -> str:
        value = self.value("python")
        assert value is not None
        return value

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "axes": {name: (None if value == NONE else value) for name, value in self.axes},
            "build_key": self.build_key,
        }


def plan_cells(matrix: Matrix) -> list[Cell]:
    names = [axis.name for axis in matrix.axes]
    combos: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    excludes = [dict(entry) for entry in matrix.exclude]
    for combo in itertools.product(*(axis.values for axis in matrix.axes)):
        values = dict(zip(names, combo, strict=False))
        if any(matches(entry, values) for entry in excludes):
            continue
        combos.append(combo)
        seen.add(combo)
    for entry in matrix.include:
        given = dict(entry)
        combo = tuple(given.get(name, DEFAULT_RESOLUTION if name == "resolution" else NONE)
                      for name in names)
        if combo not in seen:
            combos.append(combo)
            seen.add(combo)
    return _name_cells(matrix, names, combos)


def _name_cells(matrix: Matrix, names: list[str], combos: list[tuple[str, ...]]) -> list[Cell]:
    ids = [cell_id(zip(names, combo, strict=False)) for combo in combos]
    counts: dict[str, int] = {}
    for ident in ids:
        counts[ident] = counts.get(ident, 0) + 1
    cells = []
    for ident, combo in zip(ids, combos, strict=False):
        axes = tuple(zip(names, combo, strict=False))
        if counts[ident] > 1:  # two values that read the same once made safe
            ident = f"{ident}-{short_hash(repr(axes))}"
        cells.append(Cell(ident, axes, build_key(matrix, dict(axes))))
    return cells


def matches(entry: Mapping[str, str], values: Mapping[str, str]) -> bool:
    """True when every axis the entry names matches the cell's value."""
    return all(_value_matches(pattern, values.get(axis, NONE)) for axis, pattern in entry.items())


def _value_matches(pattern: str, value: str) -> bool:
    if pattern == value:
        return True
    if is_specifier(pattern) and value != NONE and not is_specifier(value):
        try:
            return SpecifierSet(pattern).contains(Version(value), prereleases=True)
        except InvalidVersion:
            return False
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(value, pattern)
    return False


_SPEC_WORDS = (("===", "eq"), ("==", "eq"), ("!=", "ne"), ("<=", "le"), (">=", "ge"),
               ("~=", "compat"), ("<", "lt"), (">", "gt"), (",", "_"), ("*", "x"))
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str) -> str:
    for symbol, word in _SPEC_WORDS:
        text = text.replace(symbol, word)
    return _UNSAFE.sub("_", text).strip("_") or "_"



def cell_id(axes: Iterable[tuple[str, str]]) -> str:
    """``py3.11-torch2.13.0-cpu-vllm0.30.0``: axes in order, 'none' values left out."""
    parts = []
    for name, value in axes:
        if value == NONE:
            continue
        if name == "python":
            parts.append(f"py{value}")
        elif name == "cuda":
            parts.append(_safe(value))
        elif name == "extras":
            parts.append("extras-" + _safe(value.replace("+", ".")))
        elif name == "resolution":
            if value != DEFAULT_RESOLUTION:  # the default stays out of ids
                parts.append(_safe(value))
        else:
            parts.append(_safe(name) + _safe(value))
    return "-".join(parts) or "empty"


def build_key(matrix: Matrix, values: Mapping[str, str]) -> str:
    """What the wheel depends on: Python ABI (or abi3), torch, CUDA variant.

    vLLM, extras and other package axes never enter it. The source hash and build settings
    are added by the build stage, which reads files; planning stays pure.
    """
    torch = values.get("torch", NONE)
    abi = f"cp{values['python'].replace('.', '')}"
    abi3 = matrix.project.abi3 if matrix.project is not None else None
    # a preinstalled torch's version is only known when building: keep the key per-Python
    if (abi3 is not None and torch not in (NONE, PREINSTALLED) and not is_specifier(torch)
            and abi3.contains(Version(torch), prereleases=True)):
        abi = "abi3"
    parts = [abi]
    if torch != NONE:
        parts.append("torch" + _safe(torch))
    if "cuda" in values:
        parts.append(_safe(values["cuda"]))
    return "-".join(parts)
