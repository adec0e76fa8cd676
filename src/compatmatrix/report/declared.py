"""Declared vs measured: the ranges a package declares for its package axes, set against the
versions measured passing and failing.

For every package axis the package's own metadata constrains (its requirements and those of
the extras in play, as the built wheel's METADATA says; one entry per distinct declared
specifier), the versions measured are the ones the cells resolved. A failure counts against a
version only when cells that differ in that axis alone pass and fail: a cell that fails for
every version of the axis says nothing about the axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compatmatrix.report.model import CellReport, Report

__all__ = ["VERDICTS", "DeclaredRange", "declared_ranges"]

# In order of weight: the verdict of an entry is the first that applies.
VERDICTS = ("admits-failing", "untested-bound", "passes-outside", "holds")


@dataclass(frozen=True)
class DeclaredRange:
    package: str
    declared: str  # the specifier as declared
    extra: str  # the extra it comes from; "" for the package's own requirements
    passed: tuple[tuple[str, tuple[str, ...]], ...]  # version -> the cells that pass with it
    failed: tuple[tuple[str, tuple[str, ...]], ...]  # version -> cells failing because of it
    verdict: str
    findings: tuple[str, ...]  # every verdict that applies, with what it is about
    suggest: str  # the narrowest specifier that admits every passing version, no failing one

    @property
    def admits_failing(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The failing versions the declared range admits, with their cells."""
        spec = SpecifierSet(self.declared)
        return tuple((v, cells) for v, cells in self.failed
                     if spec.contains(v, prereleases=True))

    def to_json(self) -> dict[str, object]:
        return {"package": self.package, "declared": self.declared, "extra": self.extra or None,
                "passed": {v: list(c) for v, c in self.passed},
                "failed": {v: list(c) for v, c in self.failed},
                "verdict": self.verdict, "findings": list(self.findings),
                "suggest": self.suggest}


def declared_ranges(report: Report) -> tuple[DeclaredRange, ...]:
    axes = {canonicalize_name(a): a for a in report.axes
            if a not in ("python", "cuda", "extras", "resolution")}
    entries: dict[tuple[str, str, str], None] = {}
    for cell in report.cells:
        for text, extra in cell.declared:
            req = _requirement(text)
            if req is not None and canonicalize_name(req.name) in axes and req.specifier:
                entries[(axes[canonicalize_name(req.name)], str(req.specifier), extra)] = None
    return tuple(_judge(report, axis, spec, extra) for axis, spec, extra in sorted(entries))


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _version(cell: CellReport, axis: str) -> str | None:
    """The version of ``axis`` the cell measured: what it resolved, else its axis value."""
    value = cell.resolved.get(canonicalize_name(axis)) or cell.axes.get(axis)
    try:
        return str(Version(str(value)).public) if value else None
    except InvalidVersion:
        return None


def _judge(report: Report, axis: str, declared: str, extra: str) -> DeclaredRange:
    spec = SpecifierSet(declared)
    passed: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    for cell in report.cells:
        version = _version(cell, axis)
        if version is None or not _declares(cell, axis, spec, extra):
            continue
        if cell.verified:
            passed.setdefault(version, []).append(cell.id)
        elif cell.status == "failed" and _attributed(report, cell, axis):
            failed.setdefault(version, []).append(cell.id)
    inside_failed = sorted((v for v in failed if spec.contains(v, prereleases=True)), key=Version)
    outside_passed = sorted((v for v in passed if not spec.contains(v, prereleases=True)),
                            key=Version)
    findings = []
    for version in inside_failed:
        findings.append(f"admits-failing: {axis} {version} is inside {declared} and fails "
                        f"({', '.join(sorted(failed[version]))})")
    measured = {*passed, *failed}
    for bound in _bounds(spec):
        if not any(Version(v).release[:2] == bound.release[:2] for v in measured):
            findings.append(f"untested-bound: {declared} admits {axis} {bound}, and no cell "
                            f"measured a {bound.major}.{bound.minor} release")
    for version in outside_passed:
        findings.append(f"passes-outside: {axis} {version} passes outside {declared} "
                        f"({', '.join(sorted(passed[version]))}): the range may be too tight")
    verdict = next((v for v in VERDICTS if any(f.startswith(v) for f in findings)), "holds")
    return DeclaredRange(
        package=axis, declared=declared, extra=extra,
        passed=tuple((v, tuple(sorted(passed[v]))) for v in sorted(passed, key=Version)),
        failed=tuple((v, tuple(sorted(failed[v]))) for v in sorted(failed, key=Version)),
        verdict=verdict, findings=tuple(findings),
        suggest=suggest(passed, failed))


def _declares(cell: CellReport, axis: str, spec: SpecifierSet, extra: str) -> bool:
    """Whether the cell's wheel declared this range (a wheel's requirements may differ by
    build key, and an extra's only count where the extra is in play)."""
    for text, origin in cell.declared:
        req = _requirement(text)
        if (req is not None and origin == extra and req.specifier == spec
                and canonicalize_name(req.name) == canonicalize_name(axis)):
            return True
    return False


def _attributed(report: Report, cell: CellReport, axis: str) -> bool:
    """A failing cell counts against its ``axis`` version only when a cell that differs from
    it in that axis alone passes."""
    others = {name: value for name, value in cell.axes.items() if name != axis}
    return any(c.verified and c.axes.get(axis) != cell.axes.get(axis)
               and {n: v for n, v in c.axes.items() if n != axis} == others
               for c in report.cells)


def _bounds(spec: SpecifierSet) -> list[Version]:
    bounds = []
    for item in spec:
        if item.operator in (">=", "<=", "==", "~=", "===") and "*" not in item.version:
            try:
                bounds.append(Version(item.version))
            except InvalidVersion:
                continue
    return bounds


def suggest(passed: Iterable[str], failed: Iterable[str]) -> str:
    """The narrowest specifier admitting every passing version and no failing one, bounded
    at measured versions: ``>=2.11.0,<=2.13.0,!=2.12.0``; "" when nothing passed."""
    good = sorted({Version(v) for v in passed})
    if not good:
        return ""
    bad = sorted({Version(v) for v in failed})
    parts = [f">={good[0]}", f"<={good[-1]}"] if len(good) > 1 else [f"=={good[0]}"]
    parts += [f"!={v}" for v in bad if good[0] < v < good[-1]]
    return ",".join(parts)


def lines(ranges: Sequence[DeclaredRange]) -> list[str]:
    """The report's section, in Markdown."""
    if not ranges:
        return []
    out = ["## Declared vs measured", "",
           "| package | declared | passed | failed | verdict | suggest |",
           "|---|---|---|---|---|---|"]
    for entry in ranges:
        declared = entry.declared + (f" (extra {entry.extra})" if entry.extra else "")
        passed = ", ".join(v for v, _ in entry.passed) or "-"
        failed = ", ".join(v for v, _ in entry.failed) or "-"
        suggested = f"`{entry.suggest}`" if entry.suggest else "-"
        out.append(f"| {entry.package} | `{declared}` | {passed} | {failed} | "
                   f"{entry.verdict} | {suggested} |")
    notes = [f"- {finding}" for entry in ranges for finding in entry.findings]
    return [*out, "", *notes, ""] if notes else [*out, ""]
