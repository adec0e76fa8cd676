"""The one way compatmatrix asks another Python something: run a small script in it, and read
the one line it prints after its tag as a JSON object. Everything else the process prints (a
sitecustomize, a warning) is left alone, and a tagged line that is not a JSON object — garbled
or forged — is said to be so, never taken for an answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.safeio import tagged_json

__all__ = ["Answer", "probe"]


@dataclass(frozen=True)
class Answer:
    data: dict[str, Any] | None  # the JSON object after the tag; None: no usable answer
    garbled: bool  # a tagged line was printed, but it is not a JSON object
    result: _cmd.CommandResult


def probe(python: Path | str, script: str, *args: str, tag: str, timeout: float,
          flags: Sequence[str] = (), log: Path | None = None, cwd: Path | None = None,
          env: Mapping[str, str] | None = None) -> Answer:
    """Run ``python [flags] -c script args`` and read its ``tag`` line (``tag`` without the
    trailing space)."""
    result = _cmd.run([str(python), *flags, "-c", script, *args], log=log, cwd=cwd, env=env,
                      timeout=timeout)
    lines = result.output.splitlines()
    found = tagged_json(lines, tag + " ")
    garbled = not found and any(line.startswith(tag + " ") for line in lines)
    return Answer(found[0] if found else None, garbled, result)
