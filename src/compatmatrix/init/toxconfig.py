"""Which tox configuration a project has, as tox itself finds it, and whether it already
points tox at a matrix (for ``compatmatrix init``, which never edits it).

tox reads the first of: tox.ini, setup.cfg with ``[tox:tox]``, pyproject.toml with
``[tool.tox]`` (native, or its ``legacy_tox_ini`` string), tox.toml. A tox.toml beside any of
the others is never read, so the lines to add go into the file tox reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.model.config import configured_matrix
from compatmatrix.model.project import tomllib

__all__ = ["TOX_TOML", "ToxConfig", "tox_config", "tox_used_by"]

TOX_TOML = "tox.toml"
_KEY = re.compile(r"^\s*compatmatrix_matrix\s*=", re.MULTILINE)
_SETUP_CFG_SECTION = re.compile(r"^\s*\[\s*tox:tox\s*\]", re.MULTILINE)


@dataclass(frozen=True)
class ToxConfig:
    """The file tox reads, its syntax and where compatmatrix's keys go in it."""

    file: str  # tox.ini, setup.cfg, pyproject.toml or tox.toml
    syntax: str  # "ini" or "toml"
    section: str  # the table or section the keys belong in; "" for tox.toml's top level
    points: bool  # it (or [tool.compatmatrix]) already names the matrix


def tox_config(root: Path) -> ToxConfig | None:
    """The tox configuration of the project in ``root``, or None when it has none."""
    found = _found(root)
    if found is None:
        return None
    file, syntax, section, text = found
    points = bool(_KEY.search(text)) or configured_matrix(root) is not None
    return ToxConfig(file, syntax, section, points)


def _found(root: Path) -> tuple[str, str, str, str] | None:
    ini = _text(root / "tox.ini")
    if ini is not None:
        return "tox.ini", "ini", "[tox]", ini
    cfg = _text(root / "setup.cfg")
    if cfg is not None and _SETUP_CFG_SECTION.search(cfg):
        return "setup.cfg", "ini", "[tox:tox]", cfg
    pyproject = _text(root / "pyproject.toml")
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject)
        except tomllib.TOMLDecodeError:
            data = {}  # not tox's to read either
        tool = data.get("tool")
        tox = tool.get("tox") if isinstance(tool, dict) else None
        if isinstance(tox, dict):
            legacy = tox.get("legacy_tox_ini")
            if isinstance(legacy, str):
                return "pyproject.toml", "ini", "[tox] of [tool.tox] legacy_tox_ini", legacy
            return "pyproject.toml", "toml", "[tool.tox]", pyproject
    toml = _text(root / TOX_TOML)
    if toml is not None:
        return TOX_TOML, "toml", "", toml
    return None


def _text(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""  # there, but unreadable: tox would stop at it


_TOX_COMMAND = re.compile(r"(?:^|[\s\"'`;&|(])(?:python[\d.]* -m )?(?:tox|uvx tox|pipx run tox)"
                          r"(?= |$|\")", re.MULTILINE)
_CI_FILES = (".github/workflows/*.yml", ".github/workflows/*.yaml", ".gitlab-ci.yml",
             ".buildkite/*.yml", ".buildkite/*.yaml", ".circleci/config.yml", "Makefile",
             "noxfile.py", "CONTRIBUTING.md", "CONTRIBUTING.rst")


def tox_used_by(root: Path) -> str | None:
    """Where a project without a tox configuration shows that it uses tox: tox among its
    development requirements (pyproject's optional dependencies or dependency groups,
    requirements*-dev files) or a tox command in its CI and contributor files; None when
    nothing does. Read-only, and only the files named here."""
    pyproject = _text(root / "pyproject.toml")
    if pyproject:
        try:
            data = tomllib.loads(pyproject)
        except tomllib.TOMLDecodeError:
            data = {}
        project = data.get("project")
        groups: list[tuple[str, object]] = []
        if isinstance(project, dict) and isinstance(project.get("optional-dependencies"), dict):
            groups += [(f"[project.optional-dependencies] {name}", deps)
                       for name, deps in project["optional-dependencies"].items()]
        if isinstance(data.get("dependency-groups"), dict):
            groups += [(f"[dependency-groups] {name}", deps)
                       for name, deps in data["dependency-groups"].items()]
        for where, deps in sorted(groups, key=lambda item: item[0]):
            if isinstance(deps, list) and any(isinstance(d, str) and _is_tox(d) for d in deps):
                return f"pyproject.toml {where}"
    for path in sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements/*.txt")):
        text = _text(path) or ""
        if any(_is_tox(line) for line in text.splitlines()):
            return str(path.relative_to(root))
    for pattern in _CI_FILES:
        for path in sorted(root.glob(pattern)):
            text = _text(path) or ""
            if _TOX_COMMAND.search(text):
                return str(path.relative_to(root))
    return None


def _is_tox(requirement: str) -> bool:
    """``requirement`` names tox itself (tox, tox>=4, tox[extra]; not tox-uv or pytox)."""
    name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
    return name.lower() == "tox"
