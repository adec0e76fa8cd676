"""A package index in a folder (find-links): pure wheels and sdists written by hand, so that
resolution tests need no network."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = ()) -> Path:
    """A pure py3-none-any wheel of ``name`` (its module says its version)."""
    module, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}"
    files = {
        f"{module}/__init__.py": f"__version__ = {version!r}\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: "
                                      f"{version}\n" + "".join(f"Requires-Dist: {r}\n"
                                                               for r in requires),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\n"
                                   "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},sha256={_digest(text.encode())},{len(text.encode())}\n"
                     for path, text in files.items())
    files[f"{dist}.dist-info/RECORD"] = record + f"{dist}.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in, text in files.items():
            archive.writestr(name_in, text)
    return path


def make_sdist(folder: Path, name: str, version: str) -> Path:
    """An sdist only (static PKG-INFO, so a resolver reads its metadata without building)."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{dist}/PKG-INFO": f"Metadata-Version: 2.2\nName: {name}\nVersion: {version}\n",
        f"{dist}/pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
                                  'build-backend = "setuptools.build_meta"\n[project]\n'
                                  f'name = "{name}"\nversion = "{version}"\n',
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name_in, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name_in)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
