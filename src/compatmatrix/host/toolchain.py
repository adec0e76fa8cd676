"""The CUDA toolchain of a build: an nvcc that matches the build torch's CUDA version.

An extension compiled by nvcc X links against the CUDA X runtime and carries code that a
driver for another major version may refuse, so a CUDA build must use an nvcc of the torch's
CUDA major version, and by default its minor too. The nvcc is, in order:

1. the one named by ``COMPATMATRIX_NVCC`` (or ``project.nvcc`` in matrix.yaml): a path, used
   as given and only checked (a major version other than torch's fails the build, naming
   both), or ``pypi`` to skip the system's;
2. the system's (``nvcc`` on PATH, ``$CUDA_HOME``, ``/usr/local/cuda-X.Y``), when its
   version is exactly torch's CUDA X.Y;
3. one installed from PyPI into the build environment, pinned to X.Y:
   ``nvidia-cuda-nvcc`` (with ``nvidia-nvvm``, ``nvidia-cuda-crt`` and ``nvidia-cuda-cccl``)
   for CUDA 13 and later. PyPI's ``nvidia-cuda-nvcc-cu12`` carries ptxas but no nvcc driver,
   so a CUDA 12 build without a matching system nvcc is ``unavailable``.

The headers torch's own headers include (cuBLAS, cuSPARSE, CCCL, ...) come from the nvidia-*
packages in the build environment, found under ``site-packages/nvidia/*/include``; nothing
is required from a system CUDA installation beyond, optionally, its nvcc.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.host import cmd as _cmd

__all__ = [
    "NVCC_ENV",
    "NVCC_RAN",
    "Nvcc",
    "Toolchain",
    "ToolchainError",
    "compile_env",
    "find_nvcc",
    "mismatch",
    "nvcc_ran",
    "nvcc_setting",
    "parse_nvcc_version",
    "prepare_toolchain",
    "pypi_requirements",
    "torch_nvcc",
]

NVCC_ENV = "COMPATMATRIX_NVCC"
PYPI = "pypi"
AUTO = "auto"
_RELEASE = re.compile(r"release (\d+)\.(\d+)(?:, V(\d+\.\d+\.\d+))?", re.ASCII)
_PROBE_TIMEOUT = 60.0


class ToolchainError(Exception):
    """No usable nvcc: ``unavailable`` when it is missing here, else a failed build."""

    def __init__(self, reason: str, details: Sequence[str] = (), *,
                 unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = tuple(details)
        self.unavailable = unavailable


@dataclass(frozen=True)
class Nvcc:
    path: Path
    version: str  # "13.0", as torch.version.cuda writes it
    full_version: str  # "13.0.88" where nvcc says so
    origin: str  # why this one, for the log and the messages
    include_dirs: tuple[Path, ...] = ()  # its toolkit's headers (cuda_runtime.h, crt/, cccl/)

    def describe(self) -> str:
        return f"nvcc {self.full_version or self.version} ({self.path}, {self.origin})"


@dataclass(frozen=True)
class Toolchain:
    nvcc: Nvcc
    cuda_home: Path  # bin/nvcc and lib64/libcudart.so, what torch's BuildExtension expects
    include_dirs: tuple[Path, ...]  # nvcc's own headers, then the build environment's nvidia-*

    def to_json(self) -> dict[str, object]:
        return {"nvcc": str(self.nvcc.path), "version": self.nvcc.full_version
                or self.nvcc.version, "origin": self.nvcc.origin,
                "cuda_home": str(self.cuda_home)}


def parse_nvcc_version(output: str) -> tuple[str, str] | None:
    """``("13.0", "13.0.88")`` from ``nvcc --version``; None when it says no release."""
    match = _RELEASE.search(output)
    if match is None:
        return None
    return f"{match[1]}.{match[2]}", match[3] or f"{match[1]}.{match[2]}"


def nvcc_setting(project_nvcc: str, env: Mapping[str, str]) -> tuple[str, str]:
    """(setting, where it comes from): COMPATMATRIX_NVCC beats matrix.yaml's project.nvcc."""
    forced = env.get(NVCC_ENV, "").strip()
    if forced:
        return forced, f"{NVCC_ENV}={forced}"
    if project_nvcc != AUTO:
        return project_nvcc, f"project.nvcc: {project_nvcc}"
    return AUTO, "found on this machine"


def mismatch(nvcc: Nvcc, torch_version: str, torch_cuda: str) -> str | None:
    """Why ``nvcc`` cannot build for this torch, or None. Only the major version must agree."""
    if nvcc.version.split(".")[0] == torch_cuda.split(".")[0]:
        return None
    return (f"{nvcc.describe()} and torch {torch_version} (CUDA {torch_cuda}) disagree on "
            f"the CUDA major version: an extension built by nvcc {nvcc.version} links the "
            f"CUDA {nvcc.version.split('.')[0]} runtime, which torch's CUDA {torch_cuda} "
            f"build does not load; use an nvcc {torch_cuda.split('.')[0]}.x")


def probe(path: Path, origin: str, env: Mapping[str, str]) -> Nvcc:
    result = _cmd.run([str(path), "--version"], env=env, timeout=_PROBE_TIMEOUT)
    version = parse_nvcc_version(result.output) if result.ok else None
    if version is None:
        raise ToolchainError(f"{path} ({origin}) does not run as nvcc",
                             result.output.strip().splitlines()[-3:])
    # --dryrun prints the settings of nvcc.profile without compiling: where its headers are,
    # which the host compiler needs too (torch's CUDA headers include cuda_runtime_api.h).
    dry = _cmd.run([str(path), "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                   env=env, timeout=_PROBE_TIMEOUT)
    return Nvcc(path, version[0], version[1], origin, parse_include_dirs(dry.output))


def parse_include_dirs(dryrun: str) -> tuple[Path, ...]:
    """The existing folders of INCLUDES and SYSTEM_INCLUDES in ``nvcc --dryrun`` output."""
    found: list[Path] = []
    for line in dryrun.splitlines():
        name, _, value = line.removeprefix("#$ ").partition("=")
        if name not in ("INCLUDES", "SYSTEM_INCLUDES"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:  # an unbalanced quote: not nvcc's own output, nothing to read
            continue
        for before, word in zip(["", *words], words, strict=False):
            folder = word[2:] if word.startswith("-I") and len(word) > 2 else (
                word if before == "-isystem" else "")
            path = Path(os.path.normpath(folder)) if folder else None
            if path is not None and path.is_dir() and path not in found:
                found.append(path)
    return tuple(found)


def system_candidates(env: Mapping[str, str], cuda: str) -> list[Path]:
    """Where a system nvcc may be, most specific to the environment first."""
    found: list[Path] = []
    on_path = shutil.which("nvcc", path=env.get("PATH", os.defpath))
    if on_path:
        found.append(Path(on_path))
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(variable):
            found.append(Path(env[variable]) / "bin" / "nvcc")
    found += [Path(f"/usr/local/cuda-{cuda}/bin/nvcc"), Path("/usr/local/cuda/bin/nvcc")]
    unique: dict[Path, Path] = {}
    for path in found:
        if path.is_file() and os.access(path, os.X_OK):
            unique.setdefault(path.resolve(), path)
    return list(unique.values())


def find_nvcc(env: Mapping[str, str], cuda: str) -> tuple[Nvcc | None, list[str]]:
    """A system nvcc whose version is exactly ``cuda``, and what else was seen: the build's
    search order (see :func:`torch_nvcc` for torch's own)."""
    seen = []
    for path in system_candidates(env, cuda):
        try:
            nvcc = probe(path, "system", env)
        except ToolchainError as exc:
            seen.append(exc.reason)
            continue
        if nvcc.version == cuda:
            return nvcc, seen
        seen.append(f"{nvcc.describe()} is not CUDA {cuda}")
    return None, seen


def pypi_requirements(cuda: str) -> list[str]:
    """The PyPI packages that carry nvcc ``cuda`` (X.Y) and the headers it needs."""
    major = int(cuda.split(".")[0])
    names: tuple[str, ...]
    if major >= 13:
        names = ("nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-cuda-crt", "nvidia-cuda-cccl")
    elif major == 12:
        names = ("nvidia-cuda-nvcc-cu12", "nvidia-cuda-cccl-cu12")
    else:
        raise ToolchainError(f"PyPI carries no nvcc for CUDA {cuda} (only for 12.x and 13.x)",
                             unavailable=True)
    return [f"{name}=={cuda}.*" for name in names]


def pypi_nvcc(site_packages: Path, cuda: str) -> Path | None:
    major = cuda.split(".")[0]
    for folder in (f"cu{major}", "cuda_nvcc"):
        path = site_packages / "nvidia" / folder / "bin" / "nvcc"
        if path.is_file():
            return path
    return None


def install_from_pypi(cuda: str, *, python: Path, site_packages: Path, uv: Sequence[str],
                      source_args: Sequence[str], env: Mapping[str, str], log: Path,
                      timeout: float) -> Nvcc:
    requirements = pypi_requirements(cuda)
    result = _cmd.run([*uv, "pip", "install", "--quiet", "--python", str(python),
                       *requirements, *source_args], log=log, env=env, timeout=timeout)
    if not result.ok:
        raise ToolchainError(f"could not install nvcc {cuda} from PyPI "
                             f"({' '.join(requirements)})",
                             result.output.strip().splitlines()[-5:], unavailable=True)
    path = pypi_nvcc(site_packages, cuda)
    if path is None:
        raise ToolchainError(
            f"no nvcc {cuda} here: PyPI's {requirements[0].split('==')[0]} installed, but it "
            "carries ptxas and no nvcc driver; install a CUDA "
            f"{cuda} toolkit (found at /usr/local/cuda-{cuda}, on PATH or via CUDA_HOME), "
            f"or point {NVCC_ENV} at its nvcc", unavailable=True)
    return probe(path, f"PyPI {requirements[0]}", env)


def header_dirs(site_dirs: Sequence[Path]) -> tuple[Path, ...]:
    """The include folders of the nvidia-* packages (and CCCL's, which nvcc 13 needs)."""
    found = [p for site in site_dirs for p in sorted((site / "nvidia").glob("*/include"))
             if p.is_dir()]
    cccl = [p / "cccl" for p in found if (p / "cccl").is_dir()]
    return tuple(found + cccl)


def cudart(site_dirs: Sequence[Path], nvcc: Nvcc) -> Path | None:
    """The CUDA runtime torch loads (the build environment's), else the toolkit's."""
    major = nvcc.version.split(".")[0]
    for site in site_dirs:
        for candidate in sorted((site / "nvidia").glob(f"*/lib/libcudart.so.{major}*")):
            return candidate
    toolkit = nvcc.path.resolve().parent.parent
    for folder in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
        if (toolkit / folder / "libcudart.so").exists():
            return toolkit / folder / "libcudart.so"
    return None


NVCC_RAN = "nvcc-ran"  # written into the CUDA_HOME by its nvcc scripts when they start


def nvcc_ran(cuda_home: Path) -> bool:
    return (cuda_home / NVCC_RAN).exists()


def cuda_home(root: Path, nvcc: Nvcc, runtime: Path | None) -> Path:
    """A CUDA_HOME for torch's BuildExtension: ``bin/nvcc`` and ``lib64/libcudart.so``.

    nvcc finds its own tools next to the file it was started as, so bin/nvcc is a script
    that execs the real one rather than a symbolic link. torch links with ``-lcudart``, and
    the nvidia-* packages ship only ``libcudart.so.N``: lib64 holds the unversioned name.
    """
    shutil.rmtree(root, ignore_errors=True)
    (root / "bin").mkdir(parents=True)
    (root / "lib64").mkdir()
    if nvcc.include_dirs:  # torch adds CUDA_HOME/include to every compile
        (root / "include").symlink_to(nvcc.include_dirs[0])
    # Each script leaves NVCC_RAN behind when it starts: the build then knows whether nvcc
    # ran at all (a setup.py that compiles CUDA only when it sees a GPU never starts it).
    ran = shlex.quote(str(root / NVCC_RAN))
    script = root / "bin" / "nvcc"
    script.write_text(f"#!/bin/sh\n: > {ran}\nexec {shlex.quote(str(nvcc.path))} \"$@\"\n",
                      encoding="utf-8")
    script.chmod(0o755)

    if runtime is not None:
        (root / "lib64" / "libcudart.so").symlink_to(runtime)
    return root


def prepare_toolchain(*, setting: tuple[str, str], torch_version: str, torch_cuda: str,
                      root: Path, python: Path, site_dirs: Sequence[Path], uv: Sequence[str],
                      source_args: Sequence[str], env: Mapping[str, str], log: Path,
                      timeout: float) -> Toolchain:
    """The nvcc for a build against torch ``torch_version`` (CUDA ``torch_cuda``).

    ``site_dirs`` are the build environment's site-packages (its own first, where a PyPI nvcc
    goes, then the one torch is in). Raises ToolchainError when there is no nvcc, or when
    the one forced disagrees with torch.
    """
    value, origin = setting
    nvcc: Nvcc | None = None
    seen: list[str] = []
    if value not in (AUTO, PYPI):
        nvcc = probe(Path(value).expanduser(), origin, env)
    elif value == AUTO:
        nvcc, seen = find_nvcc(env, torch_cuda)
    if nvcc is None:
        try:
            nvcc = install_from_pypi(torch_cuda, python=python, site_packages=site_dirs[0],
                                     uv=uv, source_args=source_args, env=env, log=log,
                                     timeout=timeout)
        except ToolchainError as exc:  # say what the system had, too
            raise ToolchainError(exc.reason, [*seen, *exc.details],
                                 unavailable=exc.unavailable) from None
    problem = mismatch(nvcc, torch_version, torch_cuda)
    if problem:
        raise ToolchainError(problem, seen)
    _note(log, f"{nvcc.describe()} builds for torch {torch_version} (CUDA {torch_cuda})"
               + ("" if nvcc.version == torch_cuda else "; the minor versions differ"))
    home = cuda_home(root, nvcc, cudart(site_dirs, nvcc))
    headers = [*nvcc.include_dirs, *(d for d in header_dirs(site_dirs)
                                     if d not in nvcc.include_dirs)]
    return Toolchain(nvcc, home, tuple(headers))


def compile_env(env: Mapping[str, str], toolchain: Toolchain,
                archs: Sequence[str]) -> dict[str, str]:
    """What torch's BuildExtension reads to compile CUDA sources with ``toolchain``."""
    result = dict(env)
    home = toolchain.cuda_home
    result["CUDA_HOME"] = str(home)
    result.pop("CUDA_PATH", None)
    result["PATH"] = os.pathsep.join(filter(None, (str(home / "bin"), env.get("PATH"))))
    result["CPATH"] = _joined(toolchain.include_dirs, env.get("CPATH"))
    result["LIBRARY_PATH"] = _joined((home / "lib64",), env.get("LIBRARY_PATH"))
    result["TORCH_CUDA_ARCH_LIST"] = ";".join(archs)
    ccache = shutil.which("ccache", path=env.get("PATH"))
    if ccache:  # torch's PYTORCH_NVCC, through ccache; a cache hit counts as a run too
        wrapped = home / "bin" / "nvcc-ccache"
        wrapped.write_text(f"#!/bin/sh\n: > {shlex.quote(str(home / NVCC_RAN))}\nexec "
                           f"{shlex.quote(ccache)} {shlex.quote(str(home / 'bin' / 'nvcc'))} "
                           "\"$@\"\n", encoding="utf-8")
        wrapped.chmod(0o755)
        result.setdefault("PYTORCH_NVCC", str(wrapped))
    # torch hands $CC to nvcc as -ccbin, which must name one program
    if result.get("CC", "").startswith("ccache "):
        del result["CC"]
    return result


def _joined(first: Sequence[Path], rest: str | None) -> str:
    return os.pathsep.join([*(str(p) for p in first), *([rest] if rest else [])])


def _note(log: Path, text: str) -> None:
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"[compatmatrix] {text}\n")


def torch_nvcc(process_env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The nvcc torch.utils.cpp_extension would use in ``process_env``, and how it was found.

    One of the two nvcc search orders, named for what they answer. This one is torch's own
    (``$CUDA_HOME``, ``$CUDA_PATH``, ``PATH``, ``/usr/local/cuda``: the first found wins,
    whatever its version): what a build in that environment would run, which doctor reports.
    :func:`find_nvcc` is the build's: the most specific place first, and only an nvcc whose
    version is exactly torch's CUDA.
    """
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if process_env.get(variable):
            return Path(process_env[variable]) / "bin" / "nvcc", f"${variable}"
    on_path = shutil.which("nvcc", path=process_env.get("PATH"))
    if on_path is not None:
        return Path(on_path), "PATH"
    default = Path("/usr/local/cuda/bin/nvcc")
    return (default, "/usr/local/cuda") if default.exists() else (None, "")
