"""Stage 4, install: a fresh venv from the cell's interpreter with the built wheel and the lock.

Never editable and never from source: the project comes from its wheel and every other
package from a binary distribution (``--no-build``); the lock's pins are constraints.

A venv that passed the identity check is marked with the digest of what it was made from
and the distributions it holds; a later run whose tests alone changed reuses a venv whose
mark still holds (nothing installed or removed since, by the tests or anyone else).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import error_lines
from compatmatrix.host.uv import Sources, uv_source_args

__all__ = ["InstallResult", "install_cell_env", "mark_venv", "venv_marked", "venv_python"]

_MARK = ".compatmatrix-setup.json"


@dataclass(frozen=True)
class InstallResult:
    ok: bool
    python: Path
    reason: str = ""
    details: tuple[str, ...] = ()
    duration: float = 0.0


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def install_cell_env(venv: Path, *, interpreter: Path, wheel: Path, lock: Path,
                     sources: Sources, uv: Sequence[str], env: Mapping[str, str], log: Path,
                     timeout: float, system_site_packages: bool = False) -> InstallResult:
    shutil.rmtree(venv, ignore_errors=True)
    python = venv_python(venv)
    create = [*uv, "venv", "--quiet", "--python", str(interpreter), str(venv)]
    install = [*uv, "pip", "install", "--quiet", "--python", str(python), "--no-build",
               "--constraint", str(lock), "-r", str(lock), str(wheel), *uv_source_args(sources)]
    if system_site_packages:
        create.append("--system-site-packages")
        # uv does not count the interpreter's packages as installed and would put a second
        # torch into the venv; the lock is complete (every transitive pin), so install
        # exactly it and the wheel, and let the interpreter provide what the lock left out.
        install.append("--no-deps")
    duration = 0.0
    for argv, what in ((create, "could not create the venv"),
                       (install, "could not install the wheel and the lock")):
        result = _cmd.run(argv, log=log, env=env, timeout=timeout)
        duration += result.duration
        if not result.ok:
            reason = f"{what}: timed out" if result.timed_out else what
            return InstallResult(False, python, reason, error_lines(result.output),
                                 duration)
    return InstallResult(True, python, duration=duration)


def mark_venv(venv: Path, setup: str) -> None:
    """Say that ``venv`` holds what the ``setup`` digest describes, as it holds it now."""
    (venv / _MARK).write_text(json.dumps({"setup": setup, "holds": _holds(venv)}),
                              encoding="utf-8")


def venv_marked(venv: Path, setup: str) -> bool:
    """True when ``venv`` was marked with ``setup`` and holds the same distributions still."""
    try:
        mark = json.loads((venv / _MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(mark, dict) and mark.get("setup") == setup
            and mark.get("holds") == _holds(venv) and venv_python(venv).exists())


def _holds(venv: Path) -> str:
    """A digest of the names in the venv's site-packages folders (``torch-2.13.0.dist-info``
    names a distribution and its version): an install, upgrade or removal changes it."""
    names = sorted(str(entry.relative_to(venv)) for site in venv.glob("lib*/python*/site-packages")
                   for entry in site.iterdir() if entry.name != "__pycache__")
    return hashlib.sha256("\n".join(names).encode()).hexdigest()
