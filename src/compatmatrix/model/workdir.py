"""The work directory: one value, passed down, that knows where every output of a run goes.

Layout (default ``.compatmatrix/`` beside matrix.yaml, git-ignored)::

    wheels/<build key>/<digest>/      the built wheel, build.json, build.log
    build/<build key>/                source copy and build environment of a build key
    envs/<cell id>/                   the cell's fresh venv
    logs/<cell id>/<stage>.log        one log per stage
    junit/<cell id>/<suite>.xml       one JUnit file per suite
    locks/<cell id>.txt               the resolved pins
    results/<cell id>.json            the cell's record
    metadata/<build key>/<digest>.json  metadata the build backend prepared (setup.py projects)
    cwd/<cell id>/                    an empty folder the cell's identity check runs in
    .gitignore                        "*": nothing here is ever source
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.safeio import dumps_strict

__all__ = ["REPORT_FILES", "WorkDir", "report_dir", "repository_root", "work_dir", "write_atomic",
           "write_json_atomic"]


@dataclass(frozen=True)
class WorkDir:
    root: Path

    def wheel_dir(self, build_key: str, digest: str) -> Path:
        return self.root / "wheels" / build_key / digest

    def build_dir(self, build_key: str) -> Path:
        return self.root / "build" / build_key

    def env(self, cell_id: str) -> Path:
        return self.root / "envs" / cell_id

    def log(self, cell_id: str, stage: str) -> Path:
        return self.root / "logs" / cell_id / f"{stage}.log"

    def logs(self, cell_id: str) -> Path:
        return self.root / "logs" / cell_id

    def junit(self, cell_id: str, suite: str) -> Path:
        return self.root / "junit" / cell_id / f"{suite}.xml"

    def lock(self, cell_id: str) -> Path:
        return self.root / "locks" / f"{cell_id}.txt"

    def record(self, cell_id: str) -> Path:
        return self.root / "results" / f"{cell_id}.json"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def metadata(self, build_key: str, digest: str) -> Path:
        return self.root / "metadata" / build_key / f"{digest}.json"

    def neutral(self, cell_id: str) -> Path:
        """An empty folder to run the cell's Python in: no source tree to import from."""
        path = self.root / "cwd" / cell_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def ensure(self) -> None:
        """Create the folder with a ``.gitignore`` of ``*`` (as pytest and ruff do for their
        caches), so that git never lists what a run writes, wherever the folder is."""
        self.root.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.is_file():
            write_atomic(ignore, "# created by compatmatrix: its work files are never source\n*\n")


REPORT_FILES = ("compatibility.md", "compatibility.json", "compatibility.html", "junit.xml")


def report_dir(matrix_root: Path, env: Mapping[str, str], given: Path | None = None) -> Path:
    """Where ``compatmatrix report`` writes: --out, else $COMPATMATRIX_REPORTS, else
    reports/ beside matrix.yaml."""
    return given or Path(env.get("COMPATMATRIX_REPORTS") or matrix_root / "reports")


def work_dir(matrix_root: Path, env: Mapping[str, str], given: Path | None = None) -> Path:
    """--workdir, else $COMPATMATRIX_WORKDIR, else .compatmatrix/ beside matrix.yaml."""
    return given or Path(env.get("COMPATMATRIX_WORKDIR") or matrix_root / ".compatmatrix")


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide reports from others
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    # os.umask can only be read by setting it: do it once, at import, before any thread runs
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_json_atomic(path: Path, data: Any) -> None:
    """Strict JSON: a NaN or infinite float is written as null, never as NaN."""
    write_atomic(path, dumps_strict(data, indent=2, sort_keys=True) + "\n")


def repository_root(folder: Path) -> Path:
    """The git checkout ``folder`` is in, or ``folder`` itself: what report paths are
    relative to."""
    done = _cmd.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], timeout=30)
    top = done.output.strip().splitlines()[-1] if done.ok and done.output.strip() else ""
    return Path(top).resolve() if top else folder.resolve()
