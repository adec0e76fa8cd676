"""One error hierarchy: each error carries its exit code and a message a person can act on.

The command line catches :class:`CompatError` once (in ``cli.main``) and prints
``str(error)``; nothing below it prints tracebacks for user mistakes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CIError",
    "CannotInspect",
    "CompatError",
    "Location",
    "ProjectFileError",
    "PublishError",
    "SpecError",
    "UsageError",
    "did_you_mean",
]


class CompatError(Exception):
    """Base of every error compatmatrix reports to a person."""

    exit_code = 1


class UsageError(CompatError):
    """Bad command-line input (unknown cell id, missing file, ...)."""

    exit_code = 2


@dataclass(frozen=True)
class Location:
    """Where in a file a value sits (1-based line and column)."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class SpecError(CompatError):
    """matrix.yaml is not valid: names the place, what was expected, and a suggestion."""

    exit_code = 2

    def __init__(self, location: Location, message: str, hint: str = "") -> None:
        self.location = location
        self.message = message
        self.hint = hint
        text = f"{location}: error: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class PublishError(CompatError):
    """The report could not be committed and pushed back (git refused, or no repository)."""

    exit_code = 1


class CIError(CompatError):
    """The matrix cannot be turned into a safe, complete pipeline (exit code 2)."""

    exit_code = 2


class CannotInspect(CompatError):
    """doctor: the interpreter could not be run or did not answer (exit code 2)."""

    exit_code = 2


class ProjectFileError(UsageError):
    """A project file init cannot read: the file (with line and column where known), what is
    wrong, and what to do. Exit code 2, like every usage error."""

    def __init__(self, where: Location | Path, message: str, hint: str = "") -> None:
        text = f"{where}: error: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A "did you mean ..." hint for a misspelt key or value, or "" when nothing is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"expected one of: {', '.join(repr(o) for o in options)}" if options else ""
