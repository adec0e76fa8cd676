"""The report as values: cells with their suites and problems, serialised to
compatibility.json and read back (the gate's baseline). Reading back is strict: a file that is
not a report this compatmatrix wrote is a usage error naming it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compatmatrix.errors import UsageError
from compatmatrix.host.safeio import MiB, loads_strict, read_bounded
from compatmatrix.model.record import (
    json_kind,
)

__all__ = [
    "EN_DASH",
    "MAX_DETAIL_LINES",
    "MAX_REPORT_BYTES",
    "MISSING",
    "REPORT_FILES",
    "REPORT_SCHEMA",
    "STATUS_ORDER",
    "CellReport",
    "Report",
    "SuiteSummary",
    "load_report",
    "parse_report",
]

REPORT_SCHEMA = 1
REPORT_FILES = ("compatibility.md", "compatibility.json", "compatibility.html", "junit.xml")
MISSING = "missing"  # a planned cell without a record; a suite without its JUnit file
STATUS_ORDER = ("passed", "failed", "incompatible", "unavailable", "error", MISSING)
MAX_DETAIL_LINES = 10
EN_DASH = "\u2013"




# --- the values --------------------------------------------------------------------------


_COUNTS = ("collected", "passed", "failed", "errors", "skipped")


@dataclass(frozen=True)
class SuiteSummary:
    name: str
    status: str            # passed, failed, not_run, missing (no usable JUnit for a pass)
    reason: str
    collected: int
    passed: int
    failed: int
    errors: int
    skipped: int
    flaky: tuple[str, ...] = ()          # test ids that failed, then passed on a rerun
    problems: tuple[str, ...] = ()       # why the counts cannot be taken as a clean pass
    failed_tests: tuple[str, ...] = ()   # test ids that failed or errored (pytest node ids
    #                                      when the runner's collected list was found)
    # Where collect found the JUnit file; used for junit.xml only, never serialised (a path
    # on this machine), so a report read back from JSON has none.
    junit: Path | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason,
                **{key: getattr(self, key) for key in _COUNTS},
                "flaky": list(self.flaky), "problems": list(self.problems),
                "failed_tests": list(self.failed_tests)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SuiteSummary:
        return cls(str(data["name"]), str(data["status"]), str(data.get("reason", "")),
                   *_counts(data), flaky=tuple(data.get("flaky", ())),
                   problems=tuple(data.get("problems", ())),
                   failed_tests=tuple(data.get("failed_tests", ())))


def _counts(data: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    collected, passed, failed, errors, skipped = (int(data.get(key) or 0) for key in _COUNTS)
    return collected, passed, failed, errors, skipped


@dataclass(frozen=True)
class CellReport:
    id: str
    axes: dict[str, str | None]
    status: str            # a record's status, or "missing" when the cell has no record
    stage: str | None
    reason: str
    details: tuple[str, ...]
    reproduce: str
    build_key: str
    resolved: dict[str, str]
    suites: tuple[SuiteSummary, ...]
    durations: dict[str, float]      # seconds, rounded to 0.1
    wheel_reused: bool
    built_with_torch: str | None
    running_torch: str | None
    # The repository root of the machine that ran the cell: its paths are shown relative to
    # it, in junit.xml too. Never serialised (a path on that machine).
    root: str = field(default="", compare=False, repr=False)
    # What makes the cell's record itself untrustworthy: copies that disagree, a record
    # that is not this cell's or cannot be read. Fails the gate, whatever the cell's status.
    evidence: tuple[str, ...] = ()
    # what the package declares, with the extras in play: (requirement, extra or "")
    declared: tuple[tuple[str, str], ...] = ()
    # the wheel tested: {"file", "sha256", "origin": built, given or published}
    artifact: dict[str, str] | None = None

    @property
    def artifact_text(self) -> str:
        """``name.whl (sha256 1a2b3c4d5e6f, given)``; "" when no wheel was tested."""
        if not self.artifact:
            return ""
        return (f"{self.artifact.get('file', '')} (sha256 {self.artifact.get('sha256', '')[:12]}"
                f", {self.artifact.get('origin', '')})")

    @property
    def problems(self) -> tuple[str, ...]:
        """The record's own problems, then the honest-counting findings of every suite, as
        ``"<suite>: <finding>"``."""
        return self.evidence + tuple(f"{s.name}: {p}" for s in self.suites for p in s.problems)

    @property
    def verified(self) -> bool:
        """Passed, and the JUnit files back that up."""
        return self.status == "passed" and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "axes": self.axes, "status": self.status, "stage": self.stage,
                "reason": self.reason, "details": list(self.details),
                "reproduce": self.reproduce, "build_key": self.build_key,
                "resolved": self.resolved, "suites": [s.to_json() for s in self.suites],
                "durations": self.durations, "wheel_reused": self.wheel_reused,
                "built_with_torch": self.built_with_torch, "running_torch": self.running_torch,
                "evidence": list(self.evidence), "problems": list(self.problems),
                "declared": [list(pair) for pair in self.declared],
                "artifact": self.artifact, "verified": self.verified}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellReport:
        return cls(
            id=str(data["id"]), axes=dict(data["axes"]), status=str(data["status"]),
            stage=data.get("stage"), reason=str(data.get("reason", "")),
            details=tuple(data.get("details", ())), reproduce=str(data.get("reproduce", "")),
            build_key=str(data.get("build_key", "")), resolved=dict(data.get("resolved", {})),
            suites=tuple(SuiteSummary.from_json(s) for s in data.get("suites", ())),
            durations={k: float(v) for k, v in data.get("durations", {}).items()},
            wheel_reused=bool(data.get("wheel_reused", False)),
            built_with_torch=data.get("built_with_torch"),
            evidence=tuple(data.get("evidence", ())),
            declared=tuple((str(r), str(e)) for r, e in data.get("declared", ())),
            running_torch=data.get("running_torch"),
            artifact={str(k): str(v) for k, v in data["artifact"].items()}
            if isinstance(data.get("artifact"), dict) else None)


@dataclass(frozen=True)
class Report:
    schema: int
    commit: str | None
    axes: tuple[str, ...]            # axis order of the matrix
    cells: tuple[CellReport, ...]    # sorted by cell id

    def cell(self, id: str) -> CellReport | None:
        return next((cell for cell in self.cells if cell.id == id), None)

    def counts(self) -> dict[str, int]:
        """Cells by status, in STATUS_ORDER (then any other status), zeros left out."""
        found: dict[str, int] = {}
        for cell in self.cells:
            found[cell.status] = found.get(cell.status, 0) + 1
        order = [*STATUS_ORDER, *sorted(set(found) - set(STATUS_ORDER))]
        return {status: found[status] for status in order if status in found}

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "commit": self.commit, "axes": list(self.axes),
                "summary": self.counts(), "cells": [c.to_json() for c in self.cells]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        return cls(schema=int(data["schema"]), commit=data.get("commit"),
                   axes=tuple(data["axes"]),
                   cells=tuple(CellReport.from_json(c) for c in data["cells"]))




# --- reading back ------------------------------------------------------------------


MAX_REPORT_BYTES = 256 * MiB


def load_report(path: Path) -> Report | None:
    """A compatibility.json written by write_report; None when there is none.

    Anything else there — a folder or a FIFO (never opened), a file over MAX_REPORT_BYTES,
    garbage, a JSON list, another schema, fields of the wrong types — is a UsageError
    (exit 2) that names the file and says what to do.
    """
    if not os.path.lexists(path):
        return None
    try:
        data = read_bounded(path, MAX_REPORT_BYTES)
    except OSError as exc:
        raise _not_a_report(str(path), str(exc)) from None
    return parse_report(data, str(path))


def parse_report(text: str | bytes, where: str) -> Report:
    """The report in ``text`` (a compatibility.json); UsageError naming ``where`` when it
    is not one."""
    try:
        data = loads_strict(text)
    except ValueError as exc:
        raise _not_a_report(where, f"not JSON: {exc}") from None
    problem = _report_problem(data)
    if problem:
        raise _not_a_report(where, problem)
    try:
        return Report.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise _not_a_report(where, str(exc)) from None


def _not_a_report(where: str, why: str) -> UsageError:
    return UsageError(f"{where}: not a readable compatibility report ({why}); point "
                      "--baseline at a compatibility.json written by `compatmatrix report`, "
                      "or regenerate and commit reports/")


def _report_problem(data: object) -> str:
    """What makes ``data`` not a report of this schema ("" when nothing): the shape that
    Report.from_json and the gate rely on."""
    if not isinstance(data, dict):
        return f"{json_kind(data)}, not an object"
    schema = data.get("schema")
    if schema != REPORT_SCHEMA or isinstance(schema, bool):
        return f"schema {schema!r}, expected {REPORT_SCHEMA}"
    if not _strings(data.get("axes")):
        return "'axes' is not a list of names"
    if not isinstance(data.get("commit"), (str, type(None))):
        return "'commit' is not a string"
    cells = data.get("cells")
    if not isinstance(cells, list):
        return "'cells' is not a list"
    for index, cell in enumerate(cells):
        problem = _cell_problem(cell)
        if problem:
            return f"cells[{index}]: {problem}"
    return ""


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _text_map(value: object, *, nullable: bool = False) -> bool:
    kinds = (str, type(None)) if nullable else (str,)
    return isinstance(value, dict) and all(isinstance(v, kinds) for v in value.values())


def _cell_problem(cell: object) -> str:
    if not isinstance(cell, dict):
        return "not an object"
    for key in ("id", "status"):
        if not isinstance(cell.get(key), str):
            return f"{key!r} is not a string"
    if not _text_map(cell.get("axes"), nullable=True):
        return "'axes' is not an object of values"
    checks = (("stage", lambda v: isinstance(v, (str, type(None)))),
              ("reason", lambda v: isinstance(v, str)), ("details", _strings),
              ("reproduce", lambda v: isinstance(v, str)),
              ("build_key", lambda v: isinstance(v, str)), ("resolved", _text_map),
              ("durations", lambda v: isinstance(v, dict) and all(
                  isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) < 1e300
                  for x in v.values())),
              ("built_with_torch", lambda v: isinstance(v, (str, type(None)))),
              ("running_torch", lambda v: isinstance(v, (str, type(None)))),
              ("artifact", lambda v: v is None or _text_map(v)),
              ("suites", lambda v: isinstance(v, list) and all(_suite_shape(s) for s in v)))
    for key, check in checks:
        if key in cell and not check(cell[key]):
            return f"{key!r} has the wrong type"
    return ""


def _suite_shape(suite: object) -> bool:
    return (isinstance(suite, dict) and isinstance(suite.get("name"), str)
            and isinstance(suite.get("status"), str)
            and isinstance(suite.get("reason", ""), str)
            and all(suite.get(key) is None or (isinstance(suite[key], int)
                                               and not isinstance(suite[key], bool))
                    for key in _COUNTS)
            and all(_strings(suite.get(key, [])) for key in ("flaky", "problems",
                                                               "failed_tests")))
