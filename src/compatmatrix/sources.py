"""The files that make up the package under test's build input, and their digest.

Inside a git checkout, what git tracks plus untracked files it does not ignore (so build
outputs never count); elsewhere a walk that skips the usual build and cache folders.
Test folders are excluded: editing a test must not rebuild the wheel.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

__all__ = ["digest_files", "source_files"]

_SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".nox", ".venv", ".compatmatrix",
              ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def source_files(project: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Paths relative to ``project``, sorted."""
    excluded = [p.resolve() for p in exclude]
    files = _git_files(project)
    if files is None:
        files = _walk(project)
    kept = []
    for rel in files:
        full = (project / rel).resolve()
        if any(full == ex or ex in full.parents for ex in excluded):
            continue
        if full.is_file():
            kept.append(rel)
    return sorted(kept)


def digest_files(root: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for rel in files:
        digest.update(str(rel).encode() + b"\0")
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def _git_files(project: Path) -> list[Path] | None:
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=project, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return [Path(p) for p in done.stdout.decode().split("\0") if p]


def _walk(project: Path) -> list[Path]:
    found = []
    for folder, dirs, names in os.walk(project):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        for name in names:
            if not name.endswith((".pyc", ".so", ".o")):
                found.append(Path(folder, name).relative_to(project))
    return found
