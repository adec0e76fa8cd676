"""What the stages of a cell find, as values: the audit's report and findings, the identity
check's facts, each suite's result, and the names of the stages themselves. The cell record
holds these typed results and serialises them (:mod:`compatmatrix.model.record`); the report
reads them directly.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from compatmatrix.binary.torchabi import NO_TORCH, STABLE, UNSTABLE, LibraryAbi

__all__ = [
    "ERROR",
    "NOTE",
    "ORIGINS",
    "WARNING",
    "Artifact",
    "AuditReport",
    "Finding",
    "IdentityResult",
    "Stage",
    "SuiteResult",
    "SuiteStatus",
    "stage_label",
]


class Stage(str, enum.Enum):
    """The stages of a cell, in order; ``suite`` is one pytest run, named by its suite."""

    METADATA = "metadata"
    RESOLVE = "resolve"
    SELECT = "select"  # a given or published wheel instead of a build
    BUILD = "build"
    AUDIT = "audit"
    INSTALL = "install"
    IDENTITY = "identity"
    SUITE = "suite"
    SUITES = "suites"  # the suites as a whole (none defined; none ran)


def stage_label(stage: Stage, suite: str | None = None) -> str:
    """How records and reports write a stage: ``build``, ``suite:unit``."""
    return f"{stage.value}:{suite}" if suite else stage.value


class SuiteStatus(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not_run"  # nothing ran: a GPU kind missing, every test skipped or deselected


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


ERROR = "error"
WARNING = "warning"
NOTE = "note"  # a fact worth a line in the record, that breaks nothing


ORIGINS = ("built", "given", "published")


@dataclass(frozen=True)
class Artifact:
    """The wheel a cell tested: its file name, sha256, and where it came from."""

    file: str
    sha256: str
    origin: str  # "built" (here, from the source), "given" (--wheels), "published" (an index)

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "sha256": self.sha256, "origin": self.origin}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Artifact:
        """ValueError when ``data`` is not an artifact."""
        values = [data.get(key) for key in ("file", "sha256", "origin")]
        if not all(isinstance(v, str) for v in values) or values[2] not in ORIGINS:
            raise ValueError("'artifact' needs a file, a sha256 and an origin (one of "
                             f"{', '.join(ORIGINS)})")
        return cls(str(values[0]), str(values[1]), str(values[2]))


@dataclass(frozen=True)
class Finding:
    severity: str  # ERROR or WARNING
    file: str  # the file inside the wheel it is about, or the wheel's file name
    message: str

    def to_json(self) -> dict[str, object]:
        return {"severity": self.severity, "file": self.file, "message": self.message}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Finding:
        return cls(str(data["severity"]), str(data["file"]), str(data["message"]))


@dataclass(frozen=True)
class AuditReport:
    wheel: str
    tags: tuple[str, ...]
    extensions: tuple[str, ...]
    torch_requirement: str | None
    findings: tuple[Finding, ...]
    # per shared object with GPU code: its targets, "sm_90" (SASS) and "compute_90" (PTX)
    gpu_code: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # per shared object: the torch ABI it uses and the oldest torch it needs
    torch_abi: tuple[LibraryAbi, ...] = ()
    torch_abi_source: str = ""  # torch-abi-audit's name and version, or compatmatrix's own

    @property
    def torch_abi_verdict(self) -> str | None:
        """The wheel's: torch-unstable when any library is, torch-stable when every library
        that uses torch uses only the stable ABI, no-torch when none does; None: no library."""
        kinds = {library.torch for library in self.torch_abi}
        if not kinds:
            return None
        return UNSTABLE if UNSTABLE in kinds else STABLE if STABLE in kinds else NO_TORCH

    @property
    def min_torch(self) -> str | None:
        """The oldest torch every stable library's shims exist in (None: not stable)."""
        found = [library.min_torch for library in self.torch_abi if library.min_torch]
        return max(found, key=_release) if found else None

    def torch_abi_lines(self) -> list[str]:
        """``stable_ext/_C.abi3.so: torch-stable, needs torch>=2.10.0``, one per library."""
        lines = []
        for library in self.torch_abi:
            line = f"{library.member}: {library.torch}"
            if library.min_torch:
                line += f", needs torch>={library.min_torch}"
                if library.pinned_by:
                    line += f" ({', '.join(library.pinned_by[:3])})"
            lines.append(line)
        if lines and self.torch_abi_source:
            lines.append(f"(torch ABI read by {self.torch_abi_source})")
        return lines

    def gpu_code_lines(self) -> list[str]:
        """``_C.abi3.so: SASS sm_90; PTX none``, one line per shared object with GPU code."""
        lines = []
        for member, names in self.gpu_code:
            sass = [n for n in names if n.startswith("sm_")] or ["none"]
            ptx = [n for n in names if n.startswith("compute_")] or ["none"]
            lines.append(f"{member}: SASS {', '.join(sass)}; PTX {', '.join(ptx)}")
        return lines

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    def to_json(self) -> dict[str, object]:
        return {"wheel": self.wheel, "ok": self.ok, "tags": list(self.tags),
                "extensions": list(self.extensions), "torch_requirement": self.torch_requirement,
                "findings": [f.to_json() for f in self.findings],
                "gpu_code": {member: {"sass": [n for n in names if n.startswith("sm_")],
                                      "ptx": [n for n in names if n.startswith("compute_")]}
                             for member, names in self.gpu_code},
                "torch_abi": {"verdict": self.torch_abi_verdict, "min_torch": self.min_torch,
                              "source": self.torch_abi_source,
                              "libraries": [lib.to_json() for lib in self.torch_abi]}}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> AuditReport:
        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        findings = data.get("findings")
        requirement = data.get("torch_requirement")
        gpu_code = data.get("gpu_code")
        abi = data.get("torch_abi")
        abi = abi if isinstance(abi, Mapping) else {}
        libraries = abi.get("libraries")
        return cls(str(data["wheel"]), strings("tags"), strings("extensions"),
                   None if requirement is None else str(requirement),
                   tuple(Finding.from_json(f) for f in findings if isinstance(f, Mapping))
                   if isinstance(findings, list) else (),
                   tuple((str(member), tuple(str(n) for kind in ("sass", "ptx")
                                             for n in targets.get(kind, [])))
                         for member, targets in gpu_code.items() if isinstance(targets, Mapping))
                   if isinstance(gpu_code, Mapping) else (),
                   tuple(LibraryAbi.from_json(lib) for lib in libraries
                         if isinstance(lib, Mapping))
                   if isinstance(libraries, list) else (),
                   str(abi.get("source") or ""))


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("+")[0].split(".") if p.isdigit())


@dataclass(frozen=True)
class IdentityResult:
    ok: bool
    facts: dict[str, Any] = field(default_factory=dict)
    mismatches: tuple[str, ...] = ()
    import_error: str = ""
    built_with_torch: str | None = None
    running_torch: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IdentityResult:
        """ValueError when ``data`` is not an identity result."""
        facts, mismatches = data.get("facts") or {}, data.get("mismatches") or []
        if not isinstance(facts, dict) or not isinstance(mismatches, list):
            raise ValueError("'facts' is not an object or 'mismatches' not a list")
        import_error = data.get("import_error") or ""
        return cls(not mismatches and not import_error, dict(facts),
                   tuple(str(m) for m in mismatches), str(import_error),
                   _optional_text(data.get("built_with_torch")),
                   _optional_text(data.get("running_torch")))

    def to_json(self) -> dict[str, Any]:
        return {"facts": self.facts, "mismatches": list(self.mismatches),
                "import_error": self.import_error, "built_with_torch": self.built_with_torch,
                "running_torch": self.running_torch}


@dataclass(frozen=True)
class SuiteResult:
    name: str
    status: SuiteStatus
    reason: str  # "" when passed; else one line a person understands
    collected: int
    passed: int
    failed: int
    errors: int
    skipped: int
    duration: float
    junit: str | None
    log: str
    command: str
    first_errors: tuple[str, ...] = ()
    imported_from: tuple[str, ...] = ()  # where the package under test was imported from

    @property
    def ok(self) -> bool:
        return self.status is SuiteStatus.PASSED

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["status"] = self.status.value
        data["first_errors"] = list(self.first_errors)
        data["imported_from"] = list(self.imported_from)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object], name: str = "") -> SuiteResult:
        """ValueError, saying why, when ``data`` is not a suite's result."""
        def text(key: str, default: str = "") -> str:
            value = data.get(key, default)
            if not isinstance(value, str):
                raise ValueError(f"{key!r} is not a string")
            return value

        def number(key: str) -> int:
            value = data.get(key) or 0
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key!r} is not a whole number")
            return value

        errors, imported = data.get("first_errors") or [], data.get("imported_from") or []
        junit, duration = data.get("junit"), data.get("duration") or 0.0
        if not isinstance(duration, (int, float)) or isinstance(duration, bool):
            raise ValueError("'duration' is not a number")
        try:
            status = SuiteStatus(text("status"))
        except ValueError:
            raise ValueError(f"'status' is not one of {', '.join(SuiteStatus)}") from None
        return cls(
            name=text("name", name), status=status, reason=text("reason"),
            collected=number("collected"), passed=number("passed"), failed=number("failed"),
            errors=number("errors"), skipped=number("skipped"), duration=float(duration),
            junit=None if junit is None else str(junit), log=text("log"),
            command=text("command"),
            first_errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
            imported_from=tuple(str(p) for p in imported) if isinstance(imported, list) else (),
        )
