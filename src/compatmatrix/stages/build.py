"""Stage 2, build: one wheel per build key, in a build environment whose torch is the cell's.

The wheel is cached under ``wheels/<build key>/<digest>/`` where the digest covers the
source files, the exact torch, the build requirements and the build settings (CUDA
architectures, the nvcc asked for); a second cell with the same inputs reuses it. A file lock
per build key means two cells never build the same key at the same time. The source is copied
per build key, so builds against different torch versions never share object files; ccache
(when present) makes the copy cheap.

When the build torch has CUDA and the sources hold CUDA files (``.cu``, ``.cuh``), the build
gets an nvcc matching torch's CUDA version (see :mod:`compatmatrix.toolchain`) and compiles
for the matrix's ``project.cuda_archs`` (``TORCH_CUDA_ARCH_LIST``). A torch that is the
interpreter's own (``torch: preinstalled``) is used where it is: the build venv sees the
interpreter's site-packages and installs no torch.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from compatmatrix._text import short_hash
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import error_lines
from compatmatrix.host.probe import probe
from compatmatrix.host.safeio import MiB, loads_strict, read_bounded, write_json_atomic
from compatmatrix.host.toolchain import (
    AUTO,
    Toolchain,
    ToolchainError,
    compile_env,
    nvcc_ran,
    prepare_toolchain,
)
from compatmatrix.host.uv import Sources, pin_line, uv_source_args
from compatmatrix.model.project import BuildSystem, ProjectMeta, parse_metadata
from compatmatrix.model.spec import DEFAULT_CUDA_ARCHS
from compatmatrix.model.workdir import WorkDir

__all__ = ["DEFAULT_CUDA_ARCHS", "BuildRequest", "BuildResult", "MetadataRequest",
           "MetadataResult", "TorchFacts", "build_wheel",
           "prepare_metadata", "read_torch_facts"]

BUILD_SETTINGS_VERSION = "2"  # bump when the way we build changes
CUDA_SUFFIXES = (".cu", ".cuh")


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    build_key: str
    project: Path
    files: tuple[Path, ...]          # the build input, relative to project (sources.py)
    source_digest: str               # their digest, computed once per run
    interpreter: Path
    torch_version: str | None       # exact, from the lock; None when torch is not used
    build_requires: tuple[str, ...]
    sources: Sources
    jobs: int = 1
    cuda_archs: tuple[str, ...] = DEFAULT_CUDA_ARCHS
    nvcc: tuple[str, str] = (AUTO, "found on this machine")  # toolchain.nvcc_setting
    torch_preinstalled: bool = False  # torch is the interpreter's own: install none


@dataclasses.dataclass(frozen=True)
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
    unavailable: bool = False  # what the build needs is missing here (e.g. a matching nvcc)
    torch_cuda: str | None = None  # torch.version.cuda of the build torch
    cuda_compiled: bool = False  # nvcc ran during the build (its scripts say so)
    toolchain: dict[str, object] | None = None


@dataclasses.dataclass(frozen=True)
class TorchFacts:
    """The torch of an environment, read from its files without importing it (fast)."""

    version: str | None
    cuda: str | None
    root: Path | None  # the torch package folder
    purelib: Path  # the environment's own site-packages

    @property
    def site_dirs(self) -> tuple[Path, ...]:
        dirs = [self.purelib]
        if self.root is not None and self.root.parent not in dirs:
            dirs.append(self.root.parent)
        return tuple(dirs)


def build_wheel(request: BuildRequest, *, workdir: WorkDir, uv: Sequence[str],
                env: Mapping[str, str], log: Path, timeout: float) -> BuildResult:
    start = time.monotonic()
    files = list(request.files)
    digest = _digest(request)
    out = workdir.wheel_dir(request.build_key, digest)
    build_dir = workdir.build_dir(request.build_key)
    with _locked(workdir.root / "wheels" / request.build_key / ".lock"):
        cached = _cached(out, build_dir)
        if cached is not None:
            return cached
        result = _build(request, files, digest, out, build_dir, uv=uv, env=env, log=log,
                        timeout=timeout)
    return BuildResult(**{**result.__dict__, "duration": time.monotonic() - start})


def _digest(request: BuildRequest) -> str:
    parts: dict[str, Any] = {
        "source": request.source_digest,
        "torch": request.torch_version,
        "build_requires": sorted(request.build_requires),
        "settings": BUILD_SETTINGS_VERSION,
        # non-abi3 keys already name the Python; abi3 wheels do not depend on its patch level
        "python_abi": request.build_key.split("-")[0],
    }
    if _has_cuda_sources(request.files):
        parts["cuda"] = {"archs": list(request.cuda_archs), "nvcc": request.nvcc[0]}
    if request.torch_preinstalled:
        # the torch is whatever the interpreter has: a different interpreter, a new build
        parts["interpreter"] = str(request.interpreter)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _has_cuda_sources(files: Sequence[Path]) -> bool:
    return any(f.suffix in CUDA_SUFFIXES for f in files)


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
    try:
        info = loads_strict(read_bounded(info_path, MiB))
        wheel = out / str(info["wheel"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # damaged: built again
    if not isinstance(info, dict) or not wheel.is_file():
        return None
    return BuildResult(True, wheel, True, out.name, info.get("torch"),
                       tuple(Path(p) for p in info.get("torch_lib_dirs", [])),
                       torch_cuda=info.get("torch_cuda"),
                       cuda_compiled=bool(info.get("cuda_compiled")),
                       toolchain=info.get("toolchain"))


def _build(request: BuildRequest, files: list[Path], digest: str, out: Path, build_dir: Path,
           *, uv: Sequence[str], env: Mapping[str, str], log: Path,
           timeout: float) -> BuildResult:
    deadline = time.monotonic() + timeout
    venv = _env_dir(build_dir, request.interpreter)
    python = venv / "bin" / "python"
    problem = _build_env(request, venv, uv=uv, env=env, log=log, deadline=deadline)
    if problem is not None:
        return dataclasses.replace(problem, digest=digest)
    facts = read_torch_facts(python, log=log)
    torch_version = facts.version if request.torch_preinstalled else request.torch_version
    if request.torch_preinstalled and facts.version is None:
        return BuildResult(False, None, False, digest, None, (), (
            f"the cell's torch is preinstalled, but {request.interpreter} has no torch"))
    try:
        toolchain = _toolchain(request, files, facts, build_dir, python, uv=uv, env=env,
                               log=log, deadline=deadline)
    except ToolchainError as exc:
        return BuildResult(False, None, False, digest, torch_version, (), exc.reason,
                           exc.details, unavailable=exc.unavailable, torch_cuda=facts.cuda)
    build_env = _compile_env(env, build_dir / "src", request.jobs, build_dir / "ccache")
    if toolchain is not None:
        build_env = compile_env(build_env, toolchain, request.cuda_archs)
    wheel = _compile_wheel(request, files, digest, out, build_dir, python, uv=uv,
                           env=build_env, log=log, deadline=deadline)
    if isinstance(wheel, BuildResult):
        return wheel
    info = _build_info(request, wheel, torch_version, facts, toolchain)
    write_json_atomic(wheel.parent / "build.json", info)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(wheel.parent, out)
    return BuildResult(True, out / wheel.name, False, digest, torch_version,
                       _torch_lib_dirs(facts), torch_cuda=facts.cuda,
                       cuda_compiled=bool(info["cuda_compiled"]), toolchain=info["toolchain"])


def _compile_wheel(request: BuildRequest, files: list[Path], digest: str, out: Path,
                   build_dir: Path, python: Path, *, uv: Sequence[str], env: Mapping[str, str],
                   log: Path, deadline: float) -> Path | BuildResult:
    """The wheel, built into a staging folder beside ``out``; or the failed result."""
    src = _copy_source(request.project, files, build_dir / "src")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = _cmd.run([*uv, "build", "--wheel", "--no-build-isolation", "--python", str(python),
                       "--out-dir", str(staging), str(src)],
                      log=log, env=env, timeout=_left(deadline))
    if not result.ok:
        return _failed(digest, "the wheel did not build", result)
    wheels = sorted(staging.glob("*.whl"))
    if len(wheels) != 1:
        return BuildResult(False, None, False, digest, None, (),
                           f"the build produced {len(wheels)} wheels, expected 1")
    return wheels[0]


def _build_env(request: BuildRequest, venv: Path, *, uv: Sequence[str], env: Mapping[str, str],
               log: Path, deadline: float) -> BuildResult | None:
    """Create the build venv with the build requirements; a failed result, or None."""
    failed = _ensure_env(venv, request.interpreter, _build_requirements(request),
                         request.sources, request.torch_preinstalled, uv=uv, env=env, log=log,
                         deadline=deadline)
    return None if failed is None else _failed("", "could not set up the build environment",
                                               failed)


_ENV_MARKER = ".compatmatrix-env.json"


def _env_dir(build_dir: Path, interpreter: Path) -> Path:
    """The build venv of one interpreter for a build key. An abi3 key's cells have several
    Pythons, and each reads the metadata with its own: one venv each, so none recreates the
    venv whose torch libraries a wheel built earlier in the run is audited against."""
    return build_dir / f"env-{short_hash(str(interpreter))}"


def _ensure_env(venv: Path, interpreter: Path, requirements: Sequence[str], sources: Sources,
                system_site: bool, *, uv: Sequence[str], env: Mapping[str, str], log: Path,
                deadline: float) -> _cmd.CommandResult | None:
    """A venv of ``interpreter`` holding exactly ``requirements``; the failed command, or None.

    A venv made earlier with the same settings (by the metadata step, or a previous build of
    this key) is kept: recreating it costs seconds per cell for nothing.
    """
    python = venv / "bin" / "python"
    settings = {"interpreter": str(interpreter), "requirements": list(requirements),
                "sources": uv_source_args(sources), "system_site": system_site}
    marker = venv / _ENV_MARKER
    try:
        if python.exists() and json.loads(marker.read_text(encoding="utf-8")) == settings:
            return None
    except (OSError, ValueError):
        pass
    create = [*uv, "venv", "--quiet", "--clear", "--python", str(interpreter), str(venv)]
    if system_site:
        create.append("--system-site-packages")  # where the interpreter's torch is
    steps = [create]
    if requirements:
        steps.append([*uv, "pip", "install", "--quiet", "--python", str(python),
                      *requirements, *uv_source_args(sources)])
    for argv in steps:
        result = _cmd.run(argv, log=log, env=env, timeout=_left(deadline))
        if not result.ok:
            return result
    write_json_atomic(marker, settings)
    return None


# -- the project's metadata, from its build backend -----------------------------------------

@dataclasses.dataclass(frozen=True)
class MetadataRequest:
    """Ask the build backend for the project's metadata (PEP 517), before anything resolves:
    what setup.py computes (often from the torch it imports) decides what the cell needs."""

    build_key: str
    project: Path
    files: tuple[Path, ...]
    source_digest: str
    interpreter: Path
    build_system: BuildSystem
    torch_requirement: str | None  # the cell's torch as an axis requirement; None: no torch
    sources: Sources
    torch_preinstalled: bool = False


@dataclasses.dataclass(frozen=True)
class MetadataResult:
    meta: ProjectMeta | None
    reason: str = ""
    details: tuple[str, ...] = ()
    duration: float = 0.0
    cached: bool = False


_PREPARE_METADATA = r"""
import importlib, json, os, sys, tempfile, zipfile
backend_name, backend_path, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sys.path[:0] = [os.path.abspath(p) for p in backend_path]
module, _, attrs = backend_name.partition(":")
backend = importlib.import_module(module)
for attr in filter(None, attrs.split(".")):
    backend = getattr(backend, attr)
hook = getattr(backend, "prepare_metadata_for_build_wheel", None)
if hook is not None:
    with open(os.path.join(out, hook(out, {}), "METADATA"), encoding="utf-8") as f:
        text = f.read()
else:  # optional in PEP 517: build the wheel and read its METADATA
    wheel = os.path.join(out, backend.build_wheel(out, {}))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode("utf-8")
print("COMPATMATRIX-METADATA " + json.dumps({"metadata": text}))
"""


def prepare_metadata(request: MetadataRequest, *, workdir: WorkDir, uv: Sequence[str],
                     env: Mapping[str, str], log: Path, timeout: float) -> MetadataResult:
    """The backend's metadata for the project, cached per build key and inputs."""
    start = time.monotonic()
    digest = hashlib.sha256(json.dumps({
        "source": request.source_digest, "torch": request.torch_requirement,
        "backend": dataclasses.asdict(request.build_system),
        "interpreter": str(request.interpreter), "sources": uv_source_args(request.sources),
        "settings": BUILD_SETTINGS_VERSION}, sort_keys=True).encode()).hexdigest()[:16]
    cache = workdir.metadata(request.build_key, digest)
    with _locked(workdir.root / "wheels" / request.build_key / ".lock"):
        try:
            meta = ProjectMeta.from_json(json.loads(cache.read_text(encoding="utf-8")))
            return MetadataResult(meta, duration=time.monotonic() - start, cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        result = _prepare_metadata(request, workdir.build_dir(request.build_key), uv=uv,
                                   env=env, log=log, deadline=time.monotonic() + timeout)
        if result.meta is not None:
            write_json_atomic(cache, result.meta.to_json())
    return dataclasses.replace(result, duration=time.monotonic() - start)


def _prepare_metadata(request: MetadataRequest, build_dir: Path, *, uv: Sequence[str],
                      env: Mapping[str, str], log: Path, deadline: float) -> MetadataResult:
    backend = request.build_system.backend
    requirements = [r for r in request.build_system.requires if not _is_torch(r)]
    if request.torch_requirement is not None:
        requirements.append(request.torch_requirement)
    venv = _env_dir(build_dir, request.interpreter)
    failed = _ensure_env(venv, request.interpreter, requirements, request.sources,
                         request.torch_preinstalled, uv=uv, env=env, log=log, deadline=deadline)
    if failed is not None:
        return MetadataResult(None, "could not set up the build environment to read the "
                              "package's metadata", error_lines(failed.output))
    src = _copy_source(request.project, list(request.files), build_dir / "metadata-src")
    out = build_dir / "metadata-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    answer = probe(venv / "bin" / "python", _PREPARE_METADATA, backend,
                   json.dumps(list(request.build_system.backend_path)), str(out),
                   tag="COMPATMATRIX-METADATA", log=log, cwd=src, env=env,
                   timeout=_left(deadline))
    done = answer.result
    text = (answer.data or {}).get("metadata")
    if not done.ok or not isinstance(text, str):
        why = "timed out" if done.timed_out else f"exit {done.returncode}"
        return MetadataResult(None, f"the build backend ({backend}) could not prepare the "
                              f"package's metadata ({why})", error_lines(done.output))
    try:
        return MetadataResult(parse_metadata(text, f"the build backend ({backend})"))
    except ValueError as exc:
        return MetadataResult(None, f"the build backend ({backend}) prepared metadata that "
                              f"cannot be read: {exc}")




def _is_torch(requirement: str) -> bool:
    try:
        return canonicalize_name(Requirement(requirement).name) == "torch"
    except InvalidRequirement:
        return False


def _toolchain(request: BuildRequest, files: Sequence[Path], facts: TorchFacts, build_dir: Path,
               python: Path, *, uv: Sequence[str], env: Mapping[str, str], log: Path,
               deadline: float) -> Toolchain | None:
    """The nvcc for this build, or None when nothing is compiled for CUDA."""
    if facts.cuda is None or facts.version is None or not _has_cuda_sources(files):
        return None
    return prepare_toolchain(
        setting=request.nvcc, torch_version=facts.version, torch_cuda=facts.cuda,
        root=build_dir / "cuda", python=python, site_dirs=facts.site_dirs, uv=uv,
        source_args=uv_source_args(request.sources), env=env, log=log,
        timeout=_left(deadline))


def _build_info(request: BuildRequest, wheel: Path, torch_version: str | None,
                facts: TorchFacts, toolchain: Toolchain | None) -> dict[str, Any]:
    return {
        "wheel": wheel.name, "torch": torch_version, "build_key": request.build_key,
        "torch_lib_dirs": [str(p) for p in _torch_lib_dirs(facts)],
        "interpreter": str(request.interpreter), "torch_cuda": facts.cuda,
        "cuda_compiled": toolchain is not None and nvcc_ran(toolchain.cuda_home),
        "toolchain": None if toolchain is None else {
            **toolchain.to_json(), "cuda_archs": list(request.cuda_archs)},
    }


def _build_requirements(request: BuildRequest) -> list[str]:
    reqs = [r for r in request.build_requires if not _is_torch(r)]
    if request.torch_version is not None and not request.torch_preinstalled:
        reqs.append(pin_line("torch", request.torch_version))  # exactly the cell's torch
    return reqs


_TORCH_FACTS = r"""
import importlib.util, json, pathlib, re, sysconfig
facts = {"purelib": sysconfig.get_paths()["purelib"], "version": None, "cuda": None,
         "root": None}
spec = importlib.util.find_spec("torch")
if spec is not None and spec.submodule_search_locations:
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    text = (root / "version.py").read_text()
    def field(name):
        found = re.search(r"^%s\b[^=\n]*=\s*['\"]([^'\"]+)['\"]" % name, text, re.M)
        return found.group(1) if found else None
    facts.update(version=field("__version__"), cuda=field("cuda"), root=str(root))
print("COMPATMATRIX-TORCH " + json.dumps(facts))
"""


def read_torch_facts(python: Path, *, log: Path | None = None) -> TorchFacts:
    """torch's version and CUDA as the environment of ``python`` has them (no import)."""
    data = probe(python, _TORCH_FACTS, tag="COMPATMATRIX-TORCH", log=log, timeout=60).data
    # a line of another shape (forged, garbled) is no answer: as if torch were not found
    if data is not None and data.get("purelib") and all(
            isinstance(data.get(key), (str, type(None))) and "\0" not in (data.get(key) or "")
            for key in ("version", "cuda", "root", "purelib")):
        return TorchFacts(data["version"], data["cuda"],
                          Path(data["root"]) if data["root"] else None, Path(data["purelib"]))
    return TorchFacts(None, None, None, python.parent.parent)


def _copy_source(project: Path, files: list[Path], dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, target)
    return dest


COMPILER_NAMES = ("cc", "c++", "gcc", "g++")


def _compile_env(env: Mapping[str, str], src: Path, jobs: int,
                 tools: Path) -> dict[str, str]:
    result = dict(env)
    result.setdefault("MAX_JOBS", str(max(1, jobs)))  # torch's ninja builds honour it
    ccache = shutil.which("ccache", path=env.get("PATH"))
    if ccache:
        # ccache as the compilers on PATH (its "masquerade" mode: it runs the real one next
        # on PATH), not CXX="ccache g++": before a CUDA build torch checks the compiler that
        # CXX names, and refuses "ccache" as a compiler of version 0.0.0.
        _masquerade(tools, Path(ccache))
        result["PATH"] = os.pathsep.join([str(tools), env.get("PATH", os.defpath)])
        result.setdefault("CCACHE_BASEDIR", str(src))  # hits across per-key source copies
        result.setdefault("CCACHE_NOHASHDIR", "1")
    return result


def _masquerade(tools: Path, ccache: Path) -> None:
    shutil.rmtree(tools, ignore_errors=True)
    tools.mkdir(parents=True)
    for name in COMPILER_NAMES:
        (tools / name).symlink_to(ccache)


def _torch_lib_dirs(facts: TorchFacts) -> tuple[Path, ...]:
    if facts.root is None or not (facts.root / "lib").is_dir():
        return ()
    return (facts.root / "lib",)


def _left(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())


def _failed(digest: str, reason: str, result: _cmd.CommandResult) -> BuildResult:
    if result.timed_out:
        reason = f"{reason}: timed out"
    return BuildResult(False, None, False, digest, None, (), reason,
                       error_lines(result.output))
