"""The per-cell record: a value that serialises to ``results/<cell id>.json`` and back."""

from __future__ import annotations

import enum
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compatmatrix.host.safeio import (
    MiB,
    finite_or_none,
    loads_strict,
    read_bounded,
    write_json_atomic,
)
from compatmatrix.model.outcomes import Artifact, AuditReport, IdentityResult, SuiteResult

__all__ = ["MAX_RECORD_BYTES", "RECORD_SCHEMA", "CellRecord", "RecordError", "Status",
           "json_kind", "load_record", "read_record", "reproduce_command"]

RECORD_SCHEMA = 1
MAX_RECORD_BYTES = 16 * MiB  # a record is kilobytes; the bound keeps a stray file harmless


class RecordError(ValueError):
    """A file that is not a record: ``str()`` says why, in a few words."""


class Status(str, enum.Enum):
    """Never folded together: each says something different about the cell."""

    PASSED = "passed"
    FAILED = "failed"            # a stage failed (see ``stage`` and ``reason``)
    INCOMPATIBLE = "incompatible"  # the resolver proved the pins unsatisfiable
    UNAVAILABLE = "unavailable"  # something outside the project is missing here
    ERROR = "error"              # a bug in compatmatrix itself
    # resolve only (run --until resolve): the pins install together; nothing was built or
    # tested, so it is never a pass (and never the lock "resolved" of a record)
    RESOLVABLE = "resolvable"


@dataclass(frozen=True)
class CellRecord:
    cell: str
    axes: dict[str, str | None]
    status: Status
    stage: str | None = None          # the stage that decided a non-passed status
    reason: str = ""
    details: tuple[str, ...] = ()        # first meaningful error lines / resolver explanation
    build_key: str = ""
    interpreter: str | None = None
    requirements: list[str] = field(default_factory=list)  # what was resolved, as given to uv
    # what the package itself declares, with the extras in play: [requirement, extra or ""],
    # from the built wheel's METADATA (before a build: the metadata resolve read)
    declared: list[list[str]] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)
    wheel: str | None = None
    wheel_reused: bool = False
    artifact: Artifact | None = None     # the wheel tested: file, sha256, built/given/published
    built_with_torch: str | None = None
    running_torch: str | None = None
    audit: AuditReport | None = None
    identity: IdentityResult | None = None
    suites: dict[str, SuiteResult] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    reproduce: str = ""
    root: str = ""                       # the repository root of the run (paths in reports)
    inputs: str = ""                     # digest of everything the result depends on
    reused: bool = False                 # this record was reused from an earlier run
    setup_inputs: str = ""               # the same, less the tests and the suites' settings
    setup_reused: bool = False           # wheel, venv and identity came from the last run

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": RECORD_SCHEMA}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.value if isinstance(value, Status) else value
        data["details"] = list(self.details)
        data["audit"] = None if self.audit is None else self.audit.to_json()
        data["artifact"] = None if self.artifact is None else self.artifact.to_json()
        data["identity"] = None if self.identity is None else self.identity.to_json()
        data["suites"] = {name: suite.to_json() for name, suite in self.suites.items()}
        # durations are rounded floats; one that is not a number (NaN, infinite) is null,
        # which strict JSON can hold
        data["durations"] = {k: finite_or_none(round(v, 3)) for k, v in self.durations.items()}
        return data

    @classmethod
    def from_json(cls, data: object) -> CellRecord:
        """The record ``data`` holds; RecordError, saying why, when it is not one (a field
        missing or of the wrong type, another schema)."""
        if not isinstance(data, dict):
            raise RecordError(f"not a JSON object but {json_kind(data)}")
        schema = data.get("schema", RECORD_SCHEMA)
        if schema != RECORD_SCHEMA or isinstance(schema, bool):
            raise RecordError(f"record schema {schema!r}, but this compatmatrix reads "
                              f"schema {RECORD_SCHEMA}")
        for name in ("cell", "axes", "status"):
            if name not in data:
                raise RecordError(f"no {name!r}")
        for name, check, expected in _FIELDS:
            if name in data and not check(data[name]):
                kind = json_kind(data[name])
                why = f"it is {kind}" if kind not in expected else "a value in it is not"
                raise RecordError(f"{name!r} is not {expected} ({why})")
        if data["status"] not in _STATUSES:
            raise RecordError(f"'status' is {data['status']!r}, not one of "
                              f"{', '.join(_STATUSES)}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["status"] = Status(known["status"])
        known["details"] = tuple(known.get("details", ()))
        seconds = {k: _seconds(v) for k, v in known.get("durations", {}).items()}
        known["durations"] = {k: v for k, v in seconds.items() if v is not None}
        try:  # the stages' own results, typed; their from_json say what is wrong
            if known.get("audit") is not None:
                known["audit"] = AuditReport.from_json(known["audit"])
            if known.get("artifact") is not None:
                known["artifact"] = Artifact.from_json(known["artifact"])
            if known.get("identity") is not None:
                known["identity"] = IdentityResult.from_json(known["identity"])
            known["suites"] = {name: SuiteResult.from_json(suite, name)
                               for name, suite in known.get("suites", {}).items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"a stage's result in it is not one: {exc}") from None
        return cls(**known)

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    def but(self, **changes: Any) -> CellRecord:
        return replace(self, **changes)


def reproduce_command(matrix: Path, cell_id: str, base: Path | None = None) -> str:
    """The one command that reruns a cell. With ``base`` (a repository root) the matrix path
    is relative to it, for reports read on other machines; else absolute, so that the command
    works from any directory."""
    where = matrix
    if base is not None:
        try:
            where = matrix.relative_to(base)
        except ValueError:
            where = matrix
    if str(where) == "matrix.yaml":
        return f"compatmatrix run --cell {cell_id}"
    return f"compatmatrix run --matrix {shlex.quote(str(where))} --cell {cell_id}"


def load_record(path: Path) -> CellRecord:
    """The record at ``path``; RecordError saying why it cannot be read: not a regular file
    (a FIFO is never opened), larger than MAX_RECORD_BYTES, not UTF-8, not JSON (NaN is not
    JSON), not a record."""
    try:
        data = read_bounded(path, MAX_RECORD_BYTES)
    except OSError as exc:
        raise RecordError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("not UTF-8 text (a binary file?)") from None
    try:
        value = loads_strict(text)
    except ValueError as exc:
        raise RecordError(f"not JSON ({exc})") from None
    return CellRecord.from_json(value)


def read_record(path: Path) -> CellRecord | None:
    """The record at ``path``, or None when missing or unreadable (a run will redo it)."""
    try:
        return load_record(path)
    except RecordError:
        return None


def json_kind(value: object) -> str:
    """How JSON would call ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _strs(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _map(value: object, values: tuple[type, ...]) -> bool:
    return isinstance(value, dict) and all(isinstance(v, values) for v in value.values())


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _suite_ok(value: object) -> bool:
    """A suite's entry as the report reads it: its status, reason and counts."""
    if not isinstance(value, dict):
        return False
    return (all(isinstance(value.get(key, ""), str) for key in ("name", "status", "reason"))
            and all(value.get(key) is None or (isinstance(value[key], int)
                                               and not isinstance(value[key], bool))
                    for key in ("collected", "passed", "failed", "errors", "skipped")))


def _seconds(value: object) -> float | None:
    """A duration as a float; None for null, NaN, infinity and numbers beyond a float."""
    if not _number(value):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]  # _number: an int or a float
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


_NONE = type(None)
_STATUSES = tuple(status.value for status in Status)
# (field, check, what it must be): fields a record may leave out, checked when present
_FIELDS: tuple[tuple[str, Callable[[object], bool], str], ...] = (
    ("cell", lambda v: isinstance(v, str) and bool(v), "a cell id"),
    ("axes", lambda v: _map(v, (str, _NONE)), "an object of axis values"),
    ("status", lambda v: isinstance(v, str), "a status"),
    ("stage", lambda v: isinstance(v, (str, _NONE)), "a stage or null"),
    ("details", _strs, "a list of lines"),
    ("requirements", _strs, "a list of requirements"),
    ("declared", lambda v: isinstance(v, list) and all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
        for e in v), "a list of [requirement, extra] pairs"),
    ("resolved", lambda v: _map(v, (str,)), "an object of versions"),
    ("suites", lambda v: isinstance(v, dict) and all(_suite_ok(s) for s in v.values()),
     "an object of suites (each with a status, a reason and counts)"),
    ("durations", lambda v: isinstance(v, dict) and all(
        v is None or _number(v) for v in v.values()), "an object of seconds"),
    ("logs", lambda v: _map(v, (str,)), "an object of log paths"),
    ("audit", lambda v: isinstance(v, (dict, _NONE)), "an object or null"),
    ("artifact", lambda v: isinstance(v, (dict, _NONE)), "an object or null"),
    ("identity", lambda v: isinstance(v, (dict, _NONE)), "an object or null"),
    *((name, lambda v: isinstance(v, str), "a string")
      for name in ("reason", "build_key", "reproduce", "root", "inputs", "setup_inputs")),
    *((name, lambda v: isinstance(v, (str, _NONE)), "a string or null")
      for name in ("interpreter", "wheel", "built_with_torch", "running_torch")),
    *((name, lambda v: isinstance(v, bool), "true or false")
      for name in ("wheel_reused", "reused", "setup_reused")),
)
