"""Where packages come from: the torch variant's index and extra find-links folders.

Nothing machine-specific is committed: ``find_links`` entries are expanded at run time
from environment variables and from pip's own configuration (the word ``pip-config``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping

from .spec import Indexes

__all__ = ["PYPI", "expand_find_links", "index_url_for", "pip_config_find_links"]

PYPI = "pypi"
PIP_CONFIG = "pip-config"


def pip_config_find_links(env: Mapping[str, str], python: str = sys.executable) -> list[str]:
    """pip's configured find-links (PIP_FIND_LINKS and every pip.conf), in pip's order."""
    found: list[str] = []
    found += env.get("PIP_FIND_LINKS", "").split()
    try:
        done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                              text=True, timeout=30, env=dict(env), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode == 0:
        for line in done.stdout.splitlines():
            key, _, value = line.partition("=")
            if key.strip().endswith(".find-links"):
                found += shlex.split(value.strip().strip("'\""))
    return list(dict.fromkeys(item for item in found if item))


def expand_find_links(indexes: Indexes, env: Mapping[str, str]) -> list[str]:
    """The find-links entries with ``$VARS`` and ``pip-config`` expanded; empty ones dropped."""
    result: list[str] = []
    for entry in indexes.find_links:
        if entry == PIP_CONFIG:
            result += pip_config_find_links(env)
        else:
            expanded = _expand(entry, env)
            if expanded:  # an entry naming an unset variable is left out, not half-expanded
                result.append(_expand_home(expanded, env))
    return list(dict.fromkeys(result))


PYTORCH_INDEX = "https://download.pytorch.org/whl/{variant}"


def index_url_for(indexes: Indexes, variant: str | None) -> str | None:
    """The index of a torch variant: as configured, None for ``pypi`` (PyPI's own build),
    and PyTorch's per-variant index for a variant the matrix does not mention."""
    if variant is None:
        return None
    url = indexes.url_for(variant)
    if url is None:
        return PYTORCH_INDEX.format(variant=variant)
    return None if url == PYPI else url


def _expand_home(path: str, env: Mapping[str, str]) -> str:
    if path == "~" or path.startswith("~/"):
        return env.get("HOME", os.path.expanduser("~")) + path[1:]
    return path


_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _expand(text: str, env: Mapping[str, str]) -> str | None:
    if any(not env.get(name) for name in _VAR.findall(text)):
        return None
    return _VAR.sub(lambda m: env[m[1]], text)
