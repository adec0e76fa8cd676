"""The work directory: one value, passed down, that knows where every output of a run goes.

Layout (default ``.compatmatrix/`` beside matrix.yaml, git-ignored)::

    wheels/<build key>/<digest>/      the built wheel, build.json, build.log
    build/<build key>/                source copy and build environment of a build key
    envs/<cell id>/                   the cell's fresh venv
    logs/<cell id>/<stage>.log        one log per stage
    junit/<cell id>/<suite>.xml       one JUnit file per suite
    locks/<cell id>.txt               the resolved pins
    results/<cell id>.json            the cell's record
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WorkDir", "write_atomic", "write_json_atomic"]


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
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
