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
import functools
import itertools
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from compatmatrix._text import short_hash
from compatmatrix.model.spec import DEFAULT_RESOLUTION, NONE, PREINSTALLED, Matrix, is_specifier

__all__ = ["Cell", "build_key", "cell_id", "matches", "plan_cells", "stable_build_torch"]


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
    """The cells of ``matrix``, in the order of the semantics above.

    Near-linear in the number of combinations: every exclude entry is compiled once, per
    axis value, into a bit mask (bit ``i``: entry ``i`` still matches a cell with this
    value), so a combination is excluded when the AND of its values' masks is not zero and
    is tested against no entry one by one; ids and build keys are computed once per
    distinct value, never per cell.
    """
    names = [axis.name for axis in matrix.axes]
    combos: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    masks = _exclude_masks(matrix)
    if masks is None:  # no entry can match: every combination is a cell
        combos = list(itertools.product(*(axis.values for axis in matrix.axes)))
        seen.update(combos)
    else:
        for pairs in itertools.product(*(tuple(zip(axis.values, axis_masks, strict=True))
                                         for axis, axis_masks in zip(matrix.axes, masks,
                                                                     strict=True))):
            left = -1  # every entry, until an axis value rules it out
            for _, mask in pairs:
                left &= mask
                if not left:
                    break
            if left:
                continue
            combo = tuple(value for value, _ in pairs)
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


def _exclude_masks(matrix: Matrix) -> list[list[int]] | None:
    """Per axis, per value (in order): the exclude entries a cell with that value may still
    match, as a bit mask; None when no entry matches any combination."""
    entries = [dict(entry) for entry in matrix.exclude]
    axes = {axis.name: axis for axis in matrix.axes}
    live = []
    for entry in entries:  # an entry naming an axis the matrix lacks compares with none
        if all(axis in axes or _value_matches(pattern, NONE) for axis, pattern in entry.items()):
            live.append({axis: p for axis, p in entry.items() if axis in axes})
    if not live:
        return None
    everything = (1 << len(live)) - 1
    masks: list[list[int]] = []
    for axis in matrix.axes:
        named = [(bit, entry[axis.name]) for bit, entry in enumerate(live) if axis.name in entry]
        free = everything & ~sum(1 << bit for bit, _ in named)  # entries not naming the axis
        values = _AxisValues(axis.values)
        by_pattern: dict[str, int] = {}
        for bit, pattern in named:
            by_pattern[pattern] = by_pattern.get(pattern, 0) | (1 << bit)
        axis_masks = [free] * len(axis.values)
        for pattern, bits in by_pattern.items():
            for index in values.matching(pattern):
                axis_masks[index] |= bits
        masks.append(axis_masks)
    return masks


class _AxisValues:
    """An axis's values, indexed by value: a plain pattern finds its values without a scan."""

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values
        self.index: dict[str, list[int]] = {}
        for index, value in enumerate(values):
            self.index.setdefault(value, []).append(index)

    def matching(self, pattern: str) -> list[int]:
        """The indices of the values ``pattern`` matches (as _value_matches decides)."""
        if not is_specifier(pattern) and not any(ch in pattern for ch in "*?["):
            return self.index.get(pattern, [])  # only an equal value matches
        return [i for i, value in enumerate(self.values) if _value_matches(pattern, value)]


@functools.lru_cache(maxsize=4096)
def _specifier_set(pattern: str) -> SpecifierSet | None:
    try:
        return SpecifierSet(pattern)
    except InvalidSpecifier:
        return None


@functools.lru_cache(maxsize=4096)
def _version(value: str) -> Version | None:
    """``value`` as a version; None for none, a specifier, or what is not a version."""
    if value == NONE or is_specifier(value):
        return None
    try:
        return Version(value)
    except InvalidVersion:
        return None


def _name_cells(matrix: Matrix, names: list[str], combos: list[tuple[str, ...]]) -> list[Cell]:
    # each axis's part of an id, once per distinct value: the axes' values, and what the
    # includes bring (none for the axes an include does not name)
    parts: list[dict[str, str]] = [{} for _ in names]
    for position, (name, axis) in enumerate(zip(names, matrix.axes, strict=True)):
        default = DEFAULT_RESOLUTION if name == "resolution" else NONE
        extra = {dict(entry).get(name, default) for entry in matrix.include}
        parts[position] = {value: _id_part(name, value) for value in (*axis.values, *extra)}
    ids = ["-".join(filter(None, map(dict.__getitem__, parts, combo))) or "empty"
           for combo in combos]
    counts: dict[str, int] = {}
    for ident in ids:
        counts[ident] = counts.get(ident, 0) + 1
    keys = _BuildKeys(matrix, names)
    cells = []
    for ident, combo in zip(ids, combos, strict=True):
        axes = tuple(zip(names, combo, strict=True))
        if counts[ident] > 1:  # two values that read the same once made safe
            ident = f"{ident}-{short_hash(repr(axes))}"
        cells.append(Cell(ident, axes, keys(combo)))
    return cells


class _BuildKeys:
    """build_key per distinct (python, torch, cuda): vLLM and other axes never enter it."""

    def __init__(self, matrix: Matrix, names: list[str]) -> None:
        self.matrix = matrix
        self.names = [name for name in ("python", "torch", "cuda") if name in names]
        # a tuple of the three values (itemgetter of one index would return the value)
        self.pick = operator.itemgetter(*(names.index(n) for n in self.names), 0)
        self.known: dict[tuple[str, ...], str] = {}

    def __call__(self, combo: tuple[str, ...]) -> str:
        values: tuple[str, ...] = self.pick(combo)
        key = self.known.get(values)
        if key is None:
            key = self.known[values] = build_key(self.matrix,
                                                 dict(zip(self.names, values, strict=False)))
        return key


def matches(entry: Mapping[str, str], values: Mapping[str, str]) -> bool:
    """True when every axis the entry names matches the cell's value."""
    return all(_value_matches(pattern, values.get(axis, NONE)) for axis, pattern in entry.items())


def _value_matches(pattern: str, value: str) -> bool:
    if pattern == value:
        return True
    if is_specifier(pattern) and value != NONE and not is_specifier(value):
        version, specifier = _version(value), _specifier_set(pattern)
        return (version is not None and specifier is not None
                and specifier.contains(version, prereleases=True))
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
    return "-".join(filter(None, (_id_part(name, value) for name, value in axes))) or "empty"


def _id_part(name: str, value: str) -> str:
    """One axis's part of a cell id; "" for none (left out)."""
    if value == NONE:
        return ""
    if name == "python":
        return f"py{value}"
    if name == "cuda":
        return _safe(value)
    if name == "extras":
        return "extras-" + _safe(value.replace("+", "."))
    if name == "resolution":  # the default stays out of ids
        return "" if value == DEFAULT_RESOLUTION else _safe(value)
    return _safe(name) + _safe(value)


def build_key(matrix: Matrix, values: Mapping[str, str]) -> str:
    """What the wheel depends on: Python ABI (or abi3), torch, CUDA variant.

    vLLM, extras and other package axes never enter it. The source hash and build settings
    are added by the build stage, which reads files; planning stays pure. A stable-ABI
    project (``project.torch_abi: stable``) leaves the torch version out and keeps only the
    CUDA major (``abi3-torchstable-cu13``): one wheel, tested under every torch.
    """
    torch = values.get("torch", NONE)
    abi = f"cp{values['python'].replace('.', '')}"
    project = matrix.project
    abi3 = project.abi3 if project is not None else None
    stable = (project is not None and project.torch_abi == "stable"
              and torch not in (NONE, PREINSTALLED))
    version = stable_build_torch(matrix, ()) if stable else torch
    if stable and version is None:
        version = torch
    # a preinstalled torch's version is only known when building: keep the key per-Python
    if (abi3 is not None and version not in (None, NONE, PREINSTALLED)
            and not is_specifier(str(version))
            and abi3.contains(Version(str(version)), prereleases=True)):
        abi = "abi3"
    parts = [abi]
    if stable:
        parts.append("torchstable")
        if "cuda" in values:
            parts.append(_cuda_major(values["cuda"]))
        return "-".join(parts)
    if torch != NONE:
        parts.append("torch" + _safe(torch))
    if "cuda" in values:
        parts.append(_safe(values["cuda"]))
    return "-".join(parts)


def _cuda_major(variant: str) -> str:
    """cu130 -> cu13, cu128 -> cu12: a stable wheel links the CUDA runtime of one major."""
    found = re.fullmatch(r"cu(\d+)(\d)", variant)
    return _safe(f"cu{found[1]}" if found else variant)


def stable_build_torch(matrix: Matrix, torches: Iterable[str]) -> str | None:
    """The torch a stable-ABI wheel is built against: ``project.stable_build_torch``, else the
    lowest exact torch among ``torches`` (the torch values of the cells sharing the build key;
    with none given, of the whole torch axis), so that its shims exist in every torch the
    wheel is tested under. None when there is no exact version to build against."""
    project = matrix.project
    if project is not None and project.stable_build_torch is not None:
        return project.stable_build_torch
    values = list(torches) or [v for axis in matrix.axes if axis.name == "torch"
                               for v in axis.values]
    versions = [Version(v) for v in values if _version(v) is not None and v != PREINSTALLED]
    return str(min(versions)) if versions else None
