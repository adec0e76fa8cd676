"""Find a Python X.Y on this machine without downloading anything and without hanging.

Order: an explicit override (environment variable ``COMPATMATRIX_PYTHON_3_11``, then the
matrix's ``interpreters`` key), ``pythonX.Y`` on PATH, pyenv's version folders, uv's managed
Pythons. Each candidate is probed in a subprocess with a timeout, so a broken or
shimmed executable is skipped rather than trusted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.envvars import expand_path

__all__ = ["Interpreter", "InterpreterFinder", "override_variable"]

PROBE_TIMEOUT = 10.0
_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
_PATCH_DIR = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_VERSION_LINE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\Z")
_UV_DIR = re.compile(r"^cpython-(\d+)\.(\d+)\.(\d+)-[^+]*$")


@dataclass(frozen=True)
class Interpreter:
    """The result of looking for one Python version: a path, or why there is none."""

    version: str
    path: Path | None
    source: str  # override, PATH, pyenv, uv; "" when missing
    full_version: str = ""
    problem: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        if self.path is None:
            return "missing"
        return f"{self.path} ({self.full_version}, {self.source})"


def override_variable(version: str) -> str:
    return "COMPATMATRIX_PYTHON_" + version.replace(".", "_")


Probe = Callable[[Path], str | None]


def probe_version(path: Path, timeout: float = PROBE_TIMEOUT) -> str | None:
    """X.Y.Z reported by the executable, or None when it does not run within the timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYENV_VERSION"))}
    # _cmd.run: the whole process group is killed on timeout, and a child left holding the
    # output (a shim's daemon) cannot keep the probe waiting
    done = _cmd.run([str(path), "-I", "-c", _PROBE], env=env, timeout=timeout)
    if not done.ok:
        return None
    versions = [line.strip() for line in done.output.splitlines()
                if _VERSION_LINE.match(line.strip())]
    return versions[-1] if versions else None


class InterpreterFinder:
    """Looks up interpreters once per version; environment and overrides are injected."""

    def __init__(self, env: Mapping[str, str], overrides: Mapping[str, str] | None = None,
                 probe: Probe = probe_version) -> None:
        self._env = dict(env)
        self._overrides = dict(overrides or {})
        self._probe = probe
        self._cache: dict[str, Interpreter] = {}

    def find(self, version: str) -> Interpreter:
        if version not in self._cache:
            self._cache[version] = self._find(version)
        return self._cache[version]

    def _find(self, version: str) -> Interpreter:
        explicit = self._explicit(version)
        if explicit is not None:
            return explicit
        for source, path in self._candidates(version):
            full = self._probe(path)
            if full is not None and _minor(full) == version:
                return Interpreter(version, path, source, full)
        return Interpreter(version, None, "", problem=self._missing_reason(version))

    def _explicit(self, version: str) -> Interpreter | None:
        variable = override_variable(version)
        for source, raw in ((variable, self._env.get(variable)),
                            ("matrix.yaml interpreters", self._overrides.get(version))):
            if not raw:
                continue
            # an unset variable stays as written, so the problem below shows it
            path = Path(expand_path(raw, self._env) or raw)
            full = self._probe(path)
            if full is None:
                return Interpreter(version, None, "", problem=(
                    f"{source} points at {path}, which does not run; fix or unset it"))
            if _minor(full) != version:
                return Interpreter(version, None, "", problem=(
                    f"{source} points at {path}, which is Python {full}, not {version}"))
            return Interpreter(version, path, "override", full)
        return None

    def _candidates(self, version: str) -> Iterator[tuple[str, Path]]:
        root = self._pyenv_root()
        shims = root / "shims" if root else None
        for folder in self._env.get("PATH", "").split(os.pathsep):
            if folder and (shims is None or Path(folder) != shims):
                candidate = Path(folder) / f"python{version}"
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    yield "PATH", candidate
        yield from self._versioned(self._pyenv_versions(), _PATCH_DIR, version, "pyenv")
        yield from self._versioned(self._uv_root(), _UV_DIR, version, "uv")

    @staticmethod
    def _versioned(root: Path | None, pattern: re.Pattern[str], version: str,
                   source: str) -> Iterator[tuple[str, Path]]:
        if root is None or not root.is_dir():
            return
        found = []
        for entry in root.iterdir():
            match = pattern.match(entry.name)
            if match and f"{match[1]}.{match[2]}" == version:
                found.append((int(match[3]), entry / "bin" / f"python{version}"))
        for _, path in sorted(found, reverse=True):  # newest patch release first
            if path.is_file():
                yield source, path

    def _pyenv_root(self) -> Path | None:
        if self._env.get("PYENV_ROOT"):
            return Path(self._env["PYENV_ROOT"])
        home = self._env.get("HOME")
        if home and (Path(home) / ".pyenv").is_dir():
            return Path(home) / ".pyenv"
        return None

    def _pyenv_versions(self) -> Path | None:
        root = self._pyenv_root()
        return root / "versions" if root else None

    def _uv_root(self) -> Path | None:
        if self._env.get("UV_PYTHON_INSTALL_DIR"):
            return Path(self._env["UV_PYTHON_INSTALL_DIR"])
        data = self._env.get("XDG_DATA_HOME") or (
            str(Path(self._env["HOME"]) / ".local" / "share") if self._env.get("HOME") else "")
        return Path(data) / "uv" / "python" if data else None

    def _missing_reason(self, version: str) -> str:
        looked = ["PATH"]
        if (pyenv := self._pyenv_versions()) is not None:
            looked.append(f"pyenv ({pyenv})")
        if (uv := self._uv_root()) is not None:
            looked.append(f"uv ({uv})")
        return (f"no Python {version} found (looked in {', '.join(looked)}); install it with "
                f"'pyenv install {version}' or 'uv python install {version}', or set "
                f"{override_variable(version)}=/path/to/python{version}")


def _minor(full: str) -> str:
    return ".".join(full.split(".")[:2])

