"""The release gate: may this release go ahead, given the results and the baseline?

It fails (exit 1, one line per reason, each with the command that reproduces it) when a
cell required by matrix.yaml is not ``passed``, when a cell found no given or published wheel
(failed at ``select``: the release lacks it), or when a cell that passed in the baseline
(by default the committed reports/compatibility.json) now does not. New cells and
``incompatible`` cells are reported without failing, unless matrix.yaml's ``gate`` says
otherwise. Tests quarantined in matrix.yaml (until their expiry date) do not fail a cell.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from compatmatrix.host.uv import conflict_clause
from compatmatrix.model.plan import matches
from compatmatrix.model.spec import NONE, Gate, Quarantine
from compatmatrix.report.declared import declared_ranges
from compatmatrix.report.model import CellReport, Report

__all__ = ["GateResult", "Verdict", "evaluate"]


@dataclass(frozen=True)
class Verdict:
    cell: str
    message: str
    reproduce: str = ""

    def line(self) -> str:
        text = f"{self.cell}: {self.message}"
        return text + (f"\n    reproduce: {self.reproduce}" if self.reproduce else "")


@dataclass(frozen=True)
class GateResult:
    failures: tuple[Verdict, ...]
    notes: tuple[Verdict, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def evaluate(gate: Gate, current: Report, baseline: Report | None,
             today: dt.date) -> GateResult:
    failures: list[Verdict] = []
    notes: list[Verdict] = []
    quarantined = _QuarantineCheck(gate.quarantine, today)
    failures += _required(gate, current, quarantined)
    # a release without a wheel for a cell of its matrix does not ship, required or not
    failures += [Verdict(cell.id, f"the release has no wheel for this cell: {cell.reason}",
                         cell.reproduce) for cell in current.cells
                 if cell.status == "failed" and cell.stage == "select"
                 and all(f.cell != cell.id for f in failures)]
    failures += [Verdict(cell.id, f"the evidence cannot be trusted: {problem}", cell.reproduce)
                 for cell in current.cells for problem in cell.evidence]
    if gate.declared_ranges:  # a declared range that admits a version measured failing
        for entry in declared_ranges(current):
            for version, cells in entry.admits_failing:
                found = current.cell(cells[0])
                failures.append(Verdict(
                    entry.package,
                    f"the declared range {entry.declared}"
                    + (f" (extra {entry.extra})" if entry.extra else "")
                    + f" admits {entry.package} {version}, which fails in {', '.join(cells)}"
                    + (f"; measured to work: {entry.suggest}" if entry.suggest else ""),
                    found.reproduce if found is not None else ""))
    for cell in current.cells:
        before = baseline.cell(cell.id) if baseline is not None else None
        passed = _effectively_passed(cell, quarantined)
        if before is None:
            if baseline is not None:
                (failures if gate.fail_on_new and not passed else notes).append(
                    Verdict(cell.id, f"new cell: {_describe(cell)}", _repro(cell, passed)))
        elif before.status == "passed" and not passed:
            # failing is a regression; unavailable/incompatible/missing is a loss of coverage
            regressed = cell.status in ("failed", "error", "passed")
            (failures if regressed else notes).append(Verdict(
                cell.id, f"{'regression' if regressed else 'no longer verified'}: passed in "
                f"the baseline, now {_describe(cell)}", cell.reproduce))
        elif before.status != "passed" and passed:
            notes.append(Verdict(cell.id, f"fixed: was {before.status}, now passed"))
        if cell.status == "incompatible":
            (failures if gate.fail_on_incompatible else notes).append(
                Verdict(cell.id, f"incompatible: {_resolver_reason(cell)}", cell.reproduce))
    notes += quarantined.notes()
    return GateResult(_unique(failures), _unique(notes))


def _required(gate: Gate, current: Report, quarantined: _QuarantineCheck) -> list[Verdict]:
    found = []
    for entry in gate.required:
        pattern = dict(entry)
        cells = [c for c in current.cells
                 if matches(pattern, {k: v or NONE for k, v in c.axes.items()})]
        if not cells:
            wanted = ", ".join(f"{k}={v}" for k, v in entry)
            found.append(Verdict(wanted, "required, but no such cell is in the results"))
        for cell in cells:
            if not _effectively_passed(cell, quarantined):
                found.append(Verdict(cell.id, f"required cell is {_describe(cell)}",
                                     cell.reproduce))
    return found


class _QuarantineCheck:
    """Which failing tests are excused, and which quarantine entries have expired."""

    def __init__(self, entries: Sequence[Quarantine], today: dt.date) -> None:
        self._active = [q for q in entries if q.expires >= today]
        self._expired = [q for q in entries if q.expires < today]
        self._used: set[str] = set()

    def excuses(self, test_ids: Sequence[str]) -> bool:
        if not test_ids:
            return False
        for test in test_ids:
            entry = next((q for q in self._active if fnmatch.fnmatchcase(test, q.test)), None)
            if entry is None:
                return False
            self._used.add(f"{test} (quarantined until {entry.expires}: {entry.reason})")
        return True

    def notes(self) -> list[Verdict]:
        found = [Verdict("quarantine", f"{text}") for text in sorted(self._used)]
        found += [Verdict("quarantine", f"entry for {q.test} expired on {q.expires}: its "
                          "failures count again; fix the test or extend the entry")
                  for q in self._expired]
        return found


def _effectively_passed(cell: CellReport, quarantined: _QuarantineCheck) -> bool:
    if cell.status == "passed":
        return cell.verified  # a pass without complete test evidence is not a pass
    if cell.status != "failed" or not (cell.stage or "").startswith("suite"):
        return False
    failing = [t for s in cell.suites for t in s.failed_tests]
    broken = [s for s in cell.suites if s.status == "failed" and not s.failed_tests]
    return not broken and quarantined.excuses(failing)


def _describe(cell: CellReport) -> str:
    if cell.status == "passed" and cell.problems:
        more = len(cell.problems) - 1
        return (f"passed, but its test evidence does not show it: {cell.problems[0]}"
                + (f" (and {more} more)" if more else ""))
    stage = f" at {cell.stage}" if cell.stage else ""
    return f"{cell.status}{stage}" + (f": {_first(cell)}" if cell.reason else "")


def _first(cell: CellReport) -> str:
    lines = [line for line in (cell.reason, *cell.details) if line.strip()]
    return lines[0].strip() if lines else ""  # whole: its cause is often at its end


def _resolver_reason(cell: CellReport) -> str:
    """uv's own words: the clause that names the conflicting pin, when there is one."""
    return conflict_clause(cell.details, _first(cell))


def _repro(cell: CellReport, passed: bool) -> str:
    return "" if passed else cell.reproduce


def _unique(verdicts: list[Verdict]) -> tuple[Verdict, ...]:
    return tuple(dict.fromkeys(verdicts))
