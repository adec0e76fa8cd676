"""Stage ``select``: which given wheel a cell tests, when the wheels are not built here.

A release's wheels are built elsewhere (cibuildwheel, a Docker job, a publish workflow). For
each cell, the one wheel that installs on the cell's Python and platform (its tags against the
tags that CPython version supports here), whose ``Requires-Dist`` admits the cell's torch, and
whose local version label, if any, names the cell's variant (``+cu130``, ``+cpu``,
flash-attention's ``+cu12torch2.9cxx11abiTRUE``) is the cell's wheel. None: the release lacks
a wheel for the cell, which fails at ``select`` naming what is missing. More than one: the
folder is ambiguous, a usage error before any cell runs.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sysconfig
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging import tags
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import error_lines
from compatmatrix.host.uv import Sources, uv_source_args
from compatmatrix.model.outcomes import Artifact
from compatmatrix.model.project import marker_environment, tomllib

__all__ = ["Artifact", "Fetched", "GivenWheel", "Selection", "cell_tags", "fetch_release",
           "label_problem", "read_wheel", "select_wheel", "sha_file", "torch_problem",
           "wheel_problem"]

_CUDA_LABEL = re.compile(r"^(cu[0-9]+|rocm[0-9]+(?:\.[0-9]+)*|cpu)")
_TORCH_LABEL = re.compile(r"torch([0-9]+)\.?([0-9]+)")


@dataclass(frozen=True)
class GivenWheel:
    path: Path
    name: str                     # the distribution, canonical
    version: Version
    tags: frozenset[tags.Tag]
    requires_dist: tuple[str, ...]
    problem: str = ""             # the file is not a readable wheel: why

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def label(self) -> str | None:
        return self.version.local


@dataclass(frozen=True)
class Selection:
    """A cell's wheel, or why it has none; ``ambiguous``: more than one matched."""

    wheel: GivenWheel | None
    reason: str = ""
    details: tuple[str, ...] = ()
    ambiguous: tuple[str, ...] = ()


def sha_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_wheel(path: Path) -> GivenWheel:
    """The facts of the wheel file at ``path``; one that cannot be read carries ``problem``."""
    try:
        name, version, _, wheel_tags = parse_wheel_filename(path.name)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        return GivenWheel(path, "", Version("0"), frozenset(), (),
                          f"not a wheel file name ({exc})")
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist()
                           if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if member is None:
                return GivenWheel(path, name, version, wheel_tags, (), "no .dist-info/METADATA")
            text = archive.read(member).decode("utf-8", errors="replace")
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        return GivenWheel(path, name, version, wheel_tags, (), f"not a zip file ({exc})")
    requires = tuple(line.partition(":")[2].strip() for line in text.splitlines()
                     if line.lower().startswith("requires-dist:"))
    return GivenWheel(path, canonicalize_name(name), version, wheel_tags, requires)


@cache
def cell_tags(python: str) -> frozenset[tags.Tag]:
    """The tags CPython ``python`` (``3.12``) installs on this machine's platform."""
    version = tuple(int(part) for part in python.split(".")[:2])
    platforms = list(tags.platform_tags())
    return frozenset([*tags.cpython_tags(version, platforms=platforms),
                      *tags.compatible_tags(version, platforms=platforms)])


def platform_name() -> str:
    """``linux x86_64``: for messages."""
    return sysconfig.get_platform().replace("-", " ")


def torch_specifier(wheel: GivenWheel, python_full: str) -> SpecifierSet | None:
    """The wheel's torch requirement (without extras, markers evaluated for the cell's
    Python); None when it does not require torch."""
    environment = {**marker_environment(python_full), "extra": ""}
    found: SpecifierSet | None = None
    for text in wheel.requires_dist:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != "torch":
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        found = (found or SpecifierSet()) & requirement.specifier
    return found


def label_problem(label: str | None, variant: str | None, torch: str | None) -> str | None:
    """Why the local version ``label`` does not name the cell (``variant``: cpu, cu130;
    ``torch``: the cell's exact torch, or None when not known), or None when it does.

    A ``cuNN`` label names a variant by prefix (``cu12`` is every CUDA 12 variant,
    ``cu130`` exactly cu130), ``cpu`` the cpu variant, a ``torchX.Y`` token the torch minor.
    A label that says nothing of either names every cell."""
    if not label:
        return None
    text = label.lower()
    found = _CUDA_LABEL.match(text)
    if found is not None and variant is not None:
        named = found[1]
        if named == "cpu" and variant != "cpu":
            return f"is a cpu build (+{label}), the cell is {variant}"
        if named != "cpu" and not variant.startswith(named):
            return f"is built for {named} (+{label}), the cell is {variant}"
    minor = _TORCH_LABEL.search(text)
    if minor is not None and torch is not None:
        try:
            release = Version(torch).release
        except InvalidVersion:
            return None
        wanted = f"{minor[1]}.{minor[2]}"
        if f"{release[0]}.{release[1] if len(release) > 1 else 0}" != wanted:
            return f"is built for torch {wanted} (+{label}), the cell has torch {torch}"
    return None


def wheel_problem(wheel: GivenWheel, *, python: str, variant: str | None,
                  torch: str | None, torch_known: bool, project: str | None = None) -> str | None:
    """Why ``wheel`` is not the cell's, in a few words after its file name; None: it is.

    ``torch``: the cell's exact torch, None for none (not installed); ``torch_known``: False
    when the cell's torch is not known before resolving (a specifier, preinstalled), so
    the wheel's requirement is checked later against the resolved one."""
    if wheel.problem:
        return wheel.problem
    if project is not None and wheel.name != canonicalize_name(project):
        return f"is {wheel.name}, not {canonicalize_name(project)}"
    if not wheel.tags & cell_tags(python):
        shown = ".".join(sorted({str(t) for t in wheel.tags}))
        return f"does not install on cp{python.replace('.', '')} {platform_name()} ({shown})"
    problem = label_problem(wheel.label, variant, torch if torch_known else None)
    if problem is not None:
        return problem
    if torch_known and torch is None and _TORCH_LABEL.search((wheel.label or "").lower()):
        return f"is built for a torch (+{wheel.label}), the cell has no torch"
    if torch_known:
        return torch_problem(wheel, python=python, torch=torch)
    return None


def torch_problem(wheel: GivenWheel, *, python: str, torch: str | None) -> str | None:
    """Why the wheel's ``Requires-Dist`` does not admit ``torch`` (None: not installed)."""
    specifier = torch_specifier(wheel, f"{python}.0")
    if specifier is None:
        return None
    if torch is None:
        return f"requires torch{specifier or ''}, the cell has no torch"
    if not specifier.contains(torch, prereleases=True):
        return f"requires torch{specifier}"
    return None


def select_wheel(wheels: Sequence[GivenWheel], *, where: str, python: str,
                 variant: str | None, torch: str | None, torch_known: bool,
                 project: str | None = None) -> Selection:
    """The one wheel of ``wheels`` for the cell; ``where`` names the folder for messages."""
    matched: list[GivenWheel] = []
    rejected: list[str] = []
    for wheel in sorted(wheels, key=lambda w: w.file):
        problem = wheel_problem(wheel, python=python, variant=variant, torch=torch,
                                torch_known=torch_known, project=project)
        if problem is None:
            matched.append(wheel)
        else:
            rejected.append(f"{wheel.file} {problem}")
    if len(matched) == 1:
        return Selection(matched[0])
    if matched:
        return Selection(None, ambiguous=tuple(w.file for w in matched))
    wanted = f"cp{python.replace('.', '')} {platform_name()}"
    if variant is not None:
        wanted += f" ({variant})"
    if torch_known:
        wanted += (f" whose requirements admit torch {torch}" if torch is not None
                   else " that does not require torch")
    reason = f"no wheel in {where} for {wanted}"
    if not wheels:
        return Selection(None, f"{reason}: it holds no wheel", ())
    return Selection(None, f"{reason}: {_closest(rejected)}", tuple(rejected))


def _closest(rejected: Iterable[str]) -> str:
    """The rejection that got furthest (a torch bound or a label beats a tag), else the first."""
    lines = list(rejected)
    for words in ("requires torch", "is built for", "is a cpu build"):
        for line in lines:
            if words in line:
                return line + _more(len(lines))
    return lines[0] + _more(len(lines))


def _more(count: int) -> str:
    return f" (and {count - 1} more wheel{'s' * (count > 2)}: see the details)" if count > 1 else ""


@dataclass(frozen=True)
class Fetched:
    """The published wheel of a cell, or why there is none (``unavailable``: the index did
    not answer; else the release has no wheel for the cell)."""

    wheel: GivenWheel | None
    reason: str = ""
    details: tuple[str, ...] = ()
    unavailable: bool = False
    duration: float = 0.0


def fetch_release(name: str, version: str, *, python: str, variant: str | None,
                  torch: str | None, uv: Sequence[str], interpreter: Path, sources: Sources,
                  folder: Path, log: Path, env: Mapping[str, str], timeout: float) -> Fetched:
    """The wheel of the release ``name==version`` that the cell installs: uv lists the
    release's files with their URLs and hashes (a pylock.toml), the one for the cell's
    Python, platform and variant is downloaded into ``folder`` (kept by its sha256) and
    checked against its hash."""
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "pylock.toml"
    argv = [*uv, "pip", "compile", "-", "--no-deps", "--format", "pylock.toml", "-o",
            str(lock), "--python", str(interpreter), "--quiet", "--no-header",
            *uv_source_args(sources)]
    result = _cmd.run(argv, log=log, env=env, timeout=timeout, input_text=f"{name}=={version}\n")
    if not result.ok:
        return Fetched(None, f"uv could not list the files of {name}=={version}"
                       + (": timed out" if result.timed_out else ""),
                       error_lines(result.output), unavailable=True,
                       duration=time.monotonic() - start)
    try:
        files = _lock_wheels(lock, name)
    except (OSError, ValueError) as exc:
        return Fetched(None, f"uv's pylock.toml for {name}=={version} cannot be read: {exc}",
                       duration=time.monotonic() - start)
    wanted = f"cp{python.replace('.', '')} {platform_name()}" + (
        f" ({variant})" if variant else "")
    fits = [(file, url, sha) for file, url, sha in files
            if _fits(file, python=python, variant=variant, torch=torch)]
    if not fits:
        listed = tuple(file for file, _, _ in files) or ("(no wheel: an sdist only?)",)
        return Fetched(None, f"the release {name}=={version} has no wheel for {wanted}",
                       tuple(f"published: {file}" for file in listed),
                       duration=time.monotonic() - start)
    file, url, sha = min(fits, key=lambda fit: _priority(fit[0], python))
    try:
        path = _download(url, sha, folder / (sha or "unhashed") / file, lock.parent)
    except (OSError, ValueError) as exc:
        return Fetched(None, f"could not download {file}: {exc}", (url,), unavailable=True,
                       duration=time.monotonic() - start)
    return Fetched(read_wheel(path), duration=time.monotonic() - start)


def _lock_wheels(lock: Path, name: str) -> list[tuple[str, str, str]]:
    """(file name, URL or path, sha256) of each wheel of ``name`` in a pylock.toml."""
    data = tomllib.loads(lock.read_text(encoding="utf-8"))
    found = []
    for package in data.get("packages", []):
        if canonicalize_name(str(package.get("name", ""))) != canonicalize_name(name):
            continue
        for wheel in package.get("wheels", []):
            where = str(wheel.get("url") or wheel.get("path") or "")
            file = str(wheel.get("name") or urllib.parse.unquote(where.rsplit("/", 1)[-1]))
            sha = str((wheel.get("hashes") or {}).get("sha256", ""))
            if where and file.endswith(".whl"):
                found.append((file, where, sha))
    return sorted(found)


def _fits(file: str, *, python: str, variant: str | None, torch: str | None) -> bool:
    try:
        _, version, _, wheel_tags = parse_wheel_filename(file)
    except (InvalidWheelFilename, InvalidVersion):
        return False
    return bool(wheel_tags & cell_tags(python)) and label_problem(
        version.local, variant, torch) is None


def _priority(file: str, python: str) -> int:
    """How early the wheel's best tag comes in the order an installer prefers them."""
    order = _tag_order(python)
    _, _, _, wheel_tags = parse_wheel_filename(file)
    return min(order.get(tag, len(order)) for tag in wheel_tags)


@cache
def _tag_order(python: str) -> dict[tags.Tag, int]:
    version = tuple(int(part) for part in python.split(".")[:2])
    platforms = list(tags.platform_tags())
    ordered = [*tags.cpython_tags(version, platforms=platforms),
               *tags.compatible_tags(version, platforms=platforms)]
    return {tag: index for index, tag in reversed(list(enumerate(ordered)))}


def _download(where: str, sha256: str, dest: Path, base: Path) -> Path:
    """``where`` (an http(s) or file URL, or a path relative to ``base``) at ``dest``, checked
    against ``sha256``; a copy already there with that hash is kept."""
    if dest.is_file() and sha256 and sha_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    parsed = urllib.parse.urlparse(where)
    if parsed.scheme == "file":
        shutil.copyfile(urllib.request.url2pathname(parsed.path), partial)
    elif parsed.scheme in ("http", "https"):
        with urllib.request.urlopen(where, timeout=120) as response, \
                partial.open("wb") as out:
            shutil.copyfileobj(response, out)
    else:
        shutil.copyfile(base / where, partial)
    got = sha_file(partial)
    if sha256 and got != sha256:
        partial.unlink()
        raise ValueError(f"its sha256 is {got}, the index says {sha256}")
    partial.replace(dest)
    return dest
