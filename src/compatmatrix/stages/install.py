"""Stage 4, install: a fresh venv from the cell's interpreter with the built wheel and the lock.

Never editable and never from source: the project comes from its wheel and every other
package from a binary distribution (``--no-build``); the lock's pins are constraints.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import error_lines
from compatmatrix.host.uv import Sources, uv_source_args

__all__ = ["InstallResult", "install_cell_env", "venv_python"]


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
