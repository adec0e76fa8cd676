"""One finding of ``compatmatrix doctor``: a value, so it sorts, compares and becomes JSON."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHECKS", "ERROR", "INFO", "SEVERITIES", "WARNING", "DoctorFinding"]

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)  # most severe first: the order findings are listed in

# The checks, in the order their findings are shown.
CHECKS = ("requirements", "torch", "cuda", "extensions", "wheels")


@dataclass(frozen=True)
class DoctorFinding:
    check: str  # one of CHECKS
    severity: str  # one of SEVERITIES
    subject: str  # what it is about: a distribution, a file, a tool
    message: str  # one line
    explanation: str = ""  # why it matters, what causes it
    fix: str | None = None  # a command that fixes it; None when nothing needs fixing

    def sort_key(self) -> tuple[int, int, str, str]:
        return (CHECKS.index(self.check), SEVERITIES.index(self.severity), self.subject,
                self.message)

    def to_json(self) -> dict[str, object]:
        return {"check": self.check, "severity": self.severity, "subject": self.subject,
                "message": self.message, "explanation": self.explanation, "fix": self.fix}
