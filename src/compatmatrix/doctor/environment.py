"""What ``compatmatrix doctor`` knows about the environment before any check runs.

One small probe runs in the inspected interpreter (stdlib only, nothing heavy imported): its
version, import path, extension suffixes and PEP 508 marker values. Everything else is read
from files by this process: the ``.dist-info`` folders on that import path (METADATA,
RECORD), so that a broken package cannot stop the inspection, and the same code serves the
current interpreter and any other one.
"""

from __future__ import annotations

import csv
import importlib.metadata as md
import os
import shlex
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from compatmatrix.errors import CannotInspect
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.safeio import tagged_json

__all__ = [
    "PROBE_TIMEOUT",
    "CannotInspect",
    "Distribution",
    "Environment",
    "Installer",
    "probe",
    "read_distributions",
]

PROBE_TIMEOUT = 30.0
_TAG = "COMPATMATRIX-PROBE "

# Runs in the inspected interpreter, which may be old: plain syntax, stdlib only. The marker
# values are computed the way packaging.markers.default_environment does.
_PROBE = r"""
import importlib.machinery, importlib.util, json, os, platform, sys, sysconfig
impl = sys.implementation
iver = "%d.%d.%d" % impl.version[:3]
if impl.version.releaselevel != "final":
    iver += impl.version.releaselevel[0] + str(impl.version.serial)
markers = {
    "implementation_name": impl.name, "implementation_version": iver, "os_name": os.name,
    "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
stdlib = set(filter(None, (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))))
site = []
for entry in sys.path:
    if (entry and os.path.isdir(entry) and entry not in stdlib
            and os.path.basename(entry) != "lib-dynload"):
        site.append(os.path.abspath(entry))
print("COMPATMATRIX-PROBE " + json.dumps({
    "executable": sys.executable, "prefix": sys.prefix, "version": platform.python_version(),
    "implementation": platform.python_implementation(), "site": site, "markers": markers,
    "extension_suffixes": importlib.machinery.EXTENSION_SUFFIXES,
    "pip": importlib.util.find_spec("pip") is not None,
}))
"""




@dataclass(frozen=True)
class Installer:
    """The install command for fix lines: pip in the inspected interpreter, else uv."""

    argv: tuple[str, ...]

    def command(self, *args: str) -> str:
        return " ".join(_quote(arg) for arg in (*self.argv, *args))


def _quote(arg: str) -> str:
    # shlex leaves "torch==2.7.1" bare; quoted, a version pin reads as one argument to people
    # and survives shells that give "=" a meaning
    return shlex.quote(arg) if "=" not in arg or "'" in arg else f"'{arg}'"


@dataclass(frozen=True)
class Environment:
    python: Path  # the interpreter as given (a venv's bin/python stays that, not its target)
    version: str
    implementation: str
    prefix: str
    site: tuple[Path, ...]
    markers: Mapping[str, str]
    extension_suffixes: tuple[str, ...]
    installer: Installer

    @property
    def python_minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    def to_json(self) -> dict[str, object]:
        return {"executable": str(self.python), "version": self.version,
                "implementation": self.implementation, "prefix": self.prefix,
                "site": [str(p) for p in self.site]}


@dataclass(frozen=True)
class Distribution:
    name: str  # as its METADATA writes it
    version: str
    requires: tuple[str, ...]  # Requires-Dist lines, markers included
    location: Path  # the folder its RECORD paths are relative to
    record: tuple[str, ...]  # RECORD paths of shared objects (*.so)
    top_level: frozenset[str] = frozenset()  # first parts of all its RECORD paths

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def torch_requirements(self, markers: Mapping[str, str]) -> list[Requirement]:
        """Its Requires-Dist lines on torch that apply here (base requirements only)."""
        found = []
        for text in self.requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if canonicalize_name(req.name) == "torch" and applies(req, markers, ""):
                found.append(req)
        return found


def applies(req: Requirement, markers: Mapping[str, str], extra: str) -> bool:
    """Whether ``req`` is in force when ``extra`` ("" for none) was asked for."""
    if req.marker is None:
        return True
    try:
        return req.marker.evaluate({**markers, "extra": extra})
    except Exception:  # packaging raises several kinds for markers it cannot decide
        return False  # an undecidable marker is not reported as a problem


def probe(python: Path | None, env: Mapping[str, str], current: str) -> Environment:
    """Run the probe in ``python`` (``current``, this interpreter, when None)."""
    path = _interpreter(python, current)
    result = _cmd.run([str(path), "-c", _PROBE], env=env, timeout=PROBE_TIMEOUT)
    lines = result.output.splitlines()
    answers = tagged_json(lines, _TAG)
    if not answers:
        why = ("it did not answer within "
               f"{PROBE_TIMEOUT:g} s" if result.timed_out else
               "its answer is not a JSON object (a forged or garbled COMPATMATRIX-PROBE line: "
               f"{_short(next(line for line in lines if line.startswith(_TAG)))})"
               if any(line.startswith(_TAG) for line in lines) else
               f"it exited with {result.returncode}: {_last_line(result.output)}")
        raise CannotInspect(f"cannot inspect {path}: {why}")
    data = answers[0]
    wrong = _probe_problem(data)
    if wrong:
        raise CannotInspect(f"cannot inspect {path}: its answer is not what the probe prints "
                            f"(wrong or missing {wrong}; a forged COMPATMATRIX-PROBE line?)")
    return Environment(
        python=path, version=str(data["version"]), implementation=str(data["implementation"]),
        prefix=str(data["prefix"]), site=tuple(_unique_dirs(data["site"])),
        markers={str(k): str(v) for k, v in data["markers"].items()},
        extension_suffixes=tuple(str(s) for s in data["extension_suffixes"]),
        installer=_installer(path, bool(data["pip"]), env))


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and "\0" not in v for v in value)


_PROBE_FIELDS: Mapping[str, Callable[[object], bool]] = {
    "executable": lambda v: isinstance(v, str), "prefix": lambda v: isinstance(v, str),
    "version": lambda v: isinstance(v, str), "implementation": lambda v: isinstance(v, str),
    "site": _strings, "extension_suffixes": _strings, "pip": lambda v: isinstance(v, bool),
    "markers": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
}


def _probe_problem(data: Mapping[str, object]) -> str:
    """The fields of a probe answer that are missing or of the wrong type ("" when none)."""
    return ", ".join(name for name, ok in _PROBE_FIELDS.items() if not ok(data.get(name)))


def _short(line: str, limit: int = 120) -> str:
    return line if len(line) <= limit else line[:limit] + "…"


def _interpreter(python: Path | None, current: str) -> Path:
    if python is None:
        return Path(current)
    if python.is_dir():  # a venv folder: its interpreter
        python = python / "bin" / "python"
    if not python.exists() and "/" not in str(python):  # a command name: python3.12
        python = Path(shutil.which(str(python)) or python)
    if not python.exists():
        raise CannotInspect(f"--python {python}: no such file")
    if not os.access(python, os.X_OK):
        raise CannotInspect(f"--python {python}: not an executable")
    return python if python.is_absolute() else Path.cwd() / python


def _installer(python: Path, has_pip: bool, env: Mapping[str, str]) -> Installer:
    # uv-made venvs have no pip: the fix must be a command that runs there
    uv = None if has_pip else shutil.which("uv", path=env.get("PATH"))
    if uv is not None:
        return Installer(("uv", "pip", "install", "--python", str(python)))
    return Installer((str(python), "-m", "pip", "install"))


def _unique_dirs(entries: Iterable[str]) -> list[Path]:
    seen: set[str] = set()
    unique = []
    for entry in entries:
        real = os.path.realpath(entry)
        if real not in seen:
            seen.add(real)
            unique.append(Path(entry))
    return unique


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def read_distributions(site: Sequence[Path]) -> list[Distribution]:
    """Installed distributions along ``site``; the first of a name wins, as for imports."""
    found: dict[str, Distribution] = {}
    for folder in site:
        for dist in md.distributions(path=[str(folder)]):
            read = _read(dist)
            if read is not None and read.key not in found:
                found[read.key] = read
    return sorted(found.values(), key=lambda d: d.key)


def _read(dist: md.Distribution) -> Distribution | None:
    try:
        name = dist.metadata["Name"]
        version, requires = dist.version, dist.requires
        record = dist.read_text("RECORD") or ""
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # a damaged dist-info folder: nothing to check against
    if not name or not version:
        return None
    lines = record.splitlines()
    # Only shared objects matter to the checks; most RECORD lines are skipped unparsed.
    rows = csv.reader(line for line in lines if ".so" in line)
    shared = tuple(row[0] for row in rows if row and row[0].endswith(".so"))
    return Distribution(name=str(name), version=str(version), requires=tuple(requires or ()),
                        location=Path(str(dist.locate_file(""))), record=shared,
                        top_level=frozenset(line.split("/", 1)[0].strip('"') for line in lines))
