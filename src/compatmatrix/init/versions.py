"""The versions ``compatmatrix init`` puts on the axes: the Pythons installed here, the newest
torch release the project admits (asked of the package index with uv, never downloaded), the
torch installed here, and the CUDA build PyPI ships for each torch release."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.interpreters import InterpreterFinder
from compatmatrix.host.uv import NETWORK, UNSATISFIABLE, parse_pins

__all__ = [
    "PYTHONS",
    "CudaBuild",
    "PythonChoice",
    "TorchAnswers",
    "TorchIndex",
    "ask_torch",
    "choose_pythons",
    "installed_torch",
    "public",
    "pypi_cuda_builds",
    "table_cuda_build",
    "table_releases",
]

PYTHONS = tuple(f"3.{minor}" for minor in range(8, 15))
# PyPI's torch for Linux x86_64 is one CUDA build per release; (first release, variant),
# newest first, read from each release's nvidia-cuda-runtime requirement. Used when the
# index cannot be asked; a newer release is assumed to be the newest build listed here.
PYPI_CUDA_BUILDS = (("2.15", "cu132"), ("2.11", "cu130"), ("2.8", "cu128"), ("2.7", "cu126"),
                    ("2.5", "cu124"), ("2.1", "cu121"), ("2.0", "cu117"))
MAX_QUESTIONS = 8  # uv processes answering from its cache at once
LINUX_PLATFORM = "x86_64-manylinux_2_28"  # the platform PyPI's CUDA torch wheels are built for
# how uv --offline words "not in the cache" (as unsatisfiable, which it is not)
CACHE_MISS = ("not found in the cache", "network was disabled")
_CUDA_RUNTIME = re.compile(r"^nvidia-cuda-runtime(?:-cu\d+)?$")


@dataclass(frozen=True)
class TorchIndex:
    """Where init asks which torch releases exist.

    ``uv_args`` are added to ``uv pip compile``: none asks the index uv is configured with
    (PyPI unless ``UV_DEFAULT_INDEX``/``UV_INDEX_URL`` or uv.toml say otherwise); tests pass
    ``--no-index --find-links DIR`` with a folder of tiny fake torch wheels.
    """

    uv_args: tuple[str, ...] = ()
    timeout: float = 30.0  # seconds per question; uv retries a dead index for about 10 s


@dataclass(frozen=True)
class PythonChoice:
    versions: tuple[str, ...]
    installed: bool  # False: none admitted is installed here; versions is the newest admitted


@dataclass(frozen=True)
class TorchAnswers:
    """What the index says about torch for the Pythons of the axis (versions are public:
    without a +local label)."""

    newest: str | None  # the newest release the declared range admits, on any of the Pythons
    python: str | None  # the newest Python that release has wheels for
    newest_for: dict[str, str]  # Python -> the newest release for it (absent: none)
    has: dict[tuple[str, str], bool]  # (Python, version) -> whether the index has it
    problem: str = ""  # why there is no answer; "" when the index answered
    unknown: frozenset[str] = frozenset()  # Pythons whose newest release is not known

    def available(self, python: str, version: str) -> bool:
        """Whether torch ``version`` exists for ``python``; True when that is not known."""
        if (python, version) in self.has:
            return self.has[(python, version)]
        if version == self.newest and python not in self.unknown:
            return self.newest_for.get(python) == version
        return True


@dataclass(frozen=True)
class CudaBuild:
    """The CUDA variant of PyPI's torch build of a release, and how that is known."""

    variant: str
    how: str  # e.g. "it requires nvidia-cuda-runtime==13.0.96", or "compatmatrix's table"


def choose_pythons(requires: SpecifierSet | None, finder: InterpreterFinder) -> PythonChoice:
    """The Pythons 3.8-3.14 installed here that ``requires`` admits; when there is none, the
    newest one it admits (with ``installed`` False). ValueError when it admits none."""
    found = []
    for version in PYTHONS:
        interpreter = finder.find(version)
        if interpreter.found and (requires is None or requires.contains(
                interpreter.full_version or version + ".0", prereleases=True)):
            found.append(version)
    if found:
        return PythonChoice(tuple(found), True)
    admitted = [v for v in PYTHONS if requires is None or admits_minor(requires, v)]
    if not admitted:
        raise ValueError(f"it admits none of Python {PYTHONS[0]}-{PYTHONS[-1]}")
    return PythonChoice((admitted[-1],), False)


def admits_minor(requires: SpecifierSet, minor: str) -> bool:
    """Whether some release of Python ``minor`` (X.Y) is in ``requires``."""
    return any(requires.contains(f"{minor}.{patch}", prereleases=True) for patch in (0, 99))


def installed_torch() -> str | None:
    """The version of the torch installed where compatmatrix runs (read, not imported)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def public(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0'."""
    try:
        return Version(version).public
    except InvalidVersion:
        return version.split("+")[0]


def ask_torch(specifier: str, pythons: Sequence[str], versions: Sequence[str], *,
              uv: Sequence[str], index: TorchIndex, env: Mapping[str, str]) -> TorchAnswers:
    """Ask the index, for each of ``pythons``, the newest release ``torch<specifier>`` admits
    and whether it has each of ``versions`` (``uv pip compile --no-deps``: metadata only,
    nothing is downloaded). The first question goes to the index; the others are answered
    from what it brought into uv's cache (``--offline``), a few at a time."""
    ordered = sorted(pythons, key=Version, reverse=True)
    questions = [(python, f"torch{specifier}") for python in ordered]
    questions += [(python, f"torch=={version}") for version in versions for python in ordered]
    first = _compile(questions[0][1], questions[0][0], uv=uv, index=index, env=env,
                     no_deps=True)
    if first[1] and not first[2]:
        return TorchAnswers(None, None, {}, {}, first[1])  # the index does not answer
    answers = [first, *_compile_all(questions[1:], uv=uv, index=index, env=env, no_deps=True,
                                    offline=True)]
    newest_for: dict[str, str] = {}
    has: dict[tuple[str, str], bool] = {}
    unknown: set[str] = set()
    for (python, requirement), (pins, problem, unsatisfiable) in zip(questions, answers,
                                                                     strict=False):
        if problem and not unsatisfiable:
            if not requirement.startswith("torch=="):
                unknown.add(python)  # not an answer (a cache miss): the pair stays unknown
        elif requirement.startswith("torch=="):
            has[(python, requirement[len("torch=="):])] = "torch" in pins
        elif "torch" in pins:
            newest_for[python] = public(pins["torch"])
    if not newest_for:
        unsatisfied = next((problem for _, problem, unsat in answers if unsat), "")
        return TorchAnswers(None, None, {}, has, (
            f"no torch release on the index matches torch{specifier} for Python "
            f"{', '.join(pythons)}" + (f": {unsatisfied}" if unsatisfied else "")))
    newest = max(newest_for.values(), key=Version)
    python = max((p for p, v in newest_for.items() if v == newest), key=Version)
    return TorchAnswers(newest, python, newest_for, has, unknown=frozenset(unknown))


def pypi_cuda_builds(versions: Sequence[str], python: str, *, uv: Sequence[str],
                     index: TorchIndex, env: Mapping[str, str]) -> dict[str, CudaBuild | None]:
    """Which CUDA build the index's torch of each of ``versions`` is on Linux x86_64, read from
    the CUDA runtime it requires (metadata only, concurrently); None where that cannot be
    told (then the table answers)."""
    found: dict[str, CudaBuild | None] = {}
    for version in versions:  # one at a time: each brings torch's dependencies' metadata
        for offline in (True, False):  # from uv's cache when it has them, else the index
            pins, problem, unsatisfiable = _compile(
                f"torch=={version}", python, uv=uv, index=index, env=env, no_deps=False,
                platform=LINUX_PLATFORM, offline=offline)
            if not problem or unsatisfiable:
                break
        found[version] = _cuda_build(pins)
    return found


def _cuda_build(pins: Mapping[str, str]) -> CudaBuild | None:
    for name, pinned in pins.items():
        if _CUDA_RUNTIME.match(name):
            release = Version(pinned).release
            if len(release) >= 2:
                return CudaBuild(f"cu{release[0]}{release[1]}",
                                 f"it requires {name}=={pinned}")
    return None


def table_cuda_build(version: str) -> CudaBuild:
    """PyPI's CUDA build of torch ``version`` (a version, or a specifier: its newest release)
    from compatmatrix's table."""
    release = _newest_admitted(SpecifierSet(version)) if version[:1] in "<>=~!" else version
    how = "compatmatrix's table of PyPI's builds"
    for first, variant in PYPI_CUDA_BUILDS:
        try:
            if release is None or Version(release) >= Version(first):
                return CudaBuild(variant, how)
        except InvalidVersion:
            break
    return CudaBuild(PYPI_CUDA_BUILDS[-1][1], how)


def table_releases(variant: str) -> str:
    """The torch releases PyPI ships as ``variant``, per the table: '2.11-2.14', '2.15 and
    later'; "" for a variant the table does not know."""
    for position, (first, known) in enumerate(PYPI_CUDA_BUILDS):
        if known == variant:
            if position == 0:
                return f"{first} and later"
            major, minor = PYPI_CUDA_BUILDS[position - 1][0].split(".")
            last = f"{major}.{int(minor) - 1}"
            return first if last == first else f"{first}-{last}"
    return ""


def _newest_admitted(spec: SpecifierSet) -> str | None:
    """The newest torch 2.x release-like version ``spec`` admits; None beyond the table."""
    for minor in range(40, -1, -1):
        for patch in (9, 0):
            if spec.contains(f"2.{minor}.{patch}", prereleases=True):
                return f"2.{minor}.{patch}"
    return None


def _compile_all(questions: Sequence[tuple[str, str]], **options: Any,
                 ) -> list[tuple[dict[str, str], str, bool]]:
    """:func:`_compile` for each (Python, requirement), a few at a time: each is a round
    trip to the index, mostly spent waiting."""
    if not questions:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_QUESTIONS, len(questions))) as pool:
        return list(pool.map(lambda q: _compile(q[1], q[0], **options), questions))


def _compile(requirement: str, python: str, *, uv: Sequence[str], index: TorchIndex,
             env: Mapping[str, str], no_deps: bool, platform: str | None = None,
             offline: bool = False) -> tuple[dict[str, str], str, bool]:
    """(pins, problem, unsatisfiable) of ``uv pip compile`` for one requirement."""
    with tempfile.TemporaryDirectory(prefix="compatmatrix-init-") as folder:
        request = Path(folder) / "requirements.in"
        request.write_text(requirement + "\n", encoding="utf-8")
        # --python: uv wants an interpreter even to resolve for another version, and would
        # download one of that version when there is none; the one running here will do
        argv = [*uv, "pip", "compile", str(request), "--python", sys.executable,
                "--python-version", python, "--no-header", "--no-annotate", "--quiet",
                *index.uv_args]
        if no_deps:
            argv.append("--no-deps")
        if platform:
            argv += ["--python-platform", platform]
        if offline:
            argv.append("--offline")
        result = _cmd.run(argv, env={**env, "UV_PYTHON_DOWNLOADS": "never"},
                          timeout=index.timeout)
    if result.ok:
        return parse_pins(result.output), "", False
    if result.timed_out:
        return {}, f"uv did not answer within {index.timeout:.0f} s", False
    text = "\n".join(line for line in result.output.splitlines()
                     if not line.startswith("[compatmatrix]")).strip()
    unsatisfiable = any(marker in text for marker in UNSATISFIABLE) \
        and not any(marker in text for marker in (*NETWORK, *CACHE_MISS))
    return {}, _first_cause(text) or f"uv exited {result.returncode}", unsatisfiable


def _first_cause(text: str) -> str:
    """uv's error in one line: the last 'cause:' (the root), else the first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line[len("cause:"):].strip() for line in lines if line.startswith("cause:")]
    if causes:
        return causes[-1] if len(causes) == 1 or "unsatisfiable" in causes[-1] \
            else f"{causes[0]}: {causes[-1]}"
    return lines[0].removeprefix("error:").strip() if lines else ""
