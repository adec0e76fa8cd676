"""Doctor checks 2 and 3: torch itself, and the CUDA toolchain next to it.

torch is imported in a subprocess of the inspected interpreter (it may crash or hang; this
process never imports it). nvcc is found the way ``torch.utils.cpp_extension`` finds it, since
that is the nvcc an extension build will use, and compared with the CUDA torch was built with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from compatmatrix.doctor.environment import CannotInspect, Environment, Installer
from compatmatrix.doctor.finding import ERROR, INFO, WARNING, DoctorFinding
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.gpu import Capabilities
from compatmatrix.host.safeio import tagged_json
from compatmatrix.host.toolchain import parse_nvcc_version, torch_nvcc

__all__ = [
    "TORCH_TIMEOUT",
    "NvccFacts",
    "TorchCheck",
    "cuda_findings",
    "torch_facts",
    "torch_findings",
]

TORCH_TIMEOUT = 120.0  # importing torch and torch._dynamo from a cold disk is slow
NVCC_TIMEOUT = 10.0
_TAG = "COMPATMATRIX-DOCTOR "
COMPILE_MODULES = ("torch._inductor.config", "torch._dynamo")  # what torch.compile imports

# Facts are printed as soon as they are known, so that a later crash or hang keeps them.
_FACTS = r"""
import importlib, json, os, sys
def emit(**fields):
    print("COMPATMATRIX-DOCTOR " + json.dumps(fields), flush=True)
try:
    import torch
except BaseException as exc:
    emit(torch_error="%s: %s" % (type(exc).__name__, exc))
    sys.exit(0)
emit(torch={"version": str(torch.__version__), "cuda": torch.version.cuda,
            "hip": getattr(torch.version, "hip", None),
            "cxx11_abi": bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True)),
            "lib": os.path.join(os.path.dirname(torch.__file__), "lib")})
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        emit(module=name, error=None)
    except BaseException as exc:
        emit(module=name, error="%s: %s" % (type(exc).__name__, exc))
try:
    emit(cuda_available=bool(torch.cuda.is_available()))
except BaseException as exc:
    emit(cuda_available=False)
"""


@dataclass(frozen=True)
class TorchCheck:
    version: str | None = None  # None: torch did not import
    cuda: str | None = None
    hip: str | None = None
    cxx11_abi: bool | None = None
    lib: str | None = None
    modules: Mapping[str, str | None] = field(default_factory=dict)  # module -> error
    cuda_available: bool | None = None
    error: str = ""  # why torch did not import, or why the facts are incomplete

    @property
    def variant(self) -> str:
        if self.cuda:
            return f"a CUDA {self.cuda} build"
        if self.hip:
            return f"a ROCm {self.hip} build"
        return "a CPU build"

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "cuda": self.cuda, "hip": self.hip,
                "cxx11_abi": self.cxx11_abi, "lib": self.lib, "modules": dict(self.modules),
                "cuda_available": self.cuda_available, "error": self.error or None}


@dataclass(frozen=True)
class NvccFacts:
    path: str | None  # the nvcc a build would run; None when there is none
    found_by: str  # "$CUDA_HOME", "PATH", ...
    version: str | None = None  # "13.0"
    error: str = ""

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "found_by": self.found_by, "version": self.version,
                "error": self.error or None}


# -- facts ------------------------------------------------------------------------------------


def torch_facts(env: Environment, process_env: Mapping[str, str],
                timeout: float = TORCH_TIMEOUT) -> TorchCheck:
    result = _cmd.run([str(env.python), "-c", _FACTS, *COMPILE_MODULES], env=process_env,
                      timeout=timeout)
    facts: dict[str, object] = {}
    modules: dict[str, str | None] = {}
    for line in result.output.splitlines():
        if not line.startswith(_TAG):
            continue
        found = tagged_json([line], _TAG)
        if not found or not _event_ok(found[0]):
            raise CannotInspect(f"cannot inspect {env.python}: the torch check's answer is "
                                f"not what it prints (a forged or garbled line: {line[:120]})")
        event = found[0]
        if "module" in event:
            modules[event["module"]] = event["error"]
        facts.update(event)
    torch = facts.get("torch")
    if not isinstance(torch, dict):
        error = str(facts.get("torch_error") or _died(result, "importing torch"))
        return TorchCheck(error=error)
    error = "" if result.ok else _died(result, "the torch check")
    return TorchCheck(version=torch["version"], cuda=torch["cuda"], hip=torch["hip"],
                      cxx11_abi=torch["cxx11_abi"], lib=torch["lib"], modules=modules,
                      cuda_available=_optional_bool(facts.get("cuda_available")), error=error)


_TORCH_FIELDS = {"version": (str,), "cuda": (str, type(None)), "hip": (str, type(None)),
                 "cxx11_abi": (bool,), "lib": (str,)}


def _event_ok(event: Mapping[str, object]) -> bool:
    """Whether ``event`` is one of the lines the facts script prints, with their types."""
    keys = set(event)
    if keys == {"torch_error"}:
        return isinstance(event["torch_error"], str)
    if keys == {"torch"}:
        torch = event["torch"]
        return isinstance(torch, dict) and all(
            isinstance(torch.get(name), types) for name, types in _TORCH_FIELDS.items())
    if keys == {"module", "error"}:
        return isinstance(event["module"], str) and isinstance(event["error"], (str, type(None)))
    return keys == {"cuda_available"} and isinstance(event["cuda_available"], bool)


def _optional_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _died(result: _cmd.CommandResult, what: str) -> str:
    if result.timed_out:
        return f"{what} did not finish within {TORCH_TIMEOUT:g} s"
    if result.returncode < 0:
        return f"{what} crashed (signal {-result.returncode})"
    lines = [line for line in result.output.splitlines() if line.strip()]
    return f"{what} exited with {result.returncode}: {lines[-1] if lines else 'no output'}"




def nvcc_facts(process_env: Mapping[str, str]) -> NvccFacts:
    path, found_by = torch_nvcc(process_env)
    if path is None:
        return NvccFacts(None, "", error="not found ($CUDA_HOME and $CUDA_PATH are unset, no nvcc "
                                    "on PATH, no /usr/local/cuda)")
    if not path.exists():
        return NvccFacts(str(path), found_by, error=f"{found_by} points to {path.parent.parent}, "
                                               "which has no bin/nvcc")
    result = _cmd.run([str(path), "--version"], env=process_env, timeout=NVCC_TIMEOUT)
    version = parse_nvcc_version(result.output) if result.ok else None
    if version is None:
        return NvccFacts(str(path), found_by, error=f"`{path} --version` failed: "
                                               f"{result.output.strip()[-200:]}")
    return NvccFacts(str(path), found_by, version[0])


# -- findings ---------------------------------------------------------------------------------


def torch_findings(facts: TorchCheck | None, env: Environment,
                   installed_version: str | None) -> list[DoctorFinding]:
    if facts is None:
        return [DoctorFinding("torch", INFO, "torch", "torch is not installed",
                        "The torch, CUDA toolchain and extension checks have nothing to check.")]
    reinstall = env.installer.command("--force-reinstall", f"torch=={installed_version}")
    if facts.version is None:
        return [DoctorFinding("torch", ERROR, "torch", f"torch does not import: {facts.error}",
                        "Everything built on torch fails the same way. A reinstall restores "
                        "missing or damaged files and torch's own requirements.", reinstall)]
    abi = "cxx11" if facts.cxx11_abi else "pre-cxx11"
    findings = [DoctorFinding(
        "torch", INFO, "torch",
        f"torch {facts.version}, {facts.variant}, C++ ABI {abi} "
        f"(torch._C._GLIBCXX_USE_CXX11_ABI = {facts.cxx11_abi})",
        f"Extensions must be built against this torch, with -D_GLIBCXX_USE_CXX11_ABI="
        f"{int(bool(facts.cxx11_abi))}" + (f" and CUDA {facts.cuda}" if facts.cuda else "") +
        ", to load here.")]
    findings += _compile_findings(facts, env.installer, reinstall)
    if facts.error:
        findings.append(DoctorFinding("torch", WARNING, "torch", f"the torch check stopped early: "
                                f"{facts.error}", "Some torch facts are missing."))
    return findings


def _compile_findings(facts: TorchCheck, installer: Installer,
                      reinstall: str) -> list[DoctorFinding]:
    broken = {name: error for name, error in facts.modules.items() if error}
    if not broken and len(facts.modules) == len(COMPILE_MODULES):
        return [DoctorFinding("torch", INFO, "torch.compile",
                        "torch._inductor.config and torch.compile (torch._dynamo) import")]
    findings = []
    for name, error in sorted(broken.items()):
        # a missing dependency (sympy, say) is installed by name; anything else: reinstall
        missing = re.match(r"ModuleNotFoundError: No module named '(\w+)", error or "")
        fix = (installer.command(missing.group(1))
               if missing and missing.group(1) != "torch" else reinstall)
        findings.append(DoctorFinding(
            "torch", ERROR, "torch.compile", f"import {name} fails: {error}",
            "torch.compile, and everything that compiles with it (vLLM, for one), fails "
            "until it imports.", fix))
    return findings


def cuda_findings(facts: TorchCheck | None, nvcc: NvccFacts,
                  gpus: Capabilities) -> list[DoctorFinding]:
    return [*_nvcc_findings(facts, nvcc), *_gpu_findings(facts, gpus)]


def _nvcc_findings(facts: TorchCheck | None, nvcc: NvccFacts) -> list[DoctorFinding]:
    torch_cuda = facts.cuda if facts is not None else None
    where = f"{nvcc.path} (from {nvcc.found_by})" if nvcc.path else ""
    if torch_cuda is None:
        what = f"nvcc {nvcc.version} at {where}" if nvcc.version else f"nvcc: {nvcc.error}"
        why = ("torch is not installed" if facts is None else "torch does not import"
               if facts.version is None else f"torch is {facts.variant}")
        return [DoctorFinding("cuda", INFO, "nvcc", f"{what}; {why}, so extension builds here do "
                                              "not use nvcc")]
    toolkit = f"/usr/local/cuda-{torch_cuda}"
    fix = f"export CUDA_HOME={toolkit} PATH={toolkit}/bin:$PATH"
    if nvcc.version is None:
        return [DoctorFinding(
            "cuda", WARNING, "nvcc", f"nvcc {nvcc.error}; torch is a CUDA {torch_cuda} build",
            "Installing a package that compiles CUDA code (an sdist, a --no-build-isolation "
            f"build, a JIT extension) will fail. Install the CUDA {torch_cuda} toolkit and "
            "point CUDA_HOME at it.", fix)]
    have, want = nvcc.version.split("."), torch_cuda.split(".")
    if have[0] != want[0]:
        return [DoctorFinding(
            "cuda", ERROR, "nvcc", f"nvcc {nvcc.version} at {where} does not match torch's "
                                   f"CUDA {torch_cuda}: builds will fail",
            "torch.utils.cpp_extension refuses to build with an nvcc of another CUDA major "
            f"version than torch's; install the CUDA {torch_cuda} toolkit and point "
            "CUDA_HOME at it.", fix)]
    if have[1:2] != want[1:2]:
        return [DoctorFinding(
            "cuda", WARNING, "nvcc", f"nvcc {nvcc.version} at {where} differs from torch's CUDA "
                                     f"{torch_cuda} in the minor version",
            "Builds usually work across minor versions (torch warns), but kernels built with "
            "a newer nvcc may need a newer driver than torch's own.", fix)]
    return [DoctorFinding("cuda", INFO, "nvcc", f"nvcc {nvcc.version} at {where} matches torch's "
                                          f"CUDA {torch_cuda}")]


def _gpu_findings(facts: TorchCheck | None, gpus: Capabilities) -> list[DoctorFinding]:
    if not gpus:
        why = getattr(gpus, "why_none", "") or "none visible"
        return [DoctorFinding("cuda", INFO, "gpu", f"no NVIDIA GPU visible ({why})",
                        "CUDA kernels cannot run here; CPU code and builds still can.")]
    names = _describe(gpus)
    if facts is not None and facts.cuda and facts.cuda_available is False:
        return [DoctorFinding(
            "cuda", WARNING, "gpu", f"{names} visible, but torch.cuda.is_available() is False",
            f"torch {facts.version} is a CUDA {facts.cuda} build; the usual cause is an NVIDIA "
            f"driver too old for CUDA {facts.cuda} (nvidia-smi prints the newest CUDA the "
            "driver supports), or CUDA_VISIBLE_DEVICES hiding the GPUs.", "nvidia-smi")]
    return [DoctorFinding("cuda", INFO, "gpu", f"GPU visible: {names}")]


def _describe(gpus: Sequence[tuple[str, str]]) -> str:
    counts: dict[tuple[str, str], int] = {}
    for gpu in gpus:
        counts[gpu] = counts.get(gpu, 0) + 1
    return ", ".join(f"{n} x {name} ({cap})" if n > 1 else f"{name} ({cap})"
                     for (name, cap), n in sorted(counts.items()))
