"""Where packages come from: the torch variant's index and extra find-links folders.

Nothing machine-specific is committed: ``find_links`` entries are expanded at run time
from environment variables and from pip's own configuration (the word ``pip-config``).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from compatmatrix.host.envvars import expand_path

__all__ = ["PYPI", "Indexes", "expand_find_links", "index_url_for", "pip_config_find_links"]


@dataclass(frozen=True)
class Indexes:
    """Where each CUDA variant of torch comes from, plus extra find-links folders.

    ``variants`` maps a variant to an index URL, or to ``"pypi"`` for the default index.
    ``find_links`` entries may hold ``$VARS`` and the word ``pip-config`` (pip's own
    configured find-links); they are expanded when a cell runs, not here.
    """

    variants: tuple[tuple[str, str], ...] = ()
    find_links: tuple[str, ...] = ()

    def url_for(self, variant: str) -> str | None:
        return dict(self.variants).get(variant)


PYPI = "pypi"
PIP_CONFIG = "pip-config"


def pip_config_find_links(env: Mapping[str, str]) -> list[str]:
    """pip's configured find-links: PIP_FIND_LINKS, then pip's configuration files.

    Read the way pip reads them (global, user, site, then PIP_CONFIG_FILE; sections
    ``global`` and ``install``) rather than through ``python -m pip config``, which is
    missing from uv-made venvs.
    """
    found = env.get("PIP_FIND_LINKS", "").split()
    for path in _pip_config_files(env):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            value = parser.get(section, "find-links", fallback="") or parser.get(
                section, "find_links", fallback="")
            found += value.split()
    return list(dict.fromkeys(item for item in found if item))


def _pip_config_files(env: Mapping[str, str]) -> list[Path]:
    explicit = env.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:  # pip's way of saying "no configuration files at all"
        return []
    home = Path(env.get("HOME", "~")).expanduser()
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs if d] + [Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf",
              Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"]
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
    if explicit:
        files.append(Path(explicit))
    return [path for path in files if path.is_file()]


def expand_find_links(indexes: Indexes, env: Mapping[str, str]) -> list[str]:
    """The find-links entries with ``$VARS`` and ``pip-config`` expanded; empty ones dropped."""
    result: list[str] = []
    for entry in indexes.find_links:
        if entry == PIP_CONFIG:
            result += pip_config_find_links(env)
        else:
            expanded = expand_path(entry, env)
            if expanded:  # an entry naming an unset variable is left out, not half-expanded
                result.append(expanded)
    return list(dict.fromkeys(result))


PYTORCH_INDEX = "https://download.pytorch.org/whl/{variant}"


def index_url_for(indexes: Indexes, variant: str | None) -> str | None:
    """The index of a torch variant: as configured, None for ``pypi`` (PyPI's own build),
    and PyTorch's per-variant index for a variant the matrix does not mention."""
    if variant is None:
        return None
    url = indexes.url_for(variant)
    if url is None:
        return PYTORCH_INDEX.format(variant=variant)
    return None if url == PYPI else url
