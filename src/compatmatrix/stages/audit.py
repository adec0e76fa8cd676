"""Open a built wheel and check what it claims (stage 3 of a cell).

A wheel can build, install and even pass the suites of the cell that built it while lying to
everyone else: an ``abi3`` tag on a ``.cpython-312`` extension, a ``.so`` that needs a
library only the build machine has, a torch requirement that lets users pair it with a torch
whose C++ ABI differs, CUDA kernels compiled for GPUs other than the ones the GPU suites run
on. Each check below turns one such lie into a :class:`Finding` that names the file inside
the wheel. A broken wheel (not a zip, no metadata) is a finding too: the audit never raises
for what it reads.
"""

from __future__ import annotations

import email.message
import email.parser
import functools
import os
import posixpath
import re
import shutil
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, parse_tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from compatmatrix.binary.elf import (
    MACHINES,
    ElfError,
    ElfInfo,
    defined_symbols,
    read_elf,
    read_elf_file,
)
from compatmatrix.binary.fatbin import GpuArch, read_gpu_archs
from compatmatrix.binary.torchabi import (
    NO_TORCH,
    OWN_SOURCE,
    STABLE,
    UNSTABLE,
    AbiTool,
    AbiVerdicts,
    LibraryAbi,
    library_verdicts,
)
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.gpu import KNOWN_KINDS, GpuKind
from compatmatrix.model.outcomes import ERROR, NOTE, WARNING, AuditReport, Finding

__all__ = ["audit_wheel", "check_running_torch", "system_libraries"]


PyVersion = tuple[int, int]
# The newest CPython released: a wheel that admits later minors (abi3, an open
# Requires-Python) is judged up to here, whether or not an interpreter is installed.
LATEST_CPYTHON: PyVersion = (3, 14)

# Every Linux a wheel targets has these (glibc and the GCC runtime): manylinux's own list.
_SYSTEM_FAMILY = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
    "libresolv.so.2", "libcrypt.so.1", "libnsl.so.1", "libanl.so.1", "libstdc++.so.6",
    "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux.so.2",
    "ld64.so.1", "ld64.so.2", "ld-linux-riscv64-lp64d.so.1",
})
_DEFAULT_LIBRARY_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
# What CPython's import system loads as an extension module: <name>[.<suffix>].so.
_EXTENSION = re.compile(
    r"^(?P<module>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<suffix>abi3|cpython-[^.]+|pypy[^.]*))?\.so$")
_CPYTHON_SUFFIX = re.compile(r"^cpython-(\d)(\d+)(t?)(?:-|$)")
_TAG_INTERPRETER = re.compile(r"^(cp|py)(\d)(\d*)$")
_LINUX_PLATFORM = re.compile(r"^(?:many|musl)?linux(?:_\d+_\d+|\d+)?_(?P<arch>.+)$")
_TAG_MACHINES = {"x86_64": 62, "i686": 3, "aarch64": 183, "armv7l": 40, "ppc64le": 21,
                 "ppc64": 21, "s390x": 22, "riscv64": 243}






@dataclass(frozen=True)
class _Cell:
    """What the audit checks the wheel against."""

    python: PyVersion
    targets: tuple[PyVersion, ...]  # every Python the wheel must load on, the cell's included
    torch_version: str | None
    torch_libraries: frozenset[str]  # file names torch brings into the process
    torch_lib_given: bool
    system_libraries: frozenset[str]
    torch_cuda: str | None = None  # the build torch's CUDA version; None: a CPU torch
    gpu_suites: tuple[tuple[str, str], ...] = ()  # (suite, GPU kind it needs)
    cuda_sources: tuple[str, ...] = ()  # the project's CUDA sources (.cu, .cuh)
    nvcc_ran: bool | None = None  # whether nvcc ran in the build (None: not known)
    cuda_code_optional: bool = False  # project.cuda_code: optional
    compiled_sources: bool = False  # the project has C/C++/CUDA sources
    torch_abi: str = "unstable"  # what the project claims (project.torch_abi)
    abi_tool: AbiTool | None = None  # how to run torch-abi-audit (None: not asked)


@dataclass(frozen=True)
class _Contents:
    name: str  # the wheel's file name
    members: tuple[str, ...]
    dist_info: str | None
    wheel_text: str | None
    metadata: str | None


def audit_wheel(wheel: Path, *, python: str, pythons: Sequence[str],
                torch_version: str | None, torch_lib_dirs: Sequence[Path] = (),
                system_libraries: Collection[str] | None = None,
                torch_cuda: str | None = None, gpu_suites: Mapping[str, str] | None = None,
                cuda_sources: Sequence[str] = (), nvcc_ran: bool | None = None,
                cuda_code_optional: bool = False,
                compiled_sources: bool = False, torch_abi: str = "unstable",
                abi_tool: AbiTool | None = None) -> AuditReport:
    """Audit ``wheel`` for a cell on ``python``; ``pythons`` are all that will load it.

    ``system_libraries`` (file names) replaces the ``ldconfig -p`` lookup, for tests and for
    auditing against a machine other than this one. With a CUDA torch (``torch_cuda``), each
    shared object's GPU code must run on the GPU kind of every suite in ``gpu_suites``
    (suite name -> kind). With a CUDA torch and ``cuda_sources`` in the project, a wheel
    without GPU code is a broken build (a note with ``cuda_code_optional``); ``nvcc_ran``
    says whether nvcc ran at all, for the message. A wheel with no shared object is a pure
    Python wheel: none of the checks for compiled code apply, unless the project has compiled
    sources (``compiled_sources``), which the build then left out.

    Each shared object's torch ABI is read by torch-abi-audit, run through ``abi_tool``
    (else, or when it cannot run, by compatmatrix's own reading of its symbols), and the
    torch requirement is judged by it: bounded to the built minor for code that uses the
    unstable C++ API, above the minimum torch of the shims for stable-ABI code, no rule for
    a wheel that uses no torch. ``torch_abi`` is the project's claim: ``stable`` makes an
    unstable library an error.
    """
    cell = _Cell(_py_version(python),
                 tuple(sorted({_py_version(p) for p in (*pythons, python)})), torch_version,
                 _torch_libraries(torch_lib_dirs), bool(torch_lib_dirs),
                 frozenset(system_libraries) if system_libraries is not None
                 else _system_libraries(), torch_cuda,
                 tuple(sorted((gpu_suites or {}).items())), tuple(cuda_sources), nvcc_ran,
                 cuda_code_optional, compiled_sources, torch_abi, abi_tool)
    try:
        with zipfile.ZipFile(wheel) as archive:
            return _audit(archive, wheel.name, cell)
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        tags, _ = _filename_tags(wheel.name)
        problem = Finding(ERROR, wheel.name, f"cannot read the wheel as a zip file ({exc}): "
                                             "rebuild it; installers will reject it too")
        return AuditReport(wheel.name, _tag_strings(tags), (), None, (problem,))


def check_running_torch(wheel: Path, *, python: str, torch_version: str,
                        torch_lib_dirs: Sequence[Path],
                        system_libraries: Collection[str] | None = None) -> tuple[Finding, ...]:
    """The ELF dependencies of each shared object against the torch a cell runs: a stable-ABI
    wheel is built against one torch and loaded under others, whose libraries must provide
    what it needs (``libtorch_cpu.so``, ``libc10.so``, a CUDA runtime of the same major)."""
    cell = _Cell(_py_version(python), (_py_version(python),), torch_version,
                 _torch_libraries(torch_lib_dirs), bool(torch_lib_dirs),
                 frozenset(system_libraries) if system_libraries is not None
                 else _system_libraries())
    try:
        with zipfile.ZipFile(wheel) as archive:
            contents, _ = _read_contents(archive, wheel.name)
            installed = {_installed(m) for m in contents.members}
            findings: list[Finding] = []
            for member in (m for m in contents.members if _SHARED_OBJECT.search(m)):
                with archive.open(member) as stream:
                    info = read_elf(stream)
                findings += _check_needed(member, info, installed, contents.members, cell)
    except (OSError, EOFError, ElfError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return ()  # the audit already reported an unreadable wheel or shared object
    return tuple(findings)


def _audit(archive: zipfile.ZipFile, name: str, cell: _Cell) -> AuditReport:
    contents, findings = _read_contents(archive, name)
    tags, tag_findings = _wheel_tags(contents)
    extensions = tuple(m for m in contents.members if _is_extension(m))
    shared = tuple(m for m in contents.members if _SHARED_OBJECT.search(m))
    verdicts = library_verdicts(archive, shared, cell.abi_tool)
    requirement, torch_findings = _check_torch_requirement(contents, cell, verdicts)
    findings += tag_findings
    findings += _check_tags(name, tags, cell)
    users = _users(tags, contents.metadata)
    findings += _check_extensions(name, tags, extensions, shared,
                                  tuple(sorted({*users, *cell.targets})), cell.compiled_sources)
    findings += _check_shared_objects(archive, contents, tags, shared, cell)
    findings += torch_findings
    findings += _check_stable_claim(verdicts, cell)
    findings += _check_limited_api(tags, verdicts)
    gpu_code, gpu_findings = _check_gpu_code(archive, name, shared, cell)
    findings += gpu_findings
    return AuditReport(name, _tag_strings(tags), extensions, requirement, tuple(findings),
                       gpu_code, verdicts.libraries, verdicts.source)


# -- reading the wheel ----------------------------------------------------------------------


def _read_contents(archive: zipfile.ZipFile, name: str) -> tuple[_Contents, list[Finding]]:
    members = tuple(sorted(n for n in archive.namelist() if not n.endswith("/")))
    folders = sorted({m.split("/", 1)[0] for m in members
                      if "/" in m and m.split("/", 1)[0].endswith(".dist-info")})
    if len(folders) != 1:
        what = "no .dist-info folder" if not folders else f"several ({', '.join(folders)})"
        return (_Contents(name, members, None, None, None),
                [Finding(ERROR, name, f"the wheel has {what}: it is not a valid wheel, "
                                      "installers will reject it")])
    dist_info = folders[0]
    findings: list[Finding] = []
    texts: dict[str, str | None] = {}
    for file in ("WHEEL", "METADATA", "RECORD"):
        texts[file], problem = _read_text(archive, f"{dist_info}/{file}")
        if problem:
            findings.append(Finding(ERROR, f"{dist_info}/{file}", problem))
    return _Contents(name, members, dist_info, texts["WHEEL"], texts["METADATA"]), findings


def _read_text(archive: zipfile.ZipFile, member: str) -> tuple[str | None, str]:
    try:
        return archive.read(member).decode("utf-8"), ""
    except KeyError:
        return None, "is missing: the wheel is incomplete and installers will reject it"
    except (OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc}): the wheel is damaged"


def _headers(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text, headersonly=True)


def _wheel_tags(contents: _Contents) -> tuple[frozenset[Tag], list[Finding]]:
    from_name, problem = _filename_tags(contents.name)
    findings = [Finding(ERROR, contents.name, problem)] if problem else []
    from_file: frozenset[Tag] = frozenset()
    if contents.wheel_text is not None:
        lines = _headers(contents.wheel_text).get_all("Tag") or []
        from_file = frozenset(t for line in lines for t in parse_tag(str(line).strip()))
    if from_name and from_file and from_name != from_file:
        findings.append(Finding(WARNING, f"{contents.dist_info}/WHEEL", (
            f"lists the tags {', '.join(_tag_strings(from_file))} but the file name says "
            f"{', '.join(_tag_strings(from_name))}: installers go by the file name")))
    return from_name or from_file, findings


def _filename_tags(name: str) -> tuple[frozenset[Tag], str]:
    try:
        return parse_wheel_filename(name)[3], ""
    except InvalidWheelFilename as exc:
        return frozenset(), f"is not a valid wheel file name ({exc}): installers reject it"


def _tag_strings(tags: Iterable[Tag]) -> tuple[str, ...]:
    return tuple(sorted(str(t) for t in tags))


# -- check 1: tags against the extension modules --------------------------------------------


def _py_version(text: str) -> PyVersion:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _py_text(versions: Iterable[PyVersion]) -> str:
    return ", ".join(f"{major}.{minor}" for major, minor in versions)


def _tag_admits(tag: Tag, python: PyVersion) -> bool:
    """Whether an installer on CPython ``python`` accepts ``tag`` (platform aside)."""
    match = _TAG_INTERPRETER.match(tag.interpreter)
    if match is None or int(match.group(2)) != python[0]:
        return False
    if not match.group(3):  # py3, cp3
        return tag.abi in ("none", "abi3")
    minor = int(match.group(3))
    if tag.abi == "abi3":
        return python[1] >= minor
    return python[1] == minor and tag.abi in ("none", f"cp{python[0]}{python[1]}")


def _check_tags(name: str, tags: frozenset[Tag], cell: _Cell) -> list[Finding]:
    if not tags:
        return []
    refused = [p for p in cell.targets if not any(_tag_admits(t, p) for t in tags)]
    if not refused:
        return []
    shown = ", ".join(_tag_strings(tags))
    abi3 = sorted(str(t) for t in tags if t.abi == "abi3")
    if abi3:
        why = f"{shown}, whose minimum is above Python {_py_text(refused)}"
    else:
        why = f"{shown}, which does not name Python {_py_text(refused)}"
    return [Finding(ERROR, name, f"the wheel is tagged {why}: installers there refuse it, yet "
                                 f"the matrix runs it on Python {_py_text(refused)}")]


def _is_extension(member: str) -> bool:
    return _EXTENSION.match(posixpath.basename(member)) is not None


def _suffix(member: str) -> str | None:
    match = _EXTENSION.match(posixpath.basename(member))
    return match.group("suffix") if match else None


def _loads_on(member: str, python: PyVersion) -> bool:
    suffix = _suffix(member)
    if suffix is None or suffix == "abi3":
        return True
    match = _CPYTHON_SUFFIX.match(suffix)
    return (match is not None and not match.group(3)
            and (int(match.group(1)), int(match.group(2))) == python)


def _built_for(member: str) -> str:
    suffix = _suffix(member) or ""
    match = _CPYTHON_SUFFIX.match(suffix)
    if match is None:
        return f"an interpreter other than CPython ({suffix})"
    free = " (free-threaded)" if match.group(3) else ""
    return f"CPython {match.group(1)}.{match.group(2)}{free}"


def _users(tags: frozenset[Tag], metadata: str | None) -> tuple[PyVersion, ...]:
    """The CPython releases the wheel admits: those its tags let installers put it on, that its
    Requires-Python allows, from the tags' lowest Python to the newest CPython released —
    whether or not the matrix (or this machine) has them. A wheel is judged for these users,
    not only for the cells that tested it."""
    requires = None
    if metadata is not None:
        text = _headers(metadata).get("Requires-Python")
        try:
            requires = SpecifierSet(str(text)) if text else None
        except InvalidSpecifier:
            requires = None
    found = []
    for minor in range(0, LATEST_CPYTHON[1] + 1):
        python = (3, minor)
        if not any(_tag_admits(t, python) for t in tags):
            continue
        if requires is not None and not any(
                requires.contains(f"3.{minor}.{patch}", prereleases=True) for patch in (0, 99)):
            continue
        found.append(python)
    return tuple(found)


def _check_extensions(name: str, tags: frozenset[Tag], extensions: tuple[str, ...],
                      shared: tuple[str, ...], targets: tuple[PyVersion, ...],
                      compiled_sources: bool) -> list[Finding]:
    """Every Python in ``targets`` (the wheel's users and the matrix's cells) must find a
    variant of each extension module it can load."""
    if not shared:
        return _no_extension(name, tags, compiled_sources)
    modules: dict[str, list[str]] = {}
    for member in extensions:  # Python imports <dir>/<module> from any of its variants
        key = posixpath.join(posixpath.dirname(member), posixpath.basename(member).split(".")[0])
        modules.setdefault(key, []).append(member)
    abi3 = sorted({f"{t.interpreter}-{t.abi}" for t in tags if t.abi == "abi3"})
    return [f for variants in modules.values()
            for f in _check_module(variants, abi3, targets)]


def _no_extension(name: str, tags: frozenset[Tag], compiled_sources: bool) -> list[Finding]:
    specific = sorted(str(t) for t in tags if t.abi != "none" or t.platform != "any")
    if specific:
        return [Finding(ERROR, name, f"the wheel is tagged {', '.join(specific)} but carries no "
                                     "extension module: the build did not compile the "
                                     "extension")]
    if compiled_sources:
        return [Finding(ERROR, name, "the wheel carries no extension module, though the project "
                                     "has C, C++ or CUDA sources: the build left them out (a "
                                     "setup.py that skips its extension when something is "
                                     "missing?), and users get a package without its "
                                     "compiled code")]
    return []  # a pure Python wheel: nothing compiled to check


def _check_module(variants: list[str], abi3: list[str],
                  targets: tuple[PyVersion, ...]) -> list[Finding]:
    if any(_suffix(v) in (None, "abi3") for v in variants):  # loads on every CPython
        return []
    missing = [p for p in targets if not any(_loads_on(v, p) for v in variants)]
    if not missing:
        return []  # e.g. one .so per CPython the wheel admits (DeepGEMM's layout)
    file = variants[0]
    what = file if len(variants) == 1 else _module_name(file)
    built = ", ".join(_built_for(v) for v in sorted(variants, key=_variant_order))
    if abi3:
        return [Finding(ERROR, file, f"{what} is built for {built} only, tagged "
                                     f"{', '.join(abi3)}: will not load on "
                                     f"{_py_text(missing)}, which the wheel admits")]
    return [Finding(ERROR, file, f"{what} is built for {built} only: it will not load on "
                                 f"Python {_py_text(missing)}, where this wheel is used")]


def _module_name(member: str) -> str:
    """``pkg/_C.cpython-311-x86_64-linux-gnu.so`` -> ``pkg/_C``: the module, not one file."""
    return posixpath.join(posixpath.dirname(member), posixpath.basename(member).split(".")[0])


def _variant_order(member: str) -> tuple[int, int]:
    match = _CPYTHON_SUFFIX.match(_suffix(member) or "")
    return (int(match.group(1)), int(match.group(2))) if match else (99, 99)


# -- check 2: the ELF dependencies of each shared object ------------------------------------


@functools.lru_cache(maxsize=1)
def _system_libraries() -> frozenset[str]:
    # Cached per process: ldconfig's cache does not change while a matrix runs.
    names = set(_SYSTEM_FAMILY)
    ldconfig = (shutil.which("ldconfig")
                or next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig")
                         if os.path.exists(p)), None))
    if ldconfig is not None:
        result = _cmd.run([ldconfig, "-p"], timeout=30)
        if result.ok:
            names.update(line.split()[0] for line in result.output.splitlines()[1:]
                         if line.startswith("\t") and line.split())
    for folder in _DEFAULT_LIBRARY_DIRS:
        names.update(_listdir(Path(folder)))
    return frozenset(names)


def system_libraries() -> frozenset[str]:
    """File names of the shared libraries the dynamic loader finds on this machine."""
    return _system_libraries()


def _listdir(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(folder) if _SHARED_OBJECT.search(entry.name)]
    except OSError:
        return []


def _torch_libraries(folders: Sequence[Path]) -> frozenset[str]:
    # Once torch is imported, what it loaded satisfies the extension's DT_NEEDED by soname:
    # its own libraries, and those its RUNPATH reaches (nvidia/*/lib for CUDA builds).
    names: set[str] = set()
    for folder in folders:
        for name in _listdir(folder):
            names.add(name)
            try:
                info = read_elf_file(folder / name)
            except ElfError:
                continue
            for entry in info.search_path:
                path = entry.replace("${ORIGIN}", str(folder)).replace("$ORIGIN", str(folder))
                names.update(_listdir(Path(path)))
    return frozenset(names)


def _installed(member: str) -> str:
    """Where a wheel member lands relative to site-packages (.data/platlib is unpacked)."""
    parts = member.split("/")
    if len(parts) > 2 and parts[0].endswith(".data") and parts[1] in ("purelib", "platlib"):
        return "/".join(parts[2:])
    return member


def _check_shared_objects(archive: zipfile.ZipFile, contents: _Contents, tags: frozenset[Tag],
                          shared: tuple[str, ...], cell: _Cell) -> list[Finding]:
    installed = {_installed(m) for m in contents.members}
    machines = {_TAG_MACHINES.get(m.group("arch")) for t in tags
                if (m := _LINUX_PLATFORM.match(t.platform))} - {None}
    findings: list[Finding] = []
    for member in shared:
        try:
            with archive.open(member) as stream:
                info = read_elf(stream)
        except (ElfError, OSError, EOFError, zipfile.BadZipFile) as exc:
            findings.append(Finding(ERROR, member, f"{member} is not a loadable ELF shared "
                                                   f"object ({exc})"))
            continue
        findings += _check_binary(member, info, machines)
        findings += _check_needed(member, info, installed, contents.members, cell)
        findings += _check_private_libstdcxx(archive, member, info)
    return findings


# Defined by every copy of libstdc++: an extension that exports it carries its own copy.
_LIBSTDCXX_MARKER = "_ZNSt6locale7classicEv"  # std::locale::classic()


def _check_private_libstdcxx(archive: zipfile.ZipFile, member: str,
                             info: ElfInfo) -> list[Finding]:
    """An extension that links torch must share torch's libstdc++.so.6.

    A toolchain that links libstdc++ statically (-static-libstdc++, or a compiler wrapper
    that adds it) gives the extension a private copy. In the process it only partly wins:
    the dynamic linker binds some symbols (the facet ids) to the libstdc++.so.6 that Python
    and torch loaded, others stay private (std::locale's statics), and streams crash —
    every TORCH_CHECK message that prints a number. Seen on a vendor CUDA image.
    """
    if "libstdc++.so.6" in info.needed or not any(
            lib.startswith(("libtorch", "libc10")) for lib in info.needed):
        return []
    try:
        with archive.open(member) as stream:
            private = _LIBSTDCXX_MARKER in defined_symbols(stream, {_LIBSTDCXX_MARKER})
    except (ElfError, OSError, EOFError, zipfile.BadZipFile):
        return []  # check 2 already reports an unreadable ELF file
    if not private:
        return []
    return [Finding(ERROR, member, (
        f"{member} carries its own copy of libstdc++ (it defines std::locale::classic() and "
        "does not need libstdc++.so.6), yet links torch, which uses the shared one: in one "
        "process the two copies mix, and C++ streams crash (a TORCH_CHECK message that "
        "prints a number segfaults); link libstdc++ dynamically (no -static-libstdc++; a "
        "-lstdc++ of its own before the compiler's)"))]


def _check_binary(member: str, info: ElfInfo, machines: set[int | None]) -> list[Finding]:
    findings = []
    if not info.shared_object:
        findings.append(Finding(ERROR, member, f"{member} is an ELF file but not a shared "
                                               "object: it cannot be loaded"))
    if machines and info.machine not in machines:
        tagged = ", ".join(sorted(MACHINES.get(m, str(m)) for m in machines if m is not None))
        findings.append(Finding(ERROR, member, f"{member} is a {info.machine_name} binary, but "
                                               f"the wheel is tagged for {tagged}"))
    for entry in info.search_path:
        if entry.startswith("/"):
            findings.append(Finding(WARNING, member, (
                f"{member} has the library search path {entry}, a folder of the build "
                "machine that users do not have: use a $ORIGIN-relative path")))
    return findings


def _check_needed(member: str, info: ElfInfo, installed: set[str], members: tuple[str, ...],
                  cell: _Cell) -> list[Finding]:
    origin = posixpath.dirname(_installed(member))
    folders = [posixpath.normpath(e.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
               for e in info.search_path if "$ORIGIN" in e or "${ORIGIN}" in e]
    findings = []
    for library in info.needed:
        if any(posixpath.join(f, library) in installed for f in folders):
            continue
        if (library in cell.torch_libraries or library in cell.system_libraries
                or ("/" in library and os.path.exists(library))):
            continue
        elsewhere = [m for m in members if posixpath.basename(m) == library]
        findings.append(_unresolved(member, library, elsewhere, cell))
    return findings


def _unresolved(member: str, library: str, elsewhere: list[str], cell: _Cell) -> Finding:
    if elsewhere:
        return Finding(WARNING, member, (
            f"{library} needed by {member} is in the wheel at {elsewhere[0]}, but no $ORIGIN "
            f"search path of {member} leads there: it only loads if something loaded "
            f"{library} first"))
    if cell.torch_version is None:
        where = "in the wheel nor on the system"
    elif cell.torch_lib_given:
        where = f"in torch {cell.torch_version}'s libraries nor on the system"
    else:
        where = ("on the system, and no library folder of torch "
                 f"{cell.torch_version} was given to look in")
    hint = ""
    if "cuda" in library and (cell.torch_version or "").endswith("+cpu"):
        hint = f": the extension was built for CUDA, but torch {cell.torch_version} is CPU-only"
    return Finding(ERROR, member, f"{library} needed by {member} is not {where}{hint}")


# -- check 3: the torch requirement ---------------------------------------------------------


def _check_torch_requirement(contents: _Contents, cell: _Cell,
                             verdicts: AbiVerdicts) -> tuple[str | None, list[Finding]]:
    """The rule follows the binary: a bound to the built minor for the unstable C++ API, a
    lower bound at the shims' minimum for the stable ABI, nothing for code without torch."""
    if contents.metadata is None:
        return None, []  # already reported as missing or unreadable
    file = f"{contents.dist_info}/METADATA"
    lines, findings = _torch_lines(contents.metadata, file, cell.python)
    written = " and ".join(str(line) for line, _ in lines) or None
    kinds = {library.torch for library in verdicts.libraries}
    if cell.torch_version is None or not kinds or kinds == {NO_TORCH}:
        # The torch bounds are for compiled code that uses torch; a pure Python wheel, or one
        # whose libraries use no torch symbol, may declare any range (what the matrix
        # measures is its evidence).
        return written, findings
    if UNSTABLE not in kinds:
        return written, findings + _check_stable_requirement(file, lines, written, verdicts)
    built = Version(cell.torch_version)
    major, minor = (*built.release, 0)[:2]
    pin = f"torch>={major}.{minor},<{major}.{minor + 1}"
    if not lines:
        findings.append(Finding(ERROR, file, (
            "the wheel does not require torch: users will pair it with any torch, and an "
            f"extension built against torch {major}.{minor} fails to load under another "
            f"minor; require {pin}")))
        return None, findings
    if any(req.url for _, req in lines):
        return written, findings  # a direct URL names one exact build
    specifier = SpecifierSet()
    for _, req in lines:
        specifier &= req.specifier
    findings += _check_specifier(file, written or "", specifier, built, pin)
    return written, findings


def _check_stable_requirement(file: str, lines: list[tuple[str, Requirement]],
                              written: str | None, verdicts: AbiVerdicts) -> list[Finding]:
    """Stable-ABI code loads under every torch that has its shims: the requirement must not
    admit a torch without them, and needs no upper bound."""
    stable = [lib for lib in verdicts.libraries if lib.torch == STABLE]
    needing = max(stable, key=lambda lib: _release(lib.min_torch or "2.9.0"))
    minimum = Version(needing.min_torch or "2.9.0")
    floor = f"torch>={minimum.major}.{minimum.minor}"
    if minimum.micro:
        floor = f"torch>={minimum.public}"
    why = (f"{needing.member} uses torch's stable ABI, and its shims need torch "
           f"{minimum.public}" + (f" ({', '.join(needing.pinned_by[:3])})"
                                 if needing.pinned_by else ""))
    findings = _unknown_minimum(stable, verdicts)
    if not lines:
        findings.append(Finding(ERROR, file, (
            f"the wheel does not require torch, so it admits every torch, also those before "
            f"{minimum.public}, where it fails to load: {why}; require {floor}")))
        return findings
    if any(req.url for _, req in lines):
        return findings  # a direct URL names one exact build
    specifier = SpecifierSet()
    for _, req in lines:
        specifier &= req.specifier
    below = _admitted_below(specifier, minimum)
    if below is not None:
        findings.append(Finding(ERROR, file, (
            f"{written} admits torch {below}, below the torch the wheel needs: {why}; "
            f"require {floor} (no upper bound is needed)")))
    return findings


def _unknown_minimum(stable: list[LibraryAbi], verdicts: AbiVerdicts) -> list[Finding]:
    """What keeps the minimum torch from being known: no torch-abi-audit, or newer shims."""
    findings = []
    if verdicts.source == OWN_SOURCE:
        findings.append(Finding(WARNING, stable[0].member, (
            "the minimum torch of the stable-ABI libraries is not known "
            f"({verdicts.problem or 'torch-abi-audit was not run'}); "
            f"only the stable ABI's first release, 2.9, was checked against the torch "
            f"requirement: make {_TOOL_NAME} available to uv (it needs Python >= 3.11)")))
    for library in stable:
        if library.unknown_shims:
            findings.append(Finding(WARNING, library.member, (
                f"{library.member} uses shims newer than {verdicts.source} knows "
                f"({', '.join(library.unknown_shims[:3])}): the torch it needs is at least "
                f"{library.min_torch}, perhaps newer")))
    return findings


_TOOL_NAME = "torch-abi-audit"


def _admitted_below(specifier: SpecifierSet, minimum: Version) -> str | None:
    """The newest torch minor below ``minimum`` that ``specifier`` admits, if any."""
    candidates = [f"{minimum.major}.{minimum.minor}.{p}" for p in range(minimum.micro)]
    candidates += [f"{minimum.major}.{m}.{p}" for m in range(minimum.minor) for p in (0, 9)]
    candidates += ["1.13.1", "1.0.0"] if minimum.major == 2 else []
    admitted = [Version(v) for v in candidates if specifier.contains(v, prereleases=True)]
    if not admitted:
        return None
    newest = max(admitted)  # its minor: the patch level probed is no real release
    return f"{newest.major}.{newest.minor}" + (
        f".{newest.micro}" if (newest.major, newest.minor) == (minimum.major, minimum.minor)
        else "")


def _release(version: str) -> Version:
    return Version(version)


def _check_stable_claim(verdicts: AbiVerdicts, cell: _Cell) -> list[Finding]:
    """project.torch_abi: stable builds one wheel for every torch: each library must keep
    to the stable ABI, or the wheel breaks under every torch but the one it was built with."""
    if cell.torch_abi != "stable":
        return []
    return [Finding(ERROR, lib.member, (
        f"{lib.member} uses torch's unstable C++ API ({', '.join(lib.unstable[:3])}), but "
        f"project.torch_abi is stable: built once against torch {cell.torch_version}, it "
        "fails to load under the other torch releases it is tested with; use only the stable "
        "ABI (torch/csrc/stable, torch/headeronly, STABLE_TORCH_LIBRARY) or set "
        "project.torch_abi: unstable")) for lib in verdicts.libraries if lib.torch == UNSTABLE]


def _check_limited_api(tags: frozenset[Tag], verdicts: AbiVerdicts) -> list[Finding]:
    """An abi3 extension must use the CPython limited API only, symbol by symbol."""
    abi3_tagged = any(t.abi == "abi3" for t in tags)
    findings = []
    for lib in verdicts.libraries:
        if not lib.extension or not (abi3_tagged or _suffix(lib.member) == "abi3"):
            continue
        if lib.cpython_violations:
            findings.append(Finding(ERROR, lib.member, (
                f"{lib.member} is built for the CPython limited API (abi3), but uses "
                f"{', '.join(lib.cpython_violations[:5])}"
                + (f" and {len(lib.cpython_violations) - 5} more" if
                   len(lib.cpython_violations) > 5 else "")
                + ", outside it: it fails to load or misbehaves on other Pythons the wheel "
                "admits; use the limited API (Py_LIMITED_API) or tag the wheel per Python")))
        elif not lib.cpython_checked and verdicts.problem:
            findings.append(Finding(NOTE, lib.member, (
                f"{lib.member}'s use of the CPython limited API was not checked symbol by "
                f"symbol ({verdicts.problem})")))
    return findings


def _torch_lines(metadata: str, file: str,
                 python: PyVersion) -> tuple[list[tuple[str, Requirement]], list[Finding]]:
    environment = {"extra": "", "python_version": f"{python[0]}.{python[1]}",
                   "python_full_version": f"{python[0]}.{python[1]}.0"}
    found: list[tuple[str, Requirement]] = []
    findings = []
    for line in _headers(metadata).get_all("Requires-Dist") or []:
        text = str(line).strip()
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            findings.append(Finding(WARNING, file, f"cannot parse Requires-Dist {text!r}: {exc}"))
            continue
        if canonicalize_name(req.name) == "torch" and _applies(req, environment):
            found.append((text, req))
    return found, findings


def _applies(req: Requirement, environment: dict[str, str]) -> bool:
    if req.marker is None:
        return True
    try:
        return req.marker.evaluate(environment)
    except ValueError:  # a marker packaging cannot decide: assume it applies
        return True


def _check_specifier(file: str, written: str, specifier: SpecifierSet, built: Version,
                     pin: str) -> list[Finding]:
    major, minor = (*built.release, 0)[:2]
    findings = []
    if not specifier.contains(built.public, prereleases=True):
        findings.append(Finding(ERROR, file, (
            f"{written} excludes torch {built.public}, the torch the extension was built "
            f"against: require {pin}")))
    elif not specifier.contains(f"{major}.{minor}.0", prereleases=True):
        findings.append(Finding(WARNING, file, (
            f"{written} excludes torch {major}.{minor}.0, though an extension built against "
            f"torch {built} loads under any {major}.{minor}.x: require {pin}")))
    neighbours = [f"{major}.{minor + 1}.0"] + ([f"{major}.{minor - 1}.0"] if minor else [])
    admitted = [v for v in neighbours if specifier.contains(v, prereleases=True)]
    if admitted:
        findings.append(Finding(ERROR, file, (
            f"{written} admits torch {', '.join(admitted)}, but the extension was built against "
            f"torch {built} and fails to load under another minor: require {pin}")))
    return findings


# -- check 4: the GPU architectures of each shared object -----------------------------------


def _check_gpu_code(archive: zipfile.ZipFile, name: str, shared: tuple[str, ...],
                    cell: _Cell) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], list[Finding]]:
    found: list[tuple[str, tuple[GpuArch, ...]]] = []
    findings: list[Finding] = []
    for member in shared:
        try:
            with archive.open(member) as stream:
                archs = read_gpu_archs(stream)
        except (ElfError, OSError, EOFError, zipfile.BadZipFile) as exc:
            if _starts_as_elf(archive, member):  # else check 2 already said it is not ELF
                findings.append(Finding(ERROR, member,
                                        f"cannot read the GPU code of {member} ({exc})"))
            continue
        if archs:
            found.append((member, archs))
    listing = tuple((member, tuple(a.name for a in archs)) for member, archs in found)
    if cell.torch_cuda is None:
        return listing, findings  # a CPU torch: its GPU suites never run
    if not found:
        return listing, findings + _no_gpu_code(name, cell)
    for member, archs in found:
        for suite, kind in cell.gpu_suites:
            findings += _check_kind(member, archs, suite, KNOWN_KINDS[kind])
    return listing, findings


def _starts_as_elf(archive: zipfile.ZipFile, member: str) -> bool:
    try:
        with archive.open(member) as stream:
            return stream.read(4) == b"\x7fELF"
    except (OSError, EOFError, zipfile.BadZipFile):
        return False


def _no_gpu_code(name: str, cell: _Cell) -> list[Finding]:
    """A CUDA variant whose wheel carries no GPU code: its users get none of the kernels."""
    if not cell.cuda_sources:
        return []  # no CUDA sources (a C++ extension, or kernels compiled at run time)
    shown = ", ".join(cell.cuda_sources[:3]) + (
        f" and {len(cell.cuda_sources) - 3} more" if len(cell.cuda_sources) > 3 else "")
    ran = {True: "nvcc ran during the build, but ", False: "nvcc never ran during the build: ",
           None: ""}[cell.nvcc_ran]
    suites = ", ".join(f"{suite!r} ({kind})" for suite, kind in cell.gpu_suites)
    needed = f"; the GPU suites {suites} would have nothing to run" if suites else ""
    if cell.cuda_code_optional:
        return [Finding(NOTE, name, (
            f"no shared object carries GPU code, though torch is a CUDA {cell.torch_cuda} "
            f"build and the project has CUDA sources ({shown}); project.cuda_code: optional "
            "says this variant may ship none"))]
    return [Finding(ERROR, name, (
        f"{ran}no shared object in the wheel carries GPU code (no .nv_fatbin section), though "
        f"torch is a CUDA {cell.torch_cuda} build and the project has CUDA sources ({shown}): "
        f"the build left its CUDA kernels out{needed}. The usual cause is a build script that "
        "compiles CUDA only when it sees a GPU (torch.cuda.is_available() is False on a "
        "builder without one): make it build CUDA whenever torch has it, or honour a switch "
        "such as FORCE_CUDA=1 and set it (TORCH_CUDA_ARCH_LIST names the architectures); "
        "project.cuda_code: optional, for a variant that legitimately ships no GPU code"))]


def _runs_on(arch: GpuArch, kind: GpuKind) -> bool:
    """Whether ``arch`` runs on every GPU of ``kind`` (a kind without a minor: its .0)."""
    if kind.major is None:
        return True
    device = (kind.major, kind.minor or 0)
    if arch.suffix == "a":  # architecture-specific code runs on that exact architecture
        return (arch.major, arch.minor) == device
    if arch.kind == "sass":  # machine code runs on later minors of the same major only
        return arch.major == device[0] and arch.minor <= device[1]
    return (arch.major, arch.minor) <= device  # the driver compiles older PTX for newer GPUs


def _check_kind(member: str, archs: tuple[GpuArch, ...], suite: str,
                kind: GpuKind) -> list[Finding]:
    """SASS for the kind is needed; PTX that the driver can compile for it only warns."""
    shown = ", ".join(a.name for a in archs)
    wanted = "any" if kind.major is None else f"{kind.major}.{kind.minor or 0}"
    if any(a.kind == "sass" and _runs_on(a, kind) for a in archs):
        return []
    ptx = [a.name for a in archs if a.kind == "ptx" and _runs_on(a, kind)]
    if ptx:
        return [Finding(WARNING, member, (
            f"{member} runs on GPU kind {kind.name} ({kind.requirement}), which suite "
            f"{suite!r} needs, only through {', '.join(ptx)}: the driver compiles that PTX "
            f"when the library loads (a slow first load, a driver at least as new as the "
            f"nvcc that built it, no {kind.name}-specific instructions); add {wanted!r} to "
            "project.cuda_archs for machine code"))]
    return [Finding(ERROR, member, (
        f"{member} carries GPU code for {shown} only, none of which runs on GPU kind "
        f"{kind.name} ({kind.requirement}), which suite {suite!r} needs: its kernels would fail "
        f"to launch there; add {wanted!r} to project.cuda_archs (TORCH_CUDA_ARCH_LIST)"))]
