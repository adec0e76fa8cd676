"""What a cell's result depends on, as one digest: equal digests mean the record still holds.

The digest covers the compatmatrix version, the cell's axes and build key, the matrix
settings a cell reads (project, indexes, suites, timeouts), the interpreter, the sources of
the package under test (test folders excluded), the test folders, the lock, and the GPUs
present. A second digest, ``setup``, covers the same less what only the suites read (the test
folders and the suites' settings, but for the GPU kinds the audit judges against): editing a
test changes the first and not the second, so a rerun reuses the wheel, the venv and the
identity check, and runs only the suites again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compatmatrix import __version__
from compatmatrix.model.spec import Matrix
from compatmatrix.run.projectfiles import digest_files, source_files

__all__ = ["COMPILED_SUFFIXES", "CellInputs", "ProjectDigests", "cell_inputs"]

COMPILED_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".cu", ".pyx")
CUDA_SUFFIXES = (".cu", ".cuh")


class ProjectDigests:
    """The project's source files and the digests of its sources and tests, each computed
    once per run (thread-safe): a build key built twice in one run would otherwise see
    different inputs if something wrote into the project meanwhile.

    ``exclude``: what a run writes that may sit inside the project (the work directory, the
    report files); never build input.
    """

    def __init__(self, matrix: Matrix, exclude: Sequence[Path] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self._matrix = matrix
        self._exclude = tuple(exclude)
        self._env = env
        self._lock = threading.RLock()  # source() computes files() inside it
        self._values: dict[str, Any] = {}

    def test_paths(self) -> tuple[Path, ...]:
        return tuple(sorted({self._matrix.root / p for s in self._matrix.suites
                             for p in s.paths}))

    def files(self) -> list[Path]:
        """The build input: the project's files, relative to it, tests and work files out."""
        source = self._matrix.project.source if self._matrix.project is not None else None
        files: list[Path] = self._once("files", lambda: [] if source is None else source_files(
            source, (*self.test_paths(), *self._exclude), self._env))
        return files

    def has_compiled_sources(self) -> bool:
        """C, C++ or CUDA sources: a wheel without an extension module lost them."""
        return any(f.suffix in COMPILED_SUFFIXES for f in self.files())

    def cuda_sources(self) -> tuple[str, ...]:
        """The project's CUDA sources (.cu, .cuh), relative to it."""
        return tuple(str(f) for f in self.files() if f.suffix in CUDA_SUFFIXES)

    def source(self) -> str:
        source = self._matrix.project.source if self._matrix.project is not None else None
        digest: str = self._once("source", lambda: "" if source is None else digest_files(
            source, self.files()))
        return digest

    def tests(self) -> str:
        def compute() -> str:
            parts = []
            for path in self.test_paths():
                if path.is_dir():
                    files = source_files(path, self._exclude, self._env)
                    parts.append(str(path) + ":" + digest_files(path, files))
                elif path.is_file():
                    parts.append(str(path) + ":" + hashlib.sha256(path.read_bytes()).hexdigest())
            return hashlib.sha256("\n".join(parts).encode()).hexdigest()
        digest: str = self._once("tests", compute)
        return digest

    def _once(self, name: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._values:
                self._values[name] = compute()
            return self._values[name]


@dataclass(frozen=True)
class CellInputs:
    """The two digests of a cell's inputs."""

    all: str    # everything: equal, the whole record still holds
    setup: str  # everything but the tests and the suites' settings: equal, the wheel, the
    #             venv and the identity check still hold, and only the suites run again


def cell_inputs(matrix: Matrix, digests: ProjectDigests, *, axes: Mapping[str, str],
                build_key: str, interpreter: str, pins: Mapping[str, str],
                gpus: object, machine: Mapping[str, str] | None = None,
                mode: str = "run", artifact: str = "") -> CellInputs:
    """``machine``: what else the cell depends on here (the nvcc forced, a preinstalled torch);
    ``mode``: a full run, or resolve only (whose records never stand in for a full run's);
    ``artifact``: the sha256 of the given or published wheel the cell tests (not where it
    lies: the same wheel in another folder is the same input)."""
    project = None
    if matrix.project is not None:
        project = {key: value for key, value in _plain(asdict(matrix.project)).items()
                   if key not in ("wheels", "wheels_at", "requirement_at")}
    setup = {
        "mode": mode,
        "compatmatrix": __version__,
        "axes": dict(axes),
        "build_key": build_key,
        "project": project,
        "artifact": artifact,
        "indexes": _plain(asdict(matrix.indexes)),
        "timeouts": dict(matrix.timeouts),
        "interpreter": interpreter,
        "source": digests.source(),
        "lock": dict(pins),
        "gpus": repr(tuple(gpus)) if isinstance(gpus, tuple) else repr(gpus),
        "machine": dict(machine or {}),
    }
    everything = {**setup, "suites": [_plain(asdict(s)) for s in matrix.suites],
                  "tests": digests.tests()}
    # the audit judges the wheel against the GPU kinds the suites need
    setup["suite_gpus"] = {s.name: s.gpu for s in matrix.suites if s.gpu}
    return CellInputs(_digest(everything), _digest(setup))


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
