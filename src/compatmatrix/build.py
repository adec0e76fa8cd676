"""Stage 2, build: one wheel per build key, in a build environment whose torch is the cell's.

The wheel is cached under ``wheels/<build key>/<digest>/`` where the digest covers the
source files, the exact torch, the build requirements and the build settings; a second cell
with the same inputs reuses it. A file lock per build key means two cells never build the
same key at the same time. The source is copied per build key, so builds against different
torch versions never share object files; ccache (when present) makes the copy cheap.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import _cmd
from .resolve import Sources, pin_line, uv_source_args
from .sources import digest_files, source_files
from .workdir import WorkDir, write_json_atomic

__all__ = ["BuildRequest", "BuildResult", "build_wheel", "first_error_lines"]

BUILD_SETTINGS_VERSION = "1"  # bump when the way we build changes


@dataclass(frozen=True)
class BuildRequest:
    build_key: str
    project: Path
    exclude: tuple[Path, ...]          # test folders: never part of the build input
    interpreter: Path
    torch_version: str | None       # exact, from the lock; None when torch is not used
    build_requires: tuple[str, ...]
    sources: Sources
    jobs: int = 1


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    wheel: Path | None
    reused: bool
    digest: str
    torch_version: str | None
    torch_lib_dirs: tuple[Path, ...]
    reason: str = ""
    details: tuple[str, ...] = ()
    duration: float = 0.0


def build_wheel(request: BuildRequest, *, workdir: WorkDir, uv: Sequence[str],
                env: Mapping[str, str], log: Path, timeout: float) -> BuildResult:
    start = time.monotonic()
    files = source_files(request.project, request.exclude)
    digest = _digest(request, files)
    out = workdir.wheel_dir(request.build_key, digest)
    build_dir = workdir.build_dir(request.build_key)
    with _locked(workdir.root / "wheels" / request.build_key / ".lock"):
        cached = _cached(out, build_dir)
        if cached is not None:
            return cached
        result = _build(request, files, digest, out, build_dir, uv=uv, env=env, log=log,
                        timeout=timeout)
    return BuildResult(**{**result.__dict__, "duration": time.monotonic() - start})


def _digest(request: BuildRequest, files: list[Path]) -> str:
    parts = {
        "source": digest_files(request.project, files),
        "torch": request.torch_version,
        "build_requires": sorted(request.build_requires),
        "settings": BUILD_SETTINGS_VERSION,
        # non-abi3 keys already name the Python; abi3 wheels do not depend on its patch level
        "python_abi": request.build_key.split("-")[0],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(out: Path, build_dir: Path) -> BuildResult | None:
    info_path = out / "build.json"
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text(encoding="utf-8"))
    wheel = out / info["wheel"]
    if not wheel.is_file():
        return None
    return BuildResult(True, wheel, True, out.name, info.get("torch"),
                       tuple(Path(p) for p in info.get("torch_lib_dirs", [])))


def _build(request: BuildRequest, files: list[Path], digest: str, out: Path, build_dir: Path,
           *, uv: Sequence[str], env: Mapping[str, str], log: Path,
           timeout: float) -> BuildResult:
    deadline = time.monotonic() + timeout
    venv = build_dir / "env"
    python = venv / "bin" / "python"
    steps = [
        [*uv, "venv", "--quiet", "--clear", "--python", str(request.interpreter), str(venv)],
        [*uv, "pip", "install", "--quiet", "--python", str(python), *_build_requirements(request),
         *uv_source_args(request.sources)],
    ]
    for argv in steps:
        result = _cmd.run(argv, log=log, env=env, timeout=_left(deadline))
        if not result.ok:
            return _failed(digest, "could not set up the build environment", result)
    src = _copy_source(request.project, files, build_dir / "src")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = _cmd.run([*uv, "build", "--wheel", "--no-build-isolation", "--python", str(python),
                       "--out-dir", str(staging), str(src)],
                      log=log, env=_compile_env(env, src, request.jobs), timeout=_left(deadline))
    if not result.ok:
        return _failed(digest, "the wheel did not build", result)
    wheels = sorted(staging.glob("*.whl"))
    if len(wheels) != 1:
        return BuildResult(False, None, False, digest, None, (),
                           f"the build produced {len(wheels)} wheels, expected 1")
    torch_libs = _torch_lib_dirs(venv)
    write_json_atomic(staging / "build.json", {
        "wheel": wheels[0].name, "torch": request.torch_version, "build_key": request.build_key,
        "torch_lib_dirs": [str(p) for p in torch_libs], "interpreter": str(request.interpreter),
    })
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return BuildResult(True, out / wheels[0].name, False, digest, request.torch_version,
                       torch_libs)


def _build_requirements(request: BuildRequest) -> list[str]:
    reqs = [r for r in request.build_requires if not r.replace(" ", "").startswith("torch")]
    if request.torch_version is not None:
        reqs.append(pin_line("torch", request.torch_version))  # exactly the cell's torch
    return reqs


def _copy_source(project: Path, files: list[Path], dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, target)
    return dest


def _compile_env(env: Mapping[str, str], src: Path, jobs: int) -> dict[str, str]:
    result = dict(env)
    result.setdefault("MAX_JOBS", str(max(1, jobs)))  # torch's ninja builds honour it
    if shutil.which("ccache", path=env.get("PATH")):
        result.setdefault("CC", "ccache gcc")
        result.setdefault("CXX", "ccache g++")
        result.setdefault("CCACHE_BASEDIR", str(src))  # hits across per-key source copies
        result.setdefault("CCACHE_NOHASHDIR", "1")
    return result


def _torch_lib_dirs(venv: Path) -> tuple[Path, ...]:
    return tuple(sorted(venv.glob("lib/python*/site-packages/torch/lib")))


def _left(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())


def _failed(digest: str, reason: str, result: _cmd.CommandResult) -> BuildResult:
    if result.timed_out:
        reason = f"{reason}: timed out"
    return BuildResult(False, None, False, digest, None, (), reason,
                       first_error_lines(result.output))


_ERROR_WORDS = ("error", "Error", "ERROR", "undefined reference", "fatal", "No such file",
                "not found", "failed")


def first_error_lines(output: str, limit: int = 8) -> tuple[str, ...]:
    """The first lines that look like the cause, not the whole log."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    hits = [line for line in lines if any(word in line for word in _ERROR_WORDS)]
    return tuple((hits or lines[-limit:])[:limit])
