"""``$VAR`` / ``${VAR}`` and ``~`` in paths written in matrix.yaml, expanded from an injected
environment (never ``os.environ`` read deep inside the code)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["expand_path"]

_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def expand_path(text: str, env: Mapping[str, str]) -> str | None:
    """``text`` with its variables and a leading ``~`` expanded; None when it names a
    variable that is unset or empty (half-expanded paths point somewhere unintended)."""
    if any(not env.get(name) for name in _VAR.findall(text)):
        return None
    expanded = _VAR.sub(lambda m: env[m[1]], text)
    if expanded == "~" or expanded.startswith("~/"):
        return env.get("HOME", os.path.expanduser("~")) + expanded[1:]
    return expanded
