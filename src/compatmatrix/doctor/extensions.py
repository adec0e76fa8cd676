"""Doctor checks 4 and 5: compiled extensions of installed packages.

Check 4 finds every extension module that links libtorch (DT_NEEDED, read with ``_elf``) and
loads it in a subprocess after ``import torch``, as its package would. Loading is cheap next
to importing torch, so one subprocess loads many; extensions are split into a few batches,
by distribution, that run in parallel. A crash or hang is pinned on the extension that was
loading, and the rest of its batch runs again in a fresh process.

Check 5 reads RECORD: a module whose only variants are built for other Pythons
(``_C.cpython-312-...so`` on 3.11) cannot be imported here at all.

Files whose names start with ``lib`` are libraries that their package loads itself, often one
of several built for different torch or FFmpeg versions (torchcodec, torch_c_dlpack_ext):
loading each would report the ones the package never loads, so they are not loaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from compatmatrix.binary.demangle import demangle_all
from compatmatrix.binary.elf import ElfError, read_elf_file
from compatmatrix.doctor.environment import CannotInspect, Distribution, Environment
from compatmatrix.doctor.finding import ERROR, INFO, WARNING, DoctorFinding
from compatmatrix.doctor.requirements import plain, torch_index_args
from compatmatrix.doctor.torchcheck import TorchCheck
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.safeio import tagged_json

__all__ = [
    "LOAD_TIMEOUT",
    "MAX_BATCHES",
    "Extension",
    "Loaded",
    "extension_findings",
    "find_extensions",
    "load_batches",
    "load_extensions",
    "variant_findings",
]

MAX_BATCHES = 8
LOAD_TIMEOUT = 180.0  # one batch: importing torch, then every extension of the batch
_TAG = "COMPATMATRIX-LOAD "
_LIBTORCH = re.compile(r"^lib(torch|c10)(_[a-z_]+)?\.so$")
_PYTHON_TAG = re.compile(r"^(?P<module>[A-Za-z_]\w*)\.cpython-(?P<ver>\d{2,3})[^.]*\.so$")
_MODULE_FILE = re.compile(r"^(?P<module>[A-Za-z_]\w*)(?:\.[^.]+)?\.so$")
_UNDEFINED = re.compile(r"undefined symbol: (\S+)")
_NO_LIBRARY = re.compile(r"(\S+?): cannot open shared object file")
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})

# Loads each extension as its package would: after torch, by file, without importing the
# package around it (whose __init__ may fail for unrelated reasons). A .so without a
# PyInit_ function is a library loaded through torch.ops.load_library: dlopen already
# resolved its symbols, so it loads.
_LOAD = r"""
import ctypes, importlib.util, json, sys
def emit(**fields):
    print("COMPATMATRIX-LOAD " + json.dumps(fields), flush=True)
items = json.loads(sys.stdin.read())
try:
    import torch
except BaseException as exc:
    emit(torch_error="%s: %s" % (type(exc).__name__, exc))
    sys.exit(0)
for module, path in items:
    emit(start=path)
    error = None
    try:
        if module:
            spec = importlib.util.spec_from_file_location(module, path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        else:
            ctypes.CDLL(path)
    except ImportError as exc:
        if "module export function" not in str(exc):
            error = str(exc)
    except BaseException as exc:
        error = "%s: %s" % (type(exc).__name__, exc)
    emit(done=path, error=error)
"""


@dataclass(frozen=True)
class Extension:
    path: Path
    relative: str  # the path below its site folder, as its package knows it
    module: str  # dotted import name; "" when the path makes none (loaded with ctypes)
    dist: Distribution | None  # None: no installed distribution lists it in RECORD


@dataclass(frozen=True)
class Loaded:
    extension: Extension
    error: str | None  # None: it loaded
    crashed: bool = False


# -- finding the extensions -------------------------------------------------------------------


def find_extensions(env: Environment, dists: Sequence[Distribution]) -> list[Extension]:
    """Extension modules below the site folders that link libtorch and load on this Python."""
    owners = _owners(dists)
    found = []
    seen: set[str] = set()  # a site folder may sit inside another (a .pth adds it)
    for site in env.site:
        covered = {name for d in dists if d.location == site for name in d.top_level}
        for path in _shared_objects(site, owners, covered):
            real = os.path.realpath(path)
            extension = None if real in seen else _extension(
                site, path, owners.get(os.path.normpath(path)), env)
            seen.add(real)
            if extension is not None:
                found.append(extension)
    return sorted(found, key=lambda e: e.relative)


def _owners(dists: Sequence[Distribution]) -> dict[str, Distribution]:
    return {os.path.normpath(dist.location / entry): dist
            for dist in dists for entry in dist.record}


def _shared_objects(site: Path, owners: Mapping[str, Distribution],
                    covered: set[str]) -> list[Path]:
    """Shared objects in RECORDs, plus those below entries of ``site`` no RECORD covers
    (copied in by hand, or built in place)."""
    listed = [Path(p) for p in owners if Path(p).parent.is_relative_to(site)]
    try:
        entries = sorted(os.scandir(site), key=lambda e: e.name)
    except OSError:
        return listed
    for entry in entries:
        if entry.name in covered or entry.name.endswith((".dist-info", ".egg-info")):
            continue
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            listed += _walk(Path(entry.path))
        elif entry.name.endswith(".so"):
            listed.append(Path(entry.path))
    return [p for p in listed if p.is_file()]


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS]
        found += [Path(root, name) for name in files if name.endswith(".so")]
    return found


def _extension(site: Path, path: Path, dist: Distribution | None,
               env: Environment) -> Extension | None:
    name = path.name
    if name.startswith("lib") or (dist is not None and dist.key == "torch"):
        return None  # see the module docstring; torch's own files are torch's check
    suffix = name[name.index("."):]
    if suffix not in env.extension_suffixes:
        return None  # built for another Python: check 5's business
    try:
        needed = read_elf_file(path).needed
    except ElfError:
        return None
    if not any(_LIBTORCH.match(lib) for lib in needed):
        return None
    relative = path.relative_to(site).as_posix()
    parts = [*relative.split("/")[:-1], name.split(".")[0]]
    module = ".".join(parts) if all(p.isidentifier() for p in parts) else ""
    return Extension(path, relative, module, dist)


# -- loading ----------------------------------------------------------------------------------


def load_batches(extensions: Sequence[Extension], cpus: int) -> list[list[Extension]]:
    """Batches by distribution, at most one per two cores: each pays for importing torch."""
    groups: dict[str, list[Extension]] = {}
    for extension in extensions:
        groups.setdefault(extension.dist.key if extension.dist else "", []).append(extension)
    count = max(1, min(len(groups), cpus // 2, MAX_BATCHES))
    batches: list[list[Extension]] = [[] for _ in range(count)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(batches, key=len).extend(group)
    return [batch for batch in batches if batch]


def load_extensions(env: Environment, batch: Sequence[Extension],
                    process_env: Mapping[str, str],
                    timeout: float = LOAD_TIMEOUT) -> tuple[list[Loaded], str]:
    """Load ``batch``; the results, and why torch itself did not import ("" when it did)."""
    results: dict[Path, Loaded] = {}
    pending = list(batch)
    while pending:
        items = [[e.module, str(e.path)] for e in pending]
        run = _cmd.run([str(env.python), "-c", _LOAD], env=process_env, timeout=timeout,
                       input_text=json.dumps(items))
        by_path = {str(e.path): e for e in pending}
        events = _events(run.output, by_path, env)
        if any("torch_error" in e for e in events) or not events:
            why = next((str(e["torch_error"]) for e in events if "torch_error" in e), None)
            return list(results.values()), why or _stopped(run, timeout)
        current = None
        for event in events:
            if "start" in event:
                current = by_path[event["start"]]
            elif "done" in event:
                results[by_path[event["done"]].path] = Loaded(by_path[event["done"]],
                                                              event["error"])
                current = None
        if current is not None:  # it crashed or hung while loading this one
            results[current.path] = Loaded(current, _stopped(run, timeout), crashed=True)
        left = [e for e in pending if e.path not in results]
        if len(left) == len(pending):  # no progress: do not try again forever
            results.update((e.path, Loaded(e, _stopped(run, timeout), crashed=True))
                           for e in left)
        pending = [e for e in left if e.path not in results]
    return [results[e.path] for e in batch], ""


def _events(output: str, by_path: Mapping[str, Extension],
            env: Environment) -> list[dict[str, Any]]:
    """The loader's lines; CannotInspect for one that is not what it prints (forged)."""
    events: list[dict[str, Any]] = []
    for line in output.splitlines():
        if not line.startswith(_TAG):
            continue
        found = tagged_json([line], _TAG)
        event = found[0] if found else {}
        keys = set(event)
        ok = ((keys == {"torch_error"} and isinstance(event["torch_error"], str))
              or (keys == {"start"} and event["start"] in by_path)
              or (keys == {"done", "error"} and event["done"] in by_path
                  and isinstance(event["error"], (str, type(None)))))
        if not ok:
            raise CannotInspect(f"cannot inspect {env.python}: the extension loader's answer "
                                f"is not what it prints (a forged or garbled line: "
                                f"{line[:120]})")
        events.append(event)
    return events


def _stopped(run: _cmd.CommandResult, timeout: float) -> str:
    if run.timed_out:
        return f"loading did not finish within {timeout:g} s"
    if run.returncode < 0:
        names = {-11: "SIGSEGV", -6: "SIGABRT", -7: "SIGBUS", -4: "SIGILL"}
        return f"loading crashed the interpreter ({names.get(run.returncode, run.returncode)})"
    lines = [line for line in run.output.splitlines()
             if line.strip() and not line.startswith(_TAG)]
    return f"the loader exited with {run.returncode}: {lines[-1] if lines else 'no output'}"


# -- findings of check 4 ----------------------------------------------------------------------


def extension_findings(loaded: Sequence[Loaded], torch_error: str, facts: TorchCheck,
                       env: Environment, installed: Mapping[str, Distribution],
                       process_env: Mapping[str, str]) -> list[DoctorFinding]:
    if torch_error:
        return [DoctorFinding("extensions", WARNING, "extensions",
                        f"{len(loaded)} compiled extensions were not loaded: torch does not "
                        f"import ({torch_error})", "See the torch check.")]
    failed = [item for item in loaded if item.error]
    symbols = {item: m.group(1) for item in failed
               if (m := _UNDEFINED.search(item.error or "")) and not item.crashed}
    names = demangle_all(list(symbols.values()), process_env)
    findings = [_undefined(item, symbol, names[symbol], facts, env, installed)
                for item, symbol in symbols.items()]
    findings += _missing_libraries([i for i in failed if i not in symbols], facts, env)
    findings.append(DoctorFinding("extensions", INFO, "extensions",
                            f"{len(loaded) - len(failed)} of {len(loaded)} compiled extensions "
                            f"that link libtorch load under torch {facts.version}"))
    return findings


def _undefined(item: Loaded, symbol: str, name: str, facts: TorchCheck, env: Environment,
               installed: Mapping[str, Distribution]) -> DoctorFinding:
    extension = item.extension
    owner = f" ({extension.dist.label})" if extension.dist else ""
    short, needs, fix = _needed_torch(extension.dist, name, facts, env, installed)
    mangled = f" (mangled: {symbol})" if name != symbol else ""
    explanation = (
        f"Importing {extension.module or extension.relative} dies here. The extension was built "
        f"against a torch whose libraries define {name}{mangled}; torch {facts.version} "
        "does not. libtorch's C++ ABI changes between releases, so an extension only loads "
        f"under the torch it was built against. {needs}")
    return DoctorFinding("extensions", ERROR, extension.relative,
                   f"{extension.relative}{owner} does not load: undefined symbol {name}"
                   + (f"; it needs {short}" if short else ""),
                   explanation, fix)


def _needed_torch(dist: Distribution | None, name: str, facts: TorchCheck, env: Environment,
                  installed: Mapping[str, Distribution]) -> tuple[str, str, str | None]:
    """The torch the extension needs: in short, in full, and the fix that follows."""
    hints = []
    if "__cxx11" in name and facts.cxx11_abi is False:
        hints.append("it was built with the C++11 ABI (_GLIBCXX_USE_CXX11_ABI=1), this torch "
                     "uses the old one")
    elif "std::" in name and "__cxx11" not in name and "string" in name and facts.cxx11_abi:
        hints.append("it was built with the old C++ ABI (_GLIBCXX_USE_CXX11_ABI=0), this "
                     "torch uses the C++11 one")
    if re.search(r"\b(c10|at)::(cuda|hip)::", name) and not (facts.cuda or facts.hip):
        hints.append(f"it needs a GPU build of torch; torch {facts.version} is {facts.variant}")
    if dist is None:
        hints.append("no installed distribution lists the file, so nothing says which torch "
                     "it was built for")
        return "", "It needs: " + "; ".join(hints) + ". Rebuild it against this torch.", None
    pins = [plain(req) for req in dist.torch_requirements(env.markers)]
    rebuild = env.installer.command("--force-reinstall", "--no-deps", "--no-build-isolation",
                                    "--no-binary", dist.name, f"{dist.name}=={dist.version}")
    if not pins:
        hints.append(f"{dist.label} does not declare which torch it needs")
        return ("", "It needs: " + "; ".join(hints) +
                f". Rebuild {dist.name} against torch {facts.version} (the fix).", rebuild)
    pin = " and ".join(pins)
    if _torch_satisfies(dist, facts, env):
        hints.append(f"{dist.label} declares {pin}, which torch {facts.version} satisfies: "
                     "the wheel was built against another torch than it declares")
        return "", "It needs: " + "; ".join(hints) + ". Rebuild it (the fix).", rebuild
    hints.append(f"{dist.label} declares {pin}")
    return (pin, "It needs: " + "; ".join(hints) + ". Install that torch (the fix), or "
            f"rebuild {dist.name} against torch {facts.version}: {rebuild}",
            env.installer.command(*torch_index_args(installed), *pins))


def _torch_satisfies(dist: Distribution, facts: TorchCheck, env: Environment) -> bool:
    try:
        version = Version(facts.version or "")
    except InvalidVersion:
        return False
    return all(req.specifier.contains(version, prereleases=True)
               for req in dist.torch_requirements(env.markers))


def _missing_libraries(failed: Sequence[Loaded], facts: TorchCheck,
                       env: Environment) -> list[DoctorFinding]:
    """One finding per distribution and missing library; other failures one per file."""
    grouped: dict[tuple[str, str], list[Loaded]] = {}
    findings = []
    for item in failed:
        match = _NO_LIBRARY.search(item.error or "")
        if match is None or item.crashed:
            findings.append(_other_failure(item))
            continue
        label = item.extension.dist.label if item.extension.dist else ""
        grouped.setdefault((label, os.path.basename(match.group(1))), []).append(item)
    for (label, library), items in sorted(grouped.items()):
        findings.append(_missing_library(label, library, items, facts, env))
    return findings


def _other_failure(item: Loaded) -> DoctorFinding:
    extension = item.extension
    owner = f" ({extension.dist.label})" if extension.dist else ""
    error = (item.error or "").strip().splitlines()
    return DoctorFinding("extensions", ERROR, extension.relative,
                   f"{extension.relative}{owner} does not load: {error[-1] if error else '?'}",
                   f"Importing {extension.module or extension.relative} fails the same way.",
                   None)


def _missing_library(label: str, library: str, items: Sequence[Loaded], facts: TorchCheck,
                     env: Environment) -> DoctorFinding:
    files = ", ".join(i.extension.relative for i in items)
    one = len(items) == 1
    subject = label or items[0].extension.relative
    lead = (f"{label}: " if label else "") + (items[0].extension.relative if one
                                              else f"{len(items)} extensions")
    message = f"{lead} need{'s' if one else ''} {library}, which is not found"
    if library.startswith("libcuda.so"):
        return DoctorFinding("extensions", WARNING, subject, message,
                       f"{library} comes with the NVIDIA driver, which this machine does not "
                       f"have: {files} load{'s' if one else ''} only where a GPU driver is "
                       "installed.", None)
    dist = items[0].extension.dist
    pins = [plain(r) for r in dist.torch_requirements(env.markers)] if dist else []
    declared = f" {dist.label} declares {' and '.join(pins)}." if dist and pins else ""
    cudart = re.match(r"libcudart\.so\.(\d+)", library)
    if cudart or re.match(r"lib(c10|torch)_(cuda|hip)", library):
        build = f"a CUDA {cudart.group(1)} build" if cudart else "a GPU build"
        return DoctorFinding(
            "extensions", ERROR, subject, message,
            f"Importing {files} fails: {library} comes with {build} of torch, and torch "
            f"{facts.version} is {facts.variant}.{declared} Install the torch the package "
            "was built for (the fix).",
            env.installer.command("--force-reinstall", *pins) if pins else None)
    return DoctorFinding("extensions", ERROR, subject, message,
                   f"Importing {files} fails: neither torch's libraries nor the system provide "
                   f"{library}, a library the package depends on but does not bring.", None)


# -- check 5: modules built only for other Pythons --------------------------------------------


def variant_findings(dists: Sequence[Distribution], env: Environment) -> list[DoctorFinding]:
    findings = []
    for dist in dists:
        modules: dict[str, list[str]] = {}
        for entry in dist.record:
            folder, _, name = entry.rpartition("/")
            match = _MODULE_FILE.match(name)
            if match is not None:  # the variants of one module share folder and name
                modules.setdefault(f"{folder}/{match.group('module')}", []).append(entry)
        for module, files in sorted(modules.items()):
            tagged = [f for f in files if _PYTHON_TAG.match(f.rsplit("/", 1)[-1])]
            if tagged and not any(_loads_here(f, env) for f in files):
                findings.append(_wrong_python(dist, module, sorted(tagged), env))
    if not findings:
        findings.append(DoctorFinding("wheels", INFO, "wheels",
                                f"every extension module has a variant for Python "
                                f"{env.python_minor}"))
    return findings


def _loads_here(entry: str, env: Environment) -> bool:
    name = entry.rsplit("/", 1)[-1]
    return name[name.index("."):] in env.extension_suffixes


def _wrong_python(dist: Distribution, module: str, files: list[str],
                  env: Environment) -> DoctorFinding:
    pythons = sorted({_python_of(f) for f in files})
    dotted = module.strip("/").replace("/", ".")
    return DoctorFinding(
        "wheels", ERROR, dist.label,
        f"{dist.label}: {', '.join(files)} {'is' if len(files) == 1 else 'are'} built for "
        f"Python {', '.join(pythons)} only; this is Python {env.python_minor}",
        f"`import {dotted}` fails here (ModuleNotFoundError). The installed wheel was accepted "
        f"for Python {env.python_minor} but carries extensions for another Python: a wheel "
        "tagged abi3 or py3 whose extension was built for one Python only. Building it from "
        "source for this Python fixes it (the fix); tell the project about the wheel.",
        env.installer.command("--force-reinstall", "--no-deps", "--no-binary", dist.name,
                              f"{dist.name}=={dist.version}"))


def _python_of(entry: str) -> str:
    match = _PYTHON_TAG.match(entry.rsplit("/", 1)[-1])
    digits = match.group("ver") if match else ""
    return f"{digits[0]}.{digits[1:]}" if digits else "?"
