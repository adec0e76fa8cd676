"""The files that make up the package under test's build input, and their digest.

Inside a git checkout, what git tracks plus untracked files it does not ignore; elsewhere a
walk. In both, the usual build, cache and environment folders (``build/`` and ``dist/`` at the
top, ``__pycache__``, ``.nox``, ``.tox``, ``*.egg-info``, ...) never count, nor do the folders
the caller excludes: the test folders (editing a test must not rebuild the wheel), the work
directory and the report files, wherever they are. A checkout that ignores nothing, or a
plain folder, gives the same list as a tidy one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from compatmatrix.host import cmd as _cmd

__all__ = ["SKIP_DIRS", "digest_files", "source_files"]

# Folders that are never source, at any depth.
SKIP_DIRS = frozenset({".git", "__pycache__", ".nox", ".tox", ".venv", ".compatmatrix",
                       ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".eggs"})
# Build outputs of setuptools and friends: only at the project's top (src/pkg/build/ is code).
_TOP_SKIP_DIRS = frozenset({"build", "dist"})
# Compiled leftovers an in-place build writes next to the sources (unless git tracks them:
# then they are vendored source).
_ARTIFACT_SUFFIXES = (".pyc", ".pyo", ".so", ".o", ".obj")


def source_files(project: Path, exclude: Iterable[Path] = (),
                 env: Mapping[str, str] | None = None) -> list[Path]:
    """Paths relative to ``project``, sorted; ``exclude``: folders or files to leave out."""
    excluded = [p.resolve() for p in exclude]
    listed = _git_files(project, env)
    tracked, files = listed if listed is not None else (set(), _walk(project))
    kept = []
    for rel in files:
        if _skipped(rel) or (rel not in tracked and rel.suffix in _ARTIFACT_SUFFIXES):
            continue
        full = (project / rel).resolve()
        if any(full == ex or ex in full.parents for ex in excluded):
            continue
        if full.is_file():
            kept.append(rel)
    return sorted(kept)


def _skipped(rel: Path) -> bool:
    parts = rel.parts
    if len(parts) > 1 and parts[0] in _TOP_SKIP_DIRS:
        return True
    return any(part in SKIP_DIRS or part.endswith(".egg-info") for part in parts[:-1])


def digest_files(root: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for rel in files:
        digest.update(str(rel).encode() + b"\0")
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def _git_files(project: Path,
               env: Mapping[str, str] | None) -> tuple[set[Path], list[Path]] | None:
    """(tracked files, tracked + untracked files git does not ignore), or None outside a
    checkout. A tracked binary is source (vendored); an untracked one is a build's output."""
    found = []
    for which in (["--cached"], ["--others", "--exclude-standard"]):
        done = _cmd.run(["git", "-C", str(project), "ls-files", "-z", *which, "--", "."],
                        env=env, timeout=60)
        if not done.ok:
            return None  # not a checkout, or no git: walk instead
        found.append([Path(p) for p in done.output.split("\0") if p.strip()])
    return set(found[0]), found[0] + found[1]


def _walk(project: Path) -> list[Path]:
    found = []
    for folder, dirs, names in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in names:
            found.append(Path(folder, name).relative_to(project))
    return found
