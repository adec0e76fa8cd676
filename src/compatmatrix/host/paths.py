"""Where a file is, judged by path: shared by the stages that check imports come from the venv."""

from __future__ import annotations

import os
from pathlib import Path

from compatmatrix.host import cmd as _cmd

__all__ = ["import_outside", "repository_root"]


def import_outside(import_name: str, module_file: object, venv: Path) -> str | None:
    """Why the package under test did not come from the cell's ``venv``, or None when it did.

    ``module_file`` is the module's ``__file__`` (or a package path) as the cell's Python saw
    it; nothing to judge when it is empty (a namespace package without a path).
    """
    if not isinstance(module_file, str) or not module_file:
        return None
    if "\0" in module_file:  # not a path: a garbled or forged answer
        return f"{import_name} reported an impossible module path {module_file!r}"
    where = Path(os.path.abspath(module_file))
    root = Path(os.path.abspath(venv))
    if root == where or root in where.parents:
        return None
    return (f"{import_name} was imported from {where}, not from the cell's venv {root}: a "
            "source tree (or another installation) shadows the built wheel")


def repository_root(folder: Path) -> Path:
    """The git checkout ``folder`` is in, or ``folder`` itself: what report paths are
    relative to."""
    done = _cmd.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], timeout=30)
    top = done.output.strip().splitlines()[-1] if done.ok and done.output.strip() else ""
    return Path(top).resolve() if top else folder.resolve()
