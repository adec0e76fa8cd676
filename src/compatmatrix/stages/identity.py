"""Stage 5, identity: inside the cell's venv, check that it really is the cell.

Facts are gathered in one subprocess that imports neither the extension nor torch (torch's
version, CUDA and folder are read from its files, as the build reads them), so that an
extension whose import dies (undefined symbol, segfault) cannot take the facts with it; the
import runs in a second subprocess with faulthandler on, and it alone imports torch, once:
what torch says there about itself replaces what its files said.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import error_lines
from compatmatrix.host.paths import import_outside
from compatmatrix.host.probe import probe
from compatmatrix.host.safeio import tagged_json
from compatmatrix.model.outcomes import IdentityResult
from compatmatrix.model.spec import NONE, PREINSTALLED, is_specifier

__all__ = ["check_identity", "expected_cuda", "same_torch"]

_FACTS = r"""
import importlib.metadata as md, importlib.util, json, os, re, sys
names = json.loads(sys.argv[1])
facts = {"python": "%d.%d.%d" % sys.version_info[:3], "packages": {}, "prefix": sys.prefix}
for name in names:
    try:
        facts["packages"][name] = md.version(name)
    except md.PackageNotFoundError:
        facts["packages"][name] = None
# torch read from its files, not imported: only the import check imports it
try:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'torch'")
    root = list(spec.submodule_search_locations)[0]
    with open(os.path.join(root, "version.py"), encoding="utf-8") as handle:
        text = handle.read()
    def field(name):
        found = re.search(r"^%s\b[^=\n]*=\s*['\"]([^'\"]+)['\"]" % name, text, re.M)
        return found.group(1) if found else None
    facts["torch"] = field("__version__")
    if facts["torch"] is None:
        raise ImportError("torch/version.py holds no __version__")
    facts["torch_cuda"] = field("cuda")
    facts["torch_hip"] = field("hip")
    facts["torch_path"] = root
except Exception as exc:
    facts["torch_error"] = "%s: %s" % (type(exc).__name__, exc)
    for key in ("torch", "torch_cuda", "torch_hip", "torch_path"):
        facts.pop(key, None)
print("COMPATMATRIX-FACTS " + json.dumps(facts))
"""

_IMPORT = r"""
import importlib, importlib.util, json, os, sys
if importlib.util.find_spec("torch") is not None:  # first, as the extension would
    try:
        import torch
        answer = {"torch": {"version": str(torch.__version__), "cuda": torch.version.cuda,
                            "hip": getattr(torch.version, "hip", None),
                            "path": os.path.dirname(torch.__file__)}}
    except Exception as exc:
        answer = {"error": "%s: %s" % (type(exc).__name__, exc)}
    # its own line, flushed: an extension that then crashes the process cannot take it along
    print("COMPATMATRIX-IMPORTED-TORCH " + json.dumps(answer), flush=True)
module = importlib.import_module(sys.argv[1])
where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
attr = sys.argv[2]
value = None
if attr:
    mod_name, _, name = attr.rpartition(".")
    value = getattr(importlib.import_module(mod_name), name)
print("COMPATMATRIX-IMPORT " + json.dumps({"build_torch": value, "module_file": where}))
"""


def expected_cuda(variant: str | None) -> str | None:
    """cu130 -> "13.0", cu128 -> "12.8", cpu -> None (torch.version.cuda)."""
    if variant is None or not variant.startswith("cu"):
        return None
    digits = variant[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def check_identity(python: Path, *, cell_axes: Mapping[str, str], package_axes: Sequence[str],
                   import_name: str, build_torch_attr: str | None,
                   wheel_torch: str | None, log: Path, timeout: float, venv: Path,
                   cwd: Path, stable_abi: bool = False) -> IdentityResult:
    """``cwd`` is an empty folder, and ``-I`` keeps the working directory, PYTHONPATH and the
    user's site-packages off ``sys.path``: the package must come from ``venv``, never from a
    source tree next to where compatmatrix was started. ``stable_abi``: the audit found the
    wheel's libraries on torch's stable ABI only, so it may run under another torch than the
    one it was built against (both are recorded)."""
    names = sorted({canonicalize_name(n) for n in package_axes} | {"torch"})
    answer = probe(python, _FACTS, json.dumps(names), tag="COMPATMATRIX-FACTS",
                   flags=_FLAGS, log=log, cwd=cwd, timeout=timeout)
    facts_run = answer.result
    facts: dict[str, Any] | None = {_GARBLED: True} if answer.garbled else answer.data
    problem = _facts_problem(facts) if facts is not None else None
    if facts is None or problem is not None:
        why = (f"exit {facts_run.returncode}" if facts is None and not facts_run.timed_out
               else "timed out" if facts is None else problem)
        return IdentityResult(False, {}, (f"could not inspect the venv: {why}",),
                              "\n".join(error_lines(facts_run.output, 5, last=True)))
    facts = {key: value for key, value in facts.items() if key in _FACT_KEYS}
    imported_answer = probe(python, _IMPORT, import_name, build_torch_attr or "",
                            tag="COMPATMATRIX-IMPORT", flags=_FLAGS, log=log, cwd=cwd,
                            timeout=timeout)
    imported = imported_answer.result
    data: dict[str, Any] | None = ({_GARBLED: True} if imported_answer.garbled
                                   else imported_answer.data)
    torch_answer = _imported_torch(imported.output)
    if torch_answer is not None:
        facts.update(torch_answer)  # what torch says of itself, once imported
    running = facts.get("torch")
    mismatches = list(_mismatches(facts, cell_axes, package_axes))
    if torch_answer is None:
        mismatches.append("the import check's answer about torch is not what it prints (a "
                          "forged or garbled COMPATMATRIX-IMPORTED-TORCH line)")
    built = wheel_torch
    import_error = ""
    if data is None:
        import_error = _import_error(imported)
    elif not _import_answer_ok(data):
        mismatches.append("the import check's answer is not what it prints (a forged or "
                          "garbled COMPATMATRIX-IMPORT line)")
    else:
        build_torch = data.get("build_torch")
        built = str(build_torch) if build_torch else wheel_torch
        if stable_abi:
            facts["torch_abi"] = "stable"  # built once, run under every torch of the matrix
        elif running and built and not same_torch(str(built), str(running)):
            mismatches.append(f"the extension was built against torch {built} "
                              f"but torch {running} is running")
        facts["module_file"] = data.get("module_file")
        outside = import_outside(import_name, data.get("module_file"), venv)
        if outside:
            mismatches.append(outside)
    return IdentityResult(not mismatches and not import_error, facts, tuple(mismatches),
                          import_error, built, running)


def _imported_torch(output: str) -> dict[str, Any] | None:
    """The facts the import check's torch gives of itself (version, CUDA, HIP, folder) or why
    it did not import; {} when it did not try (no torch, or the process died first); None when
    its line is not what the script prints."""
    lines = output.splitlines()
    found = tagged_json(lines, _TORCH_TAG + " ")
    if not found:
        return None if any(line.startswith(_TORCH_TAG + " ") for line in lines) else {}
    answer, torch = found[0], found[0].get("torch")
    if isinstance(answer.get("error"), str) and "\0" not in answer["error"]:
        return {"torch_error": answer["error"]}
    if not (isinstance(torch, dict) and isinstance(torch.get("version"), str) and all(
            isinstance(torch.get(key), (str, type(None))) and "\0" not in (torch.get(key) or "")
            for key in ("version", "cuda", "hip", "path"))):
        return None
    return {"torch": torch["version"], "torch_cuda": torch["cuda"], "torch_hip": torch["hip"],
            "torch_path": torch["path"]}


def same_torch(built: str, running: str) -> bool:
    """The same torch release: ``2.13.0`` and ``2.13.0+cu130`` are (the local label, the
    variant, is the variant check's to judge); ``2.13.0+cpu`` and ``2.13.0+cu130`` are not."""
    try:
        a, b = Version(built), Version(running)
    except InvalidVersion:
        return built == running
    return (Version(a.public) == Version(b.public)
            and (a.local is None or b.local is None or a.local == b.local))


def _mismatches(facts: Mapping[str, Any], axes: Mapping[str, str],
                package_axes: Sequence[str]) -> list[str]:
    found = []
    python = axes.get("python")
    if python and not str(facts["python"]).startswith(python + "."):
        found.append(f"python is {facts['python']}, the cell says {python}")
    packages = facts.get("packages", {})
    for name in package_axes:
        want = axes.get(name, NONE)
        have = packages.get(canonicalize_name(name))
        problem = _version_problem(name, want, have)
        if problem:
            found.append(problem)
    variant = axes.get("cuda")
    if variant is not None and "torch" in facts:
        found += _variant_problem(variant, facts)
    if "torch_error" in facts and axes.get("torch", NONE) != NONE:
        found.append(f"torch does not import: {facts['torch_error']}")
    if axes.get("torch") == PREINSTALLED:
        found += _preinstalled_problem(facts)
    return found


def _preinstalled_problem(facts: Mapping[str, Any]) -> list[str]:
    """The cell's torch must be the interpreter's own, not one installed into the venv."""
    path, prefix = str(facts.get("torch_path") or ""), str(facts.get("prefix") or "")
    if path and prefix and path.startswith(prefix.rstrip("/") + "/"):
        return [f"torch {facts.get('torch')} was installed into the cell's venv ({path}), "
                "but the cell says torch is the interpreter's own (preinstalled)"]
    return []


def _version_problem(name: str, want: str, have: str | None) -> str | None:
    if want == PREINSTALLED:  # any version: identity records which one was found
        return None if have else f"{name} is not installed in the interpreter, " \
                                 "the cell says preinstalled"
    if want == NONE:
        return f"{name} {have} is installed, the cell says none" if have else None
    if have is None:
        return f"{name} is not installed, the cell says {want}"
    try:
        version = Version(have)
        ok = (SpecifierSet(want).contains(version, prereleases=True) if is_specifier(want)
              else Version(version.public) == Version(Version(want).public))
    except InvalidVersion:
        ok = have == want
    return None if ok else f"{name} is {have}, the cell says {want}"


def _variant_problem(variant: str, facts: Mapping[str, Any]) -> list[str]:
    cuda, hip = facts.get("torch_cuda"), facts.get("torch_hip")
    if variant == "cpu":
        return [] if not cuda and not hip else [
            f"torch is a CUDA {cuda} build, the cell says cpu" if cuda else
            f"torch is a ROCm {hip} build, the cell says cpu"]
    if variant.startswith("rocm"):
        return [] if hip and hip.startswith(variant[4:]) else [
            f"torch's ROCm is {hip}, the cell says {variant}"]
    want = expected_cuda(variant)
    return [] if cuda == want else [f"torch's CUDA is {cuda or 'none (a CPU build)'}, "
                                    f"the cell says {variant} (CUDA {want})"]


_GARBLED = "compatmatrix:garbled"
_TORCH_TAG = "COMPATMATRIX-IMPORTED-TORCH"
# -I: neither the working directory nor PYTHONPATH nor the user's site may put a source tree
# first; faulthandler: a crash leaves its traceback
_FLAGS = ("-I", "-X", "faulthandler")
_FACT_TYPES: Mapping[str, tuple[type, ...]] = {
    "python": (str,), "prefix": (str,), "torch": (str, type(None)),
    "torch_cuda": (str, type(None)), "torch_hip": (str, type(None)),
    "torch_path": (str, type(None)), "torch_error": (str,),
}
_FACT_KEYS = frozenset({*_FACT_TYPES, "packages"})  # what the record keeps of an answer


def _import_answer_ok(data: Mapping[str, Any]) -> bool:
    return (not data.get(_GARBLED)
            and isinstance(data.get("module_file"), (str, type(None)))
            and "\0" not in (data.get("module_file") or "")
            and isinstance(data.get("build_torch"), (str, int, float, type(None))))


def _facts_problem(facts: Mapping[str, Any]) -> str | None:
    """Why ``facts`` is not what the facts script prints (a forged line), or None."""
    if facts.get(_GARBLED):
        return "its answer is not valid JSON (a forged or garbled COMPATMATRIX-FACTS line)"
    wrong = [key for key, types in _FACT_TYPES.items()
             if (key in facts or key == "python") and not isinstance(facts.get(key), types)]
    packages = facts.get("packages")
    if not isinstance(packages, dict) or not all(
            isinstance(v, (str, type(None))) for v in packages.values()):
        wrong.append("packages")
    if wrong:
        return (f"its answer has the wrong type for {', '.join(sorted(set(wrong)))} (a forged "
                "or garbled COMPATMATRIX-FACTS line)")
    return None


def _import_error(result: _cmd.CommandResult) -> str:
    if result.timed_out:
        return "importing the extension hung (timed out)"
    if result.returncode < 0:
        signal_name = {-11: "SIGSEGV", -6: "SIGABRT", -7: "SIGBUS", -4: "SIGILL"}.get(
            result.returncode, f"signal {-result.returncode}")
        cause = "\n".join(error_lines(result.output, 5, last=True))
        return f"importing the extension crashed ({signal_name}):\n{cause}"
    return "\n".join(error_lines(result.output, 5, last=True))
