"""The per-cell record: a value that serialises to ``results/<cell id>.json`` and back."""

from __future__ import annotations

import enum
import json
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .workdir import write_json_atomic

__all__ = ["RECORD_SCHEMA", "CellRecord", "Status", "read_record", "reproduce_command"]

RECORD_SCHEMA = 1


class Status(str, enum.Enum):
    """Never folded together: each says something different about the cell."""

    PASSED = "passed"
    FAILED = "failed"            # a stage failed (see ``stage`` and ``reason``)
    INCOMPATIBLE = "incompatible"  # the resolver proved the pins unsatisfiable
    UNAVAILABLE = "unavailable"  # something outside the project is missing here
    ERROR = "error"              # a bug in compatmatrix itself


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
    resolved: dict[str, str] = field(default_factory=dict)
    wheel: str | None = None
    wheel_reused: bool = False
    built_with_torch: str | None = None
    running_torch: str | None = None
    audit: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    reproduce: str = ""
    root: str = ""                       # the repository root of the run (paths in reports)
    inputs: str = ""                     # digest of everything the result depends on
    reused: bool = False                 # this record was reused from an earlier run

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": RECORD_SCHEMA}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.value if isinstance(value, Status) else value
        data["details"] = list(self.details)
        data["durations"] = {k: round(v, 3) for k, v in self.durations.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["status"] = Status(known["status"])
        known["details"] = tuple(known.get("details", ()))
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


def read_record(path: Path) -> CellRecord | None:
    """The record at ``path``, or None when missing or unreadable (a run will redo it)."""
    try:
        return CellRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
