"""Which torch ABI each shared object of a wheel uses, and the oldest torch it needs.

Since torch 2.9 an extension can be written against PyTorch's stable ABI: the C shim
(``aoti_torch_*``, ``torch_*``) and the header-only ``torch::stable`` / ``torch::headeronly``
wrappers. Such a binary loads under every later torch; one that uses ``at::`` or ``c10::``
(the unstable C++ API) only under the torch minor it was built against. Nothing in the
binary says which it is (``TORCH_TARGET_VERSION`` leaves no trace), so the verdict comes
from the symbols the library needs from elsewhere.

Two sources, in order:

1. torch-abi-audit (Quansight, MIT), pinned to :data:`TOOL`, run in its own uv tool
   environment (it needs Python >= 3.11; uv caches it, so it also runs offline once
   fetched). It gives per library the verdict, the minimum torch its shims need (from
   PyTorch's own table of when each shim was introduced) and the CPython symbols outside
   the limited API.
2. When it cannot be had (no uv, no index, no Python >= 3.11, it fails): compatmatrix's own
   reading of the ELF dynamic symbol table, which gives the same verdict (shim symbols vs
   mangled ``at::``/``c10::``/``torch::`` symbols) but no minimum torch beyond the stable
   ABI's first release, 2.9, and no limited-API check. Every verdict says which source
   made it, and the audit reports what the fallback could not check.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.binary.elf import ElfError, dynamic_symbols
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import error_lines
from compatmatrix.host.safeio import MiB, loads_strict, read_bounded, tagged_json, write_json_atomic

__all__ = ["NO_TORCH", "OWN_SOURCE", "STABLE", "STABLE_ABI_FIRST", "TOOL", "UNSTABLE",
           "AbiTool", "AbiVerdicts", "LibraryAbi", "classify_symbols", "library_verdicts"]

TOOL = "torch-abi-audit==0.3.0"
STABLE, UNSTABLE, NO_TORCH = "torch-stable", "torch-unstable", "no-torch"
STABLE_ABI_FIRST = "2.9.0"  # the first torch with the stable ABI: every shim needs at least it
OWN_SOURCE = "compatmatrix (ELF dynamic symbols)"
_KEEP = 8  # symbols kept per list: enough to name the cause, small in a record

_ENTRY_POINTS = ("PyInit_", "PyModExport_")  # what Python's import looks up in a module
_SHIM = re.compile(r"^(?:aoti_torch_|torch_)")
# A mangled name that reaches into at::, c10:: or torch:: (but for torch::stable and
# torch::headeronly): <N or _Z><cv-qualifiers><length><name> followed by the next component.
_UNSTABLE_MANGLED = re.compile(r"(?:^_Z|N)[KVRO]*(?:2at|3c10|5torch(?!6stable|10headeronly))"
                               r"(?=\d|[CD]\d|I)")


@dataclass(frozen=True)
class LibraryAbi:
    """One shared object's torch ABI, as its symbols show it."""

    member: str  # the path inside the wheel
    torch: str  # STABLE, UNSTABLE or NO_TORCH
    min_torch: str | None = None  # the oldest torch that has every shim it needs
    pinned_by: tuple[str, ...] = ()  # the shims that set min_torch
    unstable: tuple[str, ...] = ()  # the first unstable C++ symbols it needs
    unknown_shims: tuple[str, ...] = ()  # shims newer than the tool's table: min is a floor
    extension: bool = True  # a module Python imports (the limited API applies to it)
    cpython_checked: bool = False  # whether the limited-API check ran
    cpython_violations: tuple[str, ...] = ()  # CPython symbols outside the limited API

    def to_json(self) -> dict[str, object]:
        return {"member": self.member, "torch": self.torch, "min_torch": self.min_torch,
                "pinned_by": list(self.pinned_by), "unstable": list(self.unstable),
                "unknown_shims": list(self.unknown_shims), "extension": self.extension,
                "cpython_checked": self.cpython_checked,
                "cpython_violations": list(self.cpython_violations)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> LibraryAbi:
        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        minimum = data.get("min_torch")
        return cls(str(data["member"]), str(data["torch"]),
                   None if minimum is None else str(minimum), strings("pinned_by"),
                   strings("unstable"), strings("unknown_shims"),
                   bool(data.get("extension", True)), bool(data.get("cpython_checked")),
                   strings("cpython_violations"))


@dataclass(frozen=True)
class AbiVerdicts:
    libraries: tuple[LibraryAbi, ...]
    source: str  # TOOL's name and version, or OWN_SOURCE
    problem: str = ""  # why torch-abi-audit was not used ("" when it was, or was not asked)


@dataclass(frozen=True)
class AbiTool:
    """How to run torch-abi-audit: uv, its environment, a log and a timeout."""

    uv: tuple[str, ...]
    env: Mapping[str, str]
    log: Path | None = None
    timeout: float = 120.0
    # where the tool's verdicts on this wheel are kept (beside the wheel): the cells that
    # share a wheel ask the tool once
    cache: Path | None = None


def classify_symbols(member: str, symbols: Sequence[str],
                     extension: bool = True) -> LibraryAbi:
    """compatmatrix's own verdict from a library's undefined dynamic symbols; ``extension``:
    it defines ``PyInit_*`` (Python imports it)."""
    shims = sorted(s for s in symbols if _SHIM.match(s))
    unstable = sorted(s for s in symbols if _UNSTABLE_MANGLED.search(s))
    if unstable:
        return LibraryAbi(member, UNSTABLE, unstable=tuple(unstable[:_KEEP]),
                          extension=extension)
    if shims:
        return LibraryAbi(member, STABLE, min_torch=STABLE_ABI_FIRST, extension=extension)
    return LibraryAbi(member, NO_TORCH, extension=extension)


def library_verdicts(archive: zipfile.ZipFile, members: Sequence[str],
                     tool: AbiTool | None) -> AbiVerdicts:
    """The verdict for each shared object in ``members``: torch-abi-audit's when ``tool`` is
    given and it runs, else compatmatrix's own (and ``problem`` says why)."""
    if not members:
        return AbiVerdicts((), OWN_SOURCE)
    problem = ""  # not asked: a caller without uv (the library's own tests, say)
    if tool is not None:
        key = _cache_key(archive, members)
        kept = _cached(tool.cache, key)
        if kept is not None:
            return kept
        found, problem = _run_tool(archive, members, tool)
        if found is not None:
            _keep(tool.cache, key, found)
            return found
    own = []
    for member in members:
        try:
            with archive.open(member) as stream:
                symbols = dynamic_symbols(stream)
        except (ElfError, OSError, EOFError, zipfile.BadZipFile):
            continue  # the ELF check reports an unreadable shared object
        own.append(classify_symbols(
            member, sorted({name for name, defined in symbols if name and not defined}),
            extension=any(defined and name.startswith(_ENTRY_POINTS)
                          for name, defined in symbols)))
    return AbiVerdicts(tuple(own), OWN_SOURCE, problem)


def _cache_key(archive: zipfile.ZipFile, members: Sequence[str]) -> dict[str, object]:
    """What the verdicts depend on: the tool, the wheel file as it is, the libraries asked."""
    try:
        stat = os.stat(str(archive.filename)) if archive.filename else None
    except OSError:
        stat = None
    return {"tool": TOOL, "wheel": archive.filename, "members": list(members),
            "size": stat.st_size if stat else None, "mtime": stat.st_mtime_ns if stat else None}


def _cached(cache: Path | None, key: Mapping[str, object]) -> AbiVerdicts | None:
    if cache is None or key.get("size") is None:
        return None
    try:
        data = loads_strict(read_bounded(cache, MiB))
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        return AbiVerdicts(tuple(LibraryAbi.from_json(lib) for lib in data["libraries"]),
                           str(data["source"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: asked again


def _keep(cache: Path | None, key: Mapping[str, object], found: AbiVerdicts) -> None:
    if cache is None or key.get("size") is None:
        return
    # a cache that cannot be written only costs the next cell a second ask
    with contextlib.suppress(OSError):
        write_json_atomic(cache, {"key": dict(key), "source": found.source,
                                  "libraries": [lib.to_json() for lib in found.libraries]})


# Runs inside torch-abi-audit's environment: per library its verdicts, trimmed, on one line.
_SCRIPT = r"""
import json, sys
from pathlib import Path
import torch_abi_audit
from torch_abi_audit.inspect import inspect_extension
from torch_abi_audit.symbols import is_extension_module
root, keep = Path(sys.argv[1]), int(sys.argv[2])
out = {"version": torch_abi_audit.__version__, "libraries": []}
for rel in sys.argv[3:]:
    path = root / rel
    r = inspect_extension(path)
    t, c = r.torch, r.cpython
    out["libraries"].append({
        "member": rel, "error": r.error, "uses_torch": t.uses_torch, "stable": t.stable,
        "min_torch": t.min_torch_version, "pinned_by": list(t.version_defining_symbols)[:keep],
        "unstable": list(t.unstable_symbols)[:keep],
        "unknown_shims": list(t.unknown_shim_symbols)[:keep],
        "extension": is_extension_module(path), "cpython_violations": list(c.violations)})
print("COMPATMATRIX-TORCH-ABI " + json.dumps(out), flush=True)
"""
_TAG = "COMPATMATRIX-TORCH-ABI "


def _tool_argv(uv: Sequence[str], *, offline: bool) -> list[str]:
    return [*uv, "tool", "run", *(["--offline"] if offline else []), "--python", ">=3.11",
            "--from", TOOL, "python", "-c"]


_OBTAINED = "import torch_abi_audit; print('COMPATMATRIX-TORCH-ABI {}')"
_obtained: dict[tuple[str, ...], str] = {}  # uv -> "" or why the tool cannot be had
_obtaining = threading.Lock()


def _obtain(tool: AbiTool) -> str:
    """Whether uv can provide the tool ("" or why not): from its cache, else fetched once.
    Asked once per process and uv: a machine without an index (and the tool not cached)
    must not wait out a download per cell."""
    with _obtaining:
        if tuple(tool.uv) not in _obtained:
            problem = ""
            for offline in (True, False):
                result = _cmd.run([*_tool_argv(tool.uv, offline=offline), _OBTAINED],
                                  log=tool.log, env=tool.env, timeout=tool.timeout)
                if tagged_json(result.output.splitlines(), _TAG):
                    problem = ""
                    break
                problem = "timed out" if result.timed_out else (
                    "; ".join(error_lines(result.output, 3, last=True))
                    or f"exit {result.returncode}")
            _obtained[tuple(tool.uv)] = problem
        return _obtained[tuple(tool.uv)]


def _run_tool(archive: zipfile.ZipFile, members: Sequence[str],
              tool: AbiTool) -> tuple[AbiVerdicts | None, str]:
    problem = _obtain(tool)
    if problem:
        return None, f"torch-abi-audit ({TOOL}) could not be had: {problem}"
    folder = Path(tempfile.mkdtemp(prefix="compatmatrix-abi-"))
    try:
        for member in members:
            target = folder / member
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
        result = _cmd.run([*_tool_argv(tool.uv, offline=True), _SCRIPT, str(folder),
                           str(_KEEP), *members], log=tool.log, env=tool.env,
                          timeout=tool.timeout)
        answer = tagged_json(result.output.splitlines(), _TAG)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        return None, f"torch-abi-audit could not be given the libraries ({exc})"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not answer:
        why = "timed out" if result.timed_out else (
            "; ".join(error_lines(result.output, 3, last=True)) or f"exit {result.returncode}")
        return None, f"torch-abi-audit ({TOOL}) could not be run: {why}"
    return _parse(answer[0], members)


def _parse(answer: Mapping[str, object],
           members: Sequence[str]) -> tuple[AbiVerdicts | None, str]:
    libraries = answer.get("libraries")
    version = answer.get("version")
    if not isinstance(libraries, list) or not isinstance(version, str):
        return None, "torch-abi-audit's answer is not what its script prints"
    found: list[LibraryAbi] = []
    for entry in libraries:
        if not isinstance(entry, dict) or entry.get("member") not in members:
            return None, "torch-abi-audit's answer is not what its script prints"
        if entry.get("error"):
            return None, f"torch-abi-audit could not read {entry['member']}: {entry['error']}"
        found.append(_library(entry))
    return AbiVerdicts(tuple(found), f"torch-abi-audit {version}"), ""


def _library(entry: Mapping[str, object]) -> LibraryAbi:
    def strings(key: str) -> tuple[str, ...]:
        value = entry.get(key)
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    verdict = (NO_TORCH if not entry.get("uses_torch") else
               STABLE if entry.get("stable") else UNSTABLE)
    minimum = entry.get("min_torch")
    extension = bool(entry.get("extension"))
    return LibraryAbi(str(entry["member"]), verdict,
                      str(minimum) if isinstance(minimum, str) and verdict == STABLE else None,
                      strings("pinned_by"), strings("unstable"), strings("unknown_shims"),
                      extension, cpython_checked=extension,
                      cpython_violations=strings("cpython_violations")[:_KEEP]
                      if extension else ())
