"""What the package under test declares in its pyproject.toml (read, never built)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import CompatError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older interpreters only
    import tomli as tomllib

__all__ = ["ProjectMeta", "read_project"]

DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)


@dataclass(frozen=True)
class ProjectMeta:
    name: str
    dependencies: tuple[str, ...]   # static ones; empty when dynamic
    dynamic_dependencies: bool
    extras: tuple[tuple[str, tuple[str, ...]], ...]
    build_requires: tuple[str, ...]

    def extra(self, name: str) -> tuple[str, ...]:
        return dict(self.extras).get(name, ())


def read_project(path: Path) -> ProjectMeta:
    pyproject = path / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except OSError:
        raise CompatError(f"{pyproject}: not found; the package under test needs a "
                          "pyproject.toml with a [project] table") from None
    except tomllib.TOMLDecodeError as exc:
        raise CompatError(f"{pyproject}: invalid TOML: {exc}") from None
    project = data.get("project", {})
    if "name" not in project:
        raise CompatError(f"{pyproject}: [project] needs a name")
    dynamic = "dependencies" in project.get("dynamic", [])
    extras = project.get("optional-dependencies", {})
    return ProjectMeta(
        name=str(project["name"]),
        dependencies=tuple(project.get("dependencies", [])),
        dynamic_dependencies=dynamic,
        extras=tuple(sorted((k, tuple(v)) for k, v in extras.items())),
        build_requires=tuple(data.get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES)),
    )
