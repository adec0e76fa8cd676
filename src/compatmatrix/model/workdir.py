"""The work directory: one value, passed down, that knows where every output of a run goes.

Layout (default ``.compatmatrix/`` beside matrix.yaml, git-ignored)::

    wheels/<build key>/<digest>/      the built wheel, build.json, build.log
    build/<build key>/                source copy and build environment of a build key
    envs/<cell id>/                   the cell's fresh venv
    logs/<cell id>/<stage>.log        one log per stage
    junit/<cell id>/<suite>.xml       one JUnit file per suite
    locks/<cell id>.txt               the resolved pins
    results/<cell id>.json            the cell's record
    pins/<cell id>.json               the cell's record of a resolve-only run
    metadata/<build key>/<digest>.json  metadata the build backend prepared (setup.py projects)
    cwd/<cell id>/                    an empty folder the cell's identity check runs in
    .gitignore                        "*": nothing here is ever source
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.host.safeio import write_atomic

__all__ = ["REPORT_FILES", "WorkDir", "report_dir", "work_dir", ]


@dataclass(frozen=True)
class WorkDir:
    root: Path
    # where records go: results/ for full runs; pins/ for resolve-only runs, whose records
    # are never read as a full run's (report, gate, publish, reuse)
    records: str = "results"

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
        return self.root / self.records / f"{cell_id}.json"

    @property
    def results(self) -> Path:
        return self.root / self.records

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










