"""What the package under test declares: its name, requirements and extras, and how it builds.

Projects keep this in different places. A static ``[project]`` table in pyproject.toml is
read as it is. Everything else — metadata only in ``setup.py`` (a pyproject.toml with just
``[build-system]``, or none at all), ``dynamic = ["dependencies"]``, a ``setup.cfg`` — is the
build backend's to say: :mod:`compatmatrix.build` asks it through the PEP 517 hook
``prepare_metadata_for_build_wheel`` in the cell's build environment (``setup.py`` files
import torch) and hands the resulting METADATA to :func:`parse_metadata`. After the build,
the wheel's own METADATA is the truth and is checked against what was resolved.
"""

from __future__ import annotations

import email.parser
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from compatmatrix.errors import Location, SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older interpreters only
    import tomli as tomllib

__all__ = [
    "BuildSystem",
    "ProjectMeta",
    "StaticProject",
    "metadata_requirements",
    "parse_metadata",
    "read_project",
    "toml_error",
    "tomllib",
]

# PEP 517: a project without [build-system] is built by setuptools' legacy backend.
DEFAULT_BUILD_SYSTEM_REQUIRES = ("setuptools>=40.8.0",)
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
# What a static [project] table must not leave dynamic for compatmatrix to resolve from it.
_RESOLVE_FIELDS = ("name", "dependencies", "optional-dependencies")
_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_TOML_END = re.compile(r"\s*\(at end of document\)")


def toml_error(path: Path, text: str, exc: Exception) -> tuple[Location, str]:
    """Where a TOMLDecodeError points, and its message without the place."""
    message = str(exc)
    at = _TOML_AT.search(message)
    where = (Location(path, int(at[1]), int(at[2])) if at is not None
             else Location(path, max(1, len(text.splitlines())), 1))
    return where, _TOML_END.sub("", _TOML_AT.sub("", message)).strip()


@dataclass(frozen=True)
class BuildSystem:
    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectMeta:
    """Name, version and requirements, as core metadata (``Requires-Dist`` with markers)."""

    name: str
    version: str | None
    requires_dist: tuple[str, ...]
    extras: tuple[str, ...]
    requires_python: str | None
    origin: str  # "pyproject.toml" or "the build backend (<backend>)"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version,
                "requires_dist": list(self.requires_dist), "extras": list(self.extras),
                "requires_python": self.requires_python, "origin": self.origin}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProjectMeta:
        return cls(str(data["name"]), data.get("version"), tuple(data["requires_dist"]),
                   tuple(data["extras"]), data.get("requires_python"), str(data["origin"]))

    def requirements(self, extras: Sequence[str], environment: Mapping[str, str]) -> list[str]:
        return metadata_requirements(self.requires_dist, extras, environment)


@dataclass(frozen=True)
class StaticProject:
    """What can be read without running anything: pyproject.toml, and whether setup.py exists.

    ``meta`` is the metadata when a static ``[project]`` table holds all that resolving needs;
    None when the build backend must be asked (metadata in setup.py, dynamic dependencies).
    """

    path: Path
    build_system: BuildSystem
    meta: ProjectMeta | None
    why_dynamic: str = ""  # when meta is None: what makes it so, for logs

    @property
    def build_requires(self) -> tuple[str, ...]:
        return self.build_system.requires


def read_project(path: Path, at: Location | None = None) -> StaticProject:
    """Read the project folder ``path``; a setup mistake is a SpecError (exit 2).

    ``at`` is where matrix.yaml names the folder, for errors about the folder itself.
    """
    pyproject = path / "pyproject.toml"
    setup_files = [name for name in ("setup.py", "setup.cfg") if (path / name).is_file()]
    if not pyproject.is_file():
        if not setup_files:
            raise SpecError(at or Location(path, 1, 1),
                            f"{path} holds neither pyproject.toml nor setup.py",
                            "point project.path at the folder with the package's "
                            "pyproject.toml or setup.py")
        return StaticProject(path, BuildSystem(DEFAULT_BUILD_SYSTEM_REQUIRES, LEGACY_BACKEND),
                             None, f"no pyproject.toml: metadata comes from {setup_files[0]}")
    data = _load_toml(pyproject)
    build_system = _build_system(data, pyproject)
    table = data.get("project")
    if table is None:
        if not setup_files and build_system.backend == LEGACY_BACKEND:
            raise SpecError(Location(pyproject, 1, 1),
                            "pyproject.toml has no [project] table and there is no setup.py",
                            "add a [project] table with name and dependencies, or a setup.py")
        return StaticProject(path, build_system, None,
                             "pyproject.toml has no [project] table: metadata comes from "
                             + (setup_files[0] if setup_files else build_system.backend))
    if not isinstance(table, dict):
        raise SpecError(Location(pyproject, 1, 1), "[project] must be a table")
    dynamic = [str(d) for d in table.get("dynamic", [])]
    if "name" not in table and "name" not in dynamic:
        raise SpecError(Location(pyproject, 1, 1), "[project] has no name",
                        "add name = \"...\" to [project]")
    needed = [f for f in _RESOLVE_FIELDS if f in dynamic]
    if needed:
        return StaticProject(path, build_system, None,
                             f"[project] declares {', '.join(needed)} dynamic")
    return StaticProject(path, build_system, _static_meta(table, pyproject))


def _load_toml(pyproject: Path) -> dict[str, Any]:
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Location(pyproject, 1, 1), f"cannot read pyproject.toml ({exc})") \
            from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        where, message = toml_error(pyproject, text, exc)
        raise SpecError(where, f"invalid TOML: {message}",
                        "fix pyproject.toml; compatmatrix reads it to build the package") \
            from None


def _build_system(data: Mapping[str, Any], pyproject: Path) -> BuildSystem:
    table = data.get("build-system")
    if table is None:
        return BuildSystem(DEFAULT_BUILD_SYSTEM_REQUIRES, LEGACY_BACKEND)
    if not isinstance(table, dict):
        raise SpecError(Location(pyproject, 1, 1), "[build-system] must be a table")
    requires = table.get("requires", list(DEFAULT_BUILD_SYSTEM_REQUIRES))
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise SpecError(Location(pyproject, 1, 1),
                        "[build-system] requires must be a list of requirement strings")
    _check_requirements(requires, pyproject, "[build-system] requires")
    backend = table.get("build-backend", LEGACY_BACKEND)
    paths = table.get("backend-path", [])
    if not isinstance(backend, str) or not isinstance(paths, list):
        raise SpecError(Location(pyproject, 1, 1),
                        "[build-system] build-backend must be a string and backend-path a list")
    return BuildSystem(tuple(requires), backend, tuple(str(p) for p in paths))


def _static_meta(table: Mapping[str, Any], pyproject: Path) -> ProjectMeta:
    deps = table.get("dependencies", [])
    optional = table.get("optional-dependencies", {})
    if not isinstance(deps, list) or not isinstance(optional, dict):
        raise SpecError(Location(pyproject, 1, 1),
                        "[project] dependencies must be a list and optional-dependencies a table")
    _check_requirements(deps, pyproject, "[project] dependencies")
    requires = [str(d) for d in deps]
    for extra, reqs in sorted(optional.items()):
        if not isinstance(reqs, list):
            raise SpecError(Location(pyproject, 1, 1),
                            f"[project.optional-dependencies] {extra} must be a list")
        _check_requirements(reqs, pyproject, f"[project.optional-dependencies] {extra}")
        requires += [_with_extra(str(r), canonicalize_name(extra)) for r in reqs]
    python = table.get("requires-python")
    return ProjectMeta(str(table["name"]), _opt_str(table.get("version")), tuple(requires),
                       tuple(sorted(canonicalize_name(e) for e in optional)),
                       _opt_str(python), "pyproject.toml")


def _check_requirements(reqs: Iterable[object], pyproject: Path, what: str) -> None:
    for req in reqs:
        try:
            Requirement(str(req))
        except InvalidRequirement as exc:
            raise SpecError(Location(pyproject, 1, 1),
                            f"{what}: {req!r} is not a valid requirement ({exc})") from None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _with_extra(requirement: str, extra: str) -> str:
    """``vllm>=0.10; python_version>'3.9'`` of extra ``vllm``, as METADATA writes it."""
    req = Requirement(requirement)
    marker = f'extra == "{extra}"'
    if req.marker is not None:
        marker = f"({req.marker}) and {marker}"
    req.marker = None
    return f"{req}; {marker}"


def parse_metadata(text: str, origin: str) -> ProjectMeta:
    """Core metadata (a wheel's METADATA, or PEP 517's prepared one) as a ProjectMeta."""
    headers = email.parser.Parser().parsestr(text, headersonly=True)
    name = headers.get("Name")
    if not name:
        raise ValueError("the metadata has no Name")
    return ProjectMeta(
        name=str(name), version=_opt_str(headers.get("Version")),
        requires_dist=tuple(str(r).strip() for r in headers.get_all("Requires-Dist") or []),
        extras=tuple(sorted(canonicalize_name(str(e))
                            for e in headers.get_all("Provides-Extra") or [])),
        requires_python=_opt_str(headers.get("Requires-Python")), origin=origin)


def marker_environment(python_full_version: str) -> dict[str, str]:
    """This machine's marker environment, for the cell's Python (not the one running here)."""
    env = {key: str(value) for key, value in default_environment().items()}
    parts = python_full_version.split(".")
    env.update(python_full_version=python_full_version, python_version=".".join(parts[:2]),
               implementation_name="cpython", platform_python_implementation="CPython",
               implementation_version=python_full_version)
    return env


def metadata_requirements(requires_dist: Iterable[str], extras: Sequence[str],
                          environment: Mapping[str, str]) -> list[str]:
    """The requirements that apply with ``extras``, as resolver input.

    A requirement whose marker names an extra is kept when the marker holds for one of the
    extras in play (and the cell's Python), and is passed on without its marker: uv would
    otherwise drop it, since it installs the package's requirements, not an extra of it.
    Other markers are left for uv to evaluate.
    """
    wanted = ("", *(canonicalize_name(e) for e in extras))
    kept = []
    for text in requires_dist:
        req = Requirement(text)
        if req.marker is None or "extra" not in str(req.marker):
            kept.append(text)
            continue
        if any(req.marker.evaluate({**environment, "extra": extra}) for extra in wanted):
            req.marker = None
            kept.append(str(req))
    return kept
