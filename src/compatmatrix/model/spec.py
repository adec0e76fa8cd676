"""matrix.yaml, parsed once into frozen values.

Everything downstream receives a :class:`Matrix`; nothing re-reads the file.
Validation errors are :class:`~compatmatrix.errors.SpecError` with file, line
and column.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compatmatrix.errors import Location, SpecError, UsageError, did_you_mean
from compatmatrix.host.gpu import KNOWN_KINDS
from compatmatrix.host.indexes import Indexes
from compatmatrix.model import yamlfile as _yaml
from compatmatrix.model.fields import (
    as_bool,
    as_int,
    as_list,
    as_map,
    as_scalar_text,
    as_str_list,
    check_keys,
)
from compatmatrix.model.outcomes import Stage
from compatmatrix.model.project import read_project
from compatmatrix.model.yamlfile import YMap, YScalar, YSeq, YValue

__all__ = [
    "DEFAULT_CI_INSTALL",
    "DEFAULT_CUDA_ARCHS",
    "DEFAULT_RESOLUTION",
    "NONE",
    "PREINSTALLED",
    "RESOLUTIONS",
    "Axis",
    "CIConfig",
    "Gate",
    "Indexes",
    "Matrix",
    "Project",
    "Quarantine",
    "Suite",
    "load_matrix",
    "package_requirement",
    "parse_matrix",
    "release_requirement",
    "with_release",
    "with_wheels",
]

NONE = "none"
# torch axis value: the torch already installed in the cell's interpreter (vendor images)
PREINSTALLED = "preinstalled"
# project.cuda_archs: what TORCH_CUDA_ARCH_LIST accepts; "+PTX" adds PTX that later GPUs JIT
DEFAULT_CUDA_ARCHS: tuple[str, ...] = ("9.0",)
KNOWN_CUDA_ARCHS = ("7.0", "7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "9.0a", "10.0", "10.0a",
                    "10.3", "10.3a", "11.0", "11.0a", "12.0", "12.0a", "12.1", "12.1a")
_CUDA_ARCH_RE = re.compile(r"^([0-9]+\.[0-9]+[af]?)(\+PTX)?\Z")
NVCC_WORDS = ("auto", "pypi")
SPECIAL_AXES = ("python", "cuda", "extras", "resolution")
# uv's strategy for the project's requirements no axis pins; the default stays out of cell ids
RESOLUTIONS = ("highest", "lowest-direct", "lowest")
DEFAULT_RESOLUTION = "highest"
KNOWN_VARIANTS = ("cpu", "cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130",
                  "rocm6.3", "rocm6.4")
# stages with a timeout of their own (matrix.yaml timeouts:)
STAGES = tuple(stage.value for stage in Stage if stage not in (Stage.SUITES, Stage.SELECT))
TOP_KEYS = ("version", "project", "axes", "include", "exclude", "indexes", "suites",
            "gate", "ci", "interpreters", "timeouts")
# \Z, not $ (which also matches before a final newline), and [0-9], not \d (which also
# matches other scripts' digits): neither "torch\n" nor "3.\u0661" is a name or a version.
_PYTHON_RE = re.compile(r"^3\.[0-9]{1,2}\Z")
_VARIANT_RE = re.compile(r"^(cpu|cu[0-9]{3,4}|rocm[0-9]+(\.[0-9]+)*)\Z")
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
# Bounds on numbers and sizes: far beyond any real matrix, small enough that nothing
# downstream (a subprocess timeout, a float, the planner) overflows or runs for days.
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600   # a week, per stage or suite
MAX_CI_TIMEOUT_MINUTES = 7 * 24 * 60  # a week, per CI job
MAX_PLANNED = 100_000  # combinations of the axes (before excludes)
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_WORKERS = 4096
DEFAULT_TEST_REQUIRES: tuple[str, ...] = ("pytest>=7", "pytest-xdist>=3")
_OPERATORS = ("==", "!=", "<=", ">=", "~=", "<", ">", "===")
# What reaches a generated pipeline must be plain there: a runner label or queue is one word,
# an axis value a version, specifier, variant or extras name. ci.py checks again on its own.
SAFE_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+*=<>!~,-]+")
# ci.install: the released package, once it is on the index the pipelines use
DEFAULT_CI_INSTALL = "compatmatrix"
# What a pip requirement, URL or path may hold and still be one safe shell word once quoted
# and one plain YAML scalar: no quotes, $, backticks, ;, |, &, newlines.
_INSTALL_RE = re.compile(r"^[A-Za-z0-9._\-@:/+=<>!~,\[\]# %]+\Z")


@dataclass(frozen=True)
class Axis:
    """A named list of values. ``kind`` is python, cuda, extras, resolution or package."""

    name: str
    kind: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Project:
    path: Path | None  # the source tree; None: a release tested from its wheels alone
    import_name: str
    abi3: SpecifierSet | None  # torch versions built abi3; None: never
    build_torch_attr: str | None
    test_requires: tuple[str, ...] = DEFAULT_TEST_REQUIRES
    cuda_archs: tuple[str, ...] = DEFAULT_CUDA_ARCHS  # TORCH_CUDA_ARCH_LIST of CUDA builds
    nvcc: str = "auto"  # auto, pypi, or a path (COMPATMATRIX_NVCC overrides it)
    cuda_code: str = "required"  # or "optional": a CUDA variant may ship no GPU code
    # Wheels built elsewhere, tested instead of building: globs relative to matrix.yaml (or a
    # folder given with run --wheels); where each glob is written, for messages
    wheels: tuple[str, ...] = ()
    wheels_at: tuple[Location, ...] = field(default=(), compare=False, repr=False)
    # A published release, "NAME==VERSION": each cell tests the wheel its resolution picks
    requirement: str | None = None
    requirement_at: Location | None = field(default=None, compare=False, repr=False)
    # unstable (default): the extension uses at::/c10::, one wheel per torch; stable: only
    # torch's stable ABI, one wheel per Python ABI and CUDA major, tested under every torch
    torch_abi: str = "unstable"
    stable_build_torch: str | None = None  # the torch a stable wheel is built against

    @property
    def mode(self) -> str:
        """What a cell tests: "built" (from the source), "given" or "published" wheels."""
        if self.requirement is not None:
            return "published"
        return "given" if self.wheels else "built"

    @property
    def source(self) -> Path | None:
        """The source tree whose files source-based checks read (never a published
        release's: its wheel need not come from this tree)."""
        return self.path if self.requirement is None else None



@dataclass(frozen=True)
class Suite:
    name: str
    paths: tuple[str, ...]
    workers: str = "1"  # "auto" or a number; "1" runs without xdist
    gpu: str | None = None  # GPU kind the suite needs (e.g. "h100")
    args: tuple[str, ...] = ()
    timeout: int | None = None


@dataclass(frozen=True)
class Quarantine:
    test: str
    reason: str
    expires: _dt.date


@dataclass(frozen=True)
class Gate:
    required: tuple[tuple[tuple[str, str], ...], ...] = ()
    fail_on_incompatible: bool = False
    fail_on_new: bool = False
    declared_ranges: bool = False  # fail when a declared range admits a version that fails
    quarantine: tuple[Quarantine, ...] = ()


@dataclass(frozen=True)
class Runner:
    github: tuple[str, ...]
    buildkite: str | None


@dataclass(frozen=True)
class CIConfig:
    """GPU kind (and ``cpu``) -> where its cells run on each CI system."""

    runners: tuple[tuple[str, Runner], ...] = (("cpu", Runner(("ubuntu-latest",), None)),)
    timeout_minutes: int = 90
    install: str = DEFAULT_CI_INSTALL  # what the pipelines pip-install to get compatmatrix


@dataclass(frozen=True)
class Matrix:
    """A validated matrix.yaml. ``path`` is the file; relative paths are relative to it."""

    path: Path
    project: Project | None  # None: a pins table (run --until resolve only)
    axes: tuple[Axis, ...]
    include: tuple[tuple[tuple[str, str], ...], ...] = ()
    exclude: tuple[tuple[tuple[str, str], ...], ...] = ()
    indexes: Indexes = field(default_factory=Indexes)
    suites: tuple[Suite, ...] = ()
    gate: Gate = field(default_factory=Gate)
    ci: CIConfig = field(default_factory=CIConfig)
    interpreters: tuple[tuple[str, str], ...] = ()
    timeouts: tuple[tuple[str, int], ...] = ()

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def package(self) -> Project:
        """The project under test; a usage error (exit 2) for a matrix that names none."""
        if self.project is None:
            raise UsageError(f"{self.path}: the matrix names no project, so there is nothing "
                             "to build or test: only `compatmatrix run --until resolve` (a "
                             "table of which pins install together) works without one; add "
                             "project: {path: ..., import: ...} to test a package")
        return self.project

    def axis(self, name: str) -> Axis | None:
        for axis in self.axes:
            if axis.name == name:
                return axis
        return None


def load_matrix(path: Path) -> Matrix:
    """Read and validate ``path``; raises SpecError (exit code 2) on any mistake.

    Only a regular UTF-8 file of at most 4 MiB is read: a folder, a FIFO or a device is
    refused before it is opened (a FIFO would block), saying what it is.
    """
    if not os.path.lexists(path):
        raise SpecError(Location(path, 1, 1), "matrix file not found",
                        "pass --matrix FILE, run from the folder that holds matrix.yaml, or "
                        "name the file in pyproject.toml: [tool.compatmatrix] matrix = \"...\"")
    return parse_matrix(_yaml.read_text(path), path)


def parse_matrix(text: str, path: Path) -> Matrix:
    root_node = _yaml.load(path, text)
    if root_node is None:
        raise SpecError(Location(path, 1, 1), "the matrix file is empty",
                        "start with 'version: 1', 'project:' and 'axes:'")
    root = as_map(root_node, "the top level of matrix.yaml")
    check_keys(root, "matrix.yaml", TOP_KEYS, required=("version", "axes"))
    _check_version(_get(root, "version"))
    # A matrix without a project is a pins table: third-party packages resolved against each
    # other (run --until resolve); nothing to build or test.
    project_node = root.get("project")
    project = _parse_project(project_node, path.parent) if project_node is not None else None
    axes = _parse_axes(_get(root, "axes"))
    return Matrix(
        path=path,
        project=project,
        axes=axes,
        include=_parse_entries(root.get("include"), "include", axes, concrete=True),
        exclude=_parse_entries(root.get("exclude"), "exclude", axes, concrete=False),
        indexes=_parse_indexes(root.get("indexes")),
        suites=_parse_suites(root.get("suites")),
        gate=_parse_gate(root.get("gate"), axes),
        ci=_parse_ci(root.get("ci")),
        interpreters=_parse_interpreters(root.get("interpreters")),
        timeouts=_parse_timeouts(root.get("timeouts")),
    )


def _get(mapping: YMap, key: str) -> YValue:
    value = mapping.get(key)
    assert value is not None  # check_keys made sure of it
    return value


def _check_version(value: YValue) -> None:
    if not (isinstance(value, YScalar) and value.kind == "int" and value.text == "1"):
        raise SpecError(value.at, f"unsupported matrix version {getattr(value, 'text', '')!r}",
                        "this compatmatrix reads 'version: 1'")


def _parse_project(value: YValue, root: Path) -> Project:
    mapping = as_map(value, "project")
    check_keys(mapping, "project", ("path", "import", "abi3", "build_torch_attr",
                                    "test_requires", "cuda_archs", "nvcc", "cuda_code",
                                    "wheels", "requirement", "torch_abi", "stable_build_torch"),
               required=("import",))
    wheels, wheels_at = _parse_wheels(mapping.get("wheels"))
    requirement_node = mapping.get("requirement")
    requirement = (release_requirement(as_scalar_text(requirement_node, "project.requirement"),
                                       requirement_node.at)
                   if requirement_node is not None else None)
    if wheels and requirement_node is not None:
        raise SpecError(requirement_node.at, "project.requirement and project.wheels both "
                        "name what to test", "keep one: wheels: [GLOB] tests wheels built "
                        "elsewhere, requirement: NAME==VERSION a published release")
    path_node = mapping.get("path")
    path = None
    if path_node is None and not wheels and requirement is None:
        raise SpecError(mapping.at, "project needs 'path' (the source to build), 'wheels' "
                        "(wheels built elsewhere) or 'requirement' (a published release)",
                        "e.g. project: {path: ., import: mypkg}")
    if path_node is not None:
        rel = as_scalar_text(path_node, "project.path")
        path = _project_folder(rel, root, path_node.at)
        if not wheels and requirement is None:  # only a source that is built must build
            read_project(path, at=path_node.at)  # a setup mistake is found by plan too
    import_name = as_scalar_text(_get(mapping, "import"), "project.import")
    abi3_node = mapping.get("abi3")
    attr_node = mapping.get("build_torch_attr")
    tests_node = mapping.get("test_requires")
    test_requires = DEFAULT_TEST_REQUIRES
    if tests_node is not None:
        test_requires = as_str_list(tests_node, "project.test_requires")
        for text in test_requires:
            _requirement(text, tests_node.at, "project.test_requires")
    return Project(
        path=path,
        import_name=import_name,
        abi3=_parse_abi3(abi3_node) if abi3_node is not None else None,
        build_torch_attr=as_scalar_text(attr_node, "project.build_torch_attr")
        if attr_node is not None else None,
        test_requires=test_requires,
        cuda_archs=_parse_cuda_archs(mapping.get("cuda_archs")),
        nvcc=_parse_nvcc(mapping.get("nvcc")),
        cuda_code=_parse_choice(mapping.get("cuda_code"), "project.cuda_code",
                                ("required", "optional")),
        wheels=wheels, wheels_at=wheels_at, requirement=requirement,
        requirement_at=requirement_node.at if requirement_node is not None else None,
        torch_abi=_parse_choice(mapping.get("torch_abi"), "project.torch_abi",
                                ("unstable", "stable")),
        stable_build_torch=_parse_stable_build_torch(mapping),
    )


def _parse_wheels(value: YValue | None) -> tuple[tuple[str, ...], tuple[Location, ...]]:
    """project.wheels: globs of wheel files, relative to matrix.yaml (checked when a run
    looks for the wheels: they are often built after the matrix is written)."""
    if value is None:
        return (), ()
    seq = as_list(value, "project.wheels", allow_empty=False)
    globs, places = [], []
    for node in seq.items:
        text = as_scalar_text(node, "a value of project.wheels")
        if not text.strip() or len(text) > MAX_PATH_CHARS or "\0" in text:
            raise SpecError(node.at, f"project.wheels: {_short(text)} is not a glob",
                            "write a glob of wheel files relative to matrix.yaml, e.g. "
                            "'dist/*.whl'")
        if not text.endswith((".whl", "*")):
            raise SpecError(node.at, f"project.wheels: {_short(text)} does not name wheel "
                            "files", "end the glob with .whl, e.g. 'dist/*.whl' or "
                            "'wheelhouse/mypkg-*.whl'")
        if text in globs:
            raise SpecError(node.at, f"duplicate glob {text!r} in project.wheels")
        globs.append(text)
        places.append(node.at)
    return tuple(globs), tuple(places)


def release_requirement(text: str, at: Location | None) -> str:
    """A published release, ``NAME==VERSION``: exactly one version of one package, so that
    every cell tests the same release. SpecError at ``at`` (UsageError without) otherwise."""
    hint = ("name one released version, e.g. 'compat-kernels==1.0.2' (the package as on the "
            "index, '==', the version)")
    why = ""
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        why = f"is not a requirement ({str(exc).splitlines()[0]})"
    else:
        pins = list(requirement.specifier)
        if requirement.url or requirement.marker is not None or requirement.extras:
            why = "must be NAME==VERSION, without a URL, extras or markers"
        elif len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
            why = "must pin one version with '==' (a range would test whatever is newest)"
    if not why:
        return text.strip()
    message = f"project.requirement {_short(text)} {why}"
    if at is None:
        raise UsageError(f"--requirement {_short(text)} {why}; {hint}")
    raise SpecError(at, message, hint)


def _parse_stable_build_torch(mapping: YMap) -> str | None:
    node = mapping.get("stable_build_torch")
    if node is None:
        return None
    text = as_scalar_text(node, "project.stable_build_torch")
    abi = mapping.get("torch_abi")
    if abi is None or as_scalar_text(abi, "project.torch_abi") != "stable":
        raise SpecError(node.at, "project.stable_build_torch is only for a stable-ABI "
                        "extension", "add 'torch_abi: stable' to project, or remove "
                        "stable_build_torch (an unstable extension is built per torch)")
    try:
        version = Version(text)
    except InvalidVersion:
        version = None
    if version is None or is_specifier(text) or version.local is not None:
        raise SpecError(node.at, f"project.stable_build_torch: {text!r} is not a torch "
                        "release", "write the exact release the stable wheel is built "
                        "against, e.g. '2.10.0' (the variant comes from each cell's cuda)")
    return text


def _parse_choice(value: YValue | None, what: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first is the default)."""
    if value is None:
        return choices[0]
    text = as_scalar_text(value, what)
    if text not in choices:
        raise SpecError(value.at, f"{what}: {text!r} is not one of {', '.join(choices)}",
                        did_you_mean(text.lower(), choices))
    return text


def _project_folder(rel: str, root: Path, at: Location) -> Path:
    hint = "give the folder that holds the package's pyproject.toml, relative to matrix.yaml"
    if len(rel) > MAX_PATH_CHARS:
        raise SpecError(at, f"project.path is {len(rel):,} characters long, more than a path "
                        f"can be ({MAX_PATH_CHARS:,})", hint)
    try:
        path = (root / rel).resolve()
        is_dir = path.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:  # too long, NUL, a symlink loop
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(at, f"project.path {_short(rel)} cannot be used: {why}", hint) from None
    if not is_dir:
        raise SpecError(at, f"project.path {_short(rel)} is not a folder", hint)
    return path


def _short(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut to about ``limit`` characters for a message."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r} (and {len(text) - limit:,} more characters)"


def _parse_cuda_archs(value: YValue | None) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_CUDA_ARCHS
    seq = as_list(value, "project.cuda_archs", allow_empty=False)
    archs: list[str] = []
    for node in seq.items:
        arch = _cuda_arch(as_scalar_text(node, "a value of project.cuda_archs"), node.at)
        if arch in archs:
            raise SpecError(node.at, f"duplicate architecture {arch!r} in project.cuda_archs")
        archs.append(arch)
    return tuple(archs)


def _cuda_arch(text: str, at: Location) -> str:
    """A compute capability as TORCH_CUDA_ARCH_LIST writes it: 9.0, 9.0a, 8.0+PTX."""
    match = _CUDA_ARCH_RE.match(text)
    if match is not None and match[1] in KNOWN_CUDA_ARCHS:
        return text
    what = (f"project.cuda_archs: {text!r} is not a known GPU architecture"
            if match is not None else
            f"project.cuda_archs: {text!r} is not a compute capability like '9.0'")
    close = did_you_mean(_arch_guess(text),
                         [*KNOWN_CUDA_ARCHS, *(a + "+PTX" for a in KNOWN_CUDA_ARCHS)])
    raise SpecError(at, what, (close + " " if close.startswith("did you") else "") +
                    "(major.minor as in TORCH_CUDA_ARCH_LIST: 9.0; 9.0a for arch-specific "
                    "code; 8.0+PTX to add PTX that newer GPUs compile at load; known: "
                    f"{', '.join(KNOWN_CUDA_ARCHS)})")


def _arch_guess(text: str) -> str:
    """'sm_90' -> '9.0', '90a' -> '9.0a', '9.0+ptx' -> '9.0+PTX': the usual other spellings."""
    raw = text.strip().lower().replace("+ptx", "")
    ptx = "+PTX" if raw != text.strip().lower() else ""
    raw = re.sub(r"^(sm|compute)_?", "", raw)
    found = re.fullmatch(r"(\d+)(\d)([af]?)", raw)
    if found:
        raw = f"{found[1]}.{found[2]}{found[3]}"
    elif raw.isdigit():
        raw += ".0"
    return raw + ptx


def _parse_nvcc(value: YValue | None) -> str:
    if value is None:
        return "auto"
    text = as_scalar_text(value, "project.nvcc")
    if text in NVCC_WORDS or "/" in text:
        return text
    close = did_you_mean(text.lower(), NVCC_WORDS)
    raise SpecError(value.at, f"project.nvcc: {text!r} is not 'auto', 'pypi' or a path",
                    (close + " " if close.startswith("did you") else "") +
                    "(auto: the system's nvcc when it matches torch's CUDA, else PyPI's; "
                    "pypi: PyPI's; or the path of an nvcc, such as /usr/local/cuda-12.8/bin/nvcc)")


def _requirement(text: str, at: Location, what: str) -> None:
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        raise SpecError(at, f"{what}: {text!r} is not a valid requirement ({exc})",
                        "write e.g. 'pytest>=8' or 'numpy'") from None


def _parse_abi3(value: YValue) -> SpecifierSet | None:
    if isinstance(value, YScalar) and value.kind == "bool":
        return SpecifierSet() if as_bool(value, "project.abi3") else None
    text = as_scalar_text(value, "project.abi3")
    return _specifier(text, value.at, "project.abi3 (true, false, or a torch specifier)")


def _specifier(text: str, at: Location, what: str) -> SpecifierSet:
    try:
        spec = SpecifierSet(text)
    except InvalidSpecifier:
        raise SpecError(at, f"{what}: {text!r} is not a valid PEP 440 specifier",
                        "write e.g. '>=2.6' or '>=2.9,<2.10'") from None
    if not text.strip():
        raise SpecError(at, f"{what} must not be empty")
    return spec


def _parse_axes(value: YValue) -> tuple[Axis, ...]:
    mapping = as_map(value, "axes")
    if mapping.get("python") is None:
        raise SpecError(mapping.at, "axes needs a 'python' axis",
                        "add e.g. python: [\"3.11\", \"3.12\"]")
    axes: list[Axis] = []
    for key, node in mapping.entries:
        name = key.text
        if not _NAME_RE.match(name):
            raise SpecError(key.at, f"axis name {name!r} is not a valid package name")
        kind = name if name in SPECIAL_AXES else "package"
        seq = as_list(node, f"axis {name!r}", allow_empty=False)
        values = tuple(_axis_value(kind, name, item) for item in seq.items)
        _check_duplicates(kind, name, seq, values)
        axes.append(Axis(name, kind, values))
    combinations = math.prod(len(axis.values) for axis in axes)
    if combinations > MAX_PLANNED:
        raise SpecError(mapping.at, f"the axes make {combinations:,} combinations, more than "
                        f"compatmatrix plans ({MAX_PLANNED:,})",
                        "use fewer values per axis, or split the matrix into several files")
    return tuple(axes)


def _axis_value(kind: str, name: str, node: YValue) -> str:
    """Normalise one axis value as written, validating it for the axis kind."""
    if kind == "extras":
        return _extras_value(node)
    if kind == "resolution":
        text = as_scalar_text(node, "a value of axis 'resolution'")
        if text not in RESOLUTIONS:
            raise SpecError(node.at, f"resolution {text!r} is not one of "
                            f"{', '.join(RESOLUTIONS)}", did_you_mean(text, RESOLUTIONS))
        return text
    if isinstance(node, YScalar) and node.kind == "null":
        if kind == "package":
            return NONE
        raise SpecError(node.at, f"axis {name!r} cannot hold an empty value")
    text = as_scalar_text(node, f"a value of axis {name!r}")
    if kind == "python":
        if not _PYTHON_RE.match(text):
            raise SpecError(node.at, f"python value {text!r} is not a version like '3.11'",
                            "quote versions in YAML: \"3.10\", not 3.10 written as 3.1")
        return text
    if kind == "cuda":
        if not _VARIANT_RE.match(text):
            raise SpecError(node.at, f"cuda value {text!r} is not a variant",
                            did_you_mean(text.lower().replace(".", "").replace("cuda", "cu"),
                                         KNOWN_VARIANTS))
        return text
    return _package_value(text, name, node.at)


def _package_value(text: str, name: str, at: Location) -> str:
    if not SAFE_VALUE.fullmatch(text):
        raise SpecError(at, f"{text!r} is not a version or specifier for axis {name!r}: it "
                        "holds characters that have no place in one (and could mean "
                        "something to a shell or YAML in a generated pipeline)",
                        "write an exact version ('2.13.0'), a specifier ('>=2.9,<2.10'), or "
                        "'none'")
    if text.lower() == NONE:
        return NONE
    if text.lower() == PREINSTALLED:
        if canonicalize_name(name) != "torch":
            raise SpecError(at, f"{PREINSTALLED!r} is a value for the torch axis only, "
                            f"not {name!r}", "write a version, a specifier or 'none'")
        return PREINSTALLED
    if text.startswith(_OPERATORS):
        _specifier(text, at, f"a value of axis {name!r}")
        return text
    if "*" in text:
        _specifier("==" + text, at, f"a value of axis {name!r}")
        return "==" + text
    try:
        Version(text)
    except InvalidVersion:
        raise SpecError(at, f"{text!r} is not a version or specifier for axis {name!r}",
                        "write an exact version ('2.13.0'), a specifier ('>=2.9,<2.10'), "
                        "or 'none' for not installed") from None
    return text


def _extras_value(node: YValue) -> str:
    if isinstance(node, YScalar) and node.kind == "null":
        return NONE
    if isinstance(node, YSeq):
        names = as_str_list(node, "an extras combination", allow_empty=False)
    else:
        names = tuple(re.split(r"[+,]", as_scalar_text(node, "an extras value")))
    if len(names) == 1 and names[0].strip().lower() == NONE:
        return NONE
    normalized = []
    for raw in names:
        extra = raw.strip()
        if not _NAME_RE.match(extra):
            raise SpecError(node.at, f"{extra!r} is not a valid extra name")
        normalized.append(canonicalize_name(extra))
    return "+".join(sorted(set(normalized)))


def _check_duplicates(kind: str, name: str, seq: YSeq, values: tuple[str, ...]) -> None:
    seen: dict[object, str] = {}
    for node, value in zip(seq.items, values, strict=False):
        key: object = value
        if kind == "package" and value not in (NONE, PREINSTALLED) \
                and not value.startswith(_OPERATORS):
            key = Version(value)  # 2.13 and 2.13.0 are the same version
        if key in seen:
            raise SpecError(node.at, f"duplicate value {value!r} in axis {name!r}",
                            f"it is the same as {seen[key]!r}; remove one")
        seen[key] = value


def _parse_entries(value: YValue | None, section: str, axes: tuple[Axis, ...],
                   *, concrete: bool) -> tuple[tuple[tuple[str, str], ...], ...]:
    """include/exclude/gate.required entries: mappings from axis name to value."""
    if value is None:
        return ()
    by_name = {axis.name: axis for axis in axes}
    entries = []
    for item in as_list(value, section).items:
        mapping = as_map(item, f"each {section} entry")
        if not mapping.entries:
            raise SpecError(mapping.at, f"an empty {section} entry matches everything",
                            "name at least one axis")
        pairs = []
        for key, node in mapping.entries:
            axis = by_name.get(key.text)
            if axis is None:
                raise SpecError(key.at, f"{section} names the axis {key.text!r}, "
                                "which is not in axes", did_you_mean(key.text, by_name))
            pairs.append((axis.name, _entry_value(axis, node, concrete=concrete)))
        if concrete:
            _check_include_complete(mapping, by_name, dict(pairs))
        entries.append(tuple(pairs))
    return tuple(entries)


def _entry_value(axis: Axis, node: YValue, *, concrete: bool) -> str:
    if concrete or axis.kind in ("extras",):
        return _axis_value(axis.kind, axis.name, node)
    if isinstance(node, YScalar) and node.kind == "null":
        return _axis_value(axis.kind, axis.name, node)
    text = as_scalar_text(node, f"a value for axis {axis.name!r}")
    if axis.kind == "python" and text.startswith(_OPERATORS):
        _specifier(text, node.at, "a python pattern")
        return text
    if axis.kind == "cuda" and any(ch in text for ch in "*?["):
        return text  # a glob over variants, e.g. cu12*
    return _axis_value(axis.kind, axis.name, node)


def _check_include_complete(mapping: YMap, by_name: dict[str, Axis],
                            values: dict[str, str]) -> None:
    for needed in ("python", "cuda"):
        if needed in by_name and needed not in values:
            raise SpecError(mapping.at, f"an include entry must name {needed!r}",
                            "axes it does not name are 'none'; python and cuda have no "
                            "'none', so give them")


def _parse_indexes(value: YValue | None) -> Indexes:
    if value is None:
        return Indexes()
    mapping = as_map(value, "indexes")
    variants: list[tuple[str, str]] = []
    find_links: tuple[str, ...] = ()
    for key, node in mapping.entries:
        if key.text == "find_links":
            find_links = as_str_list(node, "indexes.find_links")
            continue
        if not _VARIANT_RE.match(key.text):
            raise SpecError(key.at, f"unknown key {key.text!r} in indexes",
                            "keys are CUDA variants (cpu, cu128, ...) or 'find_links'; "
                            + did_you_mean(key.text, (*KNOWN_VARIANTS, "find_links")))
        variants.append((key.text, as_scalar_text(node, f"indexes.{key.text}")))
    return Indexes(tuple(variants), find_links)


def _parse_suites(value: YValue | None) -> tuple[Suite, ...]:
    if value is None:
        return ()
    mapping = as_map(value, "suites")
    suites = []
    for key, node in mapping.entries:
        if not _NAME_RE.match(key.text):
            raise SpecError(key.at, f"suite name {key.text!r} may use only letters, digits, "
                            "'.', '_' and '-'")
        suites.append(_parse_suite(key.text, as_map(node, f"suite {key.text!r}")))
    return tuple(suites)


def _parse_suite(name: str, mapping: YMap) -> Suite:
    what = f"suite {name!r}"
    check_keys(mapping, what, ("paths", "workers", "requires", "args", "timeout"),
               required=("paths",))
    workers = "1"
    if (node := mapping.get("workers")) is not None:
        workers = as_scalar_text(node, f"{what}.workers")
        if workers != "auto" and not (re.fullmatch("[0-9]{1,4}", workers)
                                      and 1 <= int(workers) <= MAX_WORKERS):
            raise SpecError(node.at, f"{what}.workers must be 'auto' or a number from 1 to "
                            f"{MAX_WORKERS}")
    gpu = None
    if (node := mapping.get("requires")) is not None:
        requires = as_map(node, f"{what}.requires")
        check_keys(requires, f"{what}.requires", ("gpu",), required=("gpu",))
        gpu_node = _get(requires, "gpu")
        gpu = as_scalar_text(gpu_node, f"{what}.requires.gpu").lower()
        if gpu not in KNOWN_KINDS:
            raise SpecError(gpu_node.at, f"unknown GPU kind {gpu!r} in {what}.requires.gpu",
                            did_you_mean(gpu, KNOWN_KINDS))
    args_node = mapping.get("args")
    args = as_str_list(args_node, f"{what}.args") if args_node is not None else ()
    timeout = mapping.get("timeout")
    return Suite(
        name=name,
        paths=as_str_list(_get(mapping, "paths"), f"{what}.paths", allow_empty=False),
        workers=workers,
        gpu=gpu,
        args=args,
        timeout=as_int(timeout, f"{what}.timeout", minimum=1, maximum=MAX_TIMEOUT_SECONDS,
                       unit="s") if timeout else None,
    )


def _parse_gate(value: YValue | None, axes: tuple[Axis, ...]) -> Gate:
    if value is None:
        return Gate()
    mapping = as_map(value, "gate")
    check_keys(mapping, "gate",
               ("required", "fail_on_incompatible", "fail_on_new", "declared_ranges",
                "quarantine"))
    flags = {name: as_bool(node, f"gate.{name}") for name in
             ("fail_on_incompatible", "fail_on_new", "declared_ranges")
             if (node := mapping.get(name)) is not None}
    return Gate(
        required=_parse_entries(mapping.get("required"), "gate.required", axes, concrete=False),
        quarantine=_parse_quarantine(mapping.get("quarantine")),
        **flags,
    )


def _parse_quarantine(value: YValue | None) -> tuple[Quarantine, ...]:
    if value is None:
        return ()
    entries = []
    for item in as_list(value, "gate.quarantine").items:
        mapping = as_map(item, "each gate.quarantine entry")
        check_keys(mapping, "gate.quarantine entry", ("test", "reason", "expires"),
                   required=("test", "reason", "expires"))
        expires_node = _get(mapping, "expires")
        expires_text = as_scalar_text(expires_node, "gate.quarantine.expires")
        try:
            expires = _dt.date.fromisoformat(expires_text)
        except ValueError:
            raise SpecError(expires_node.at, f"expires {expires_text!r} is not a date",
                            "write it as YYYY-MM-DD") from None
        entries.append(Quarantine(
            test=as_scalar_text(_get(mapping, "test"), "gate.quarantine.test"),
            reason=as_scalar_text(_get(mapping, "reason"), "gate.quarantine.reason"),
            expires=expires,
        ))
    return tuple(entries)


def _parse_ci(value: YValue | None) -> CIConfig:
    if value is None:
        return CIConfig()
    mapping = as_map(value, "ci")
    check_keys(mapping, "ci", ("runners", "timeout_minutes", "install"))
    runners = dict(CIConfig().runners)
    if (node := mapping.get("runners")) is not None:
        for key, runner_node in as_map(node, "ci.runners").entries:
            runner = as_map(runner_node, f"ci.runners.{key.text}")
            check_keys(runner, f"ci.runners.{key.text}", ("github", "buildkite"))
            github = runner.get("github")
            buildkite = runner.get("buildkite")
            runners[key.text.lower()] = Runner(
                github=_safe_words(github, f"ci.runners.{key.text}.github")
                if github is not None else (),
                buildkite=_safe_word(buildkite, f"ci.runners.{key.text}.buildkite")
                if buildkite is not None else None,
            )
    timeout = mapping.get("timeout_minutes")
    install = mapping.get("install")
    return CIConfig(
        runners=tuple(sorted(runners.items())),
        timeout_minutes=as_int(timeout, "ci.timeout_minutes", minimum=1,
                               maximum=MAX_CI_TIMEOUT_MINUTES, unit="minutes")
        if timeout else 90,
        install=_parse_install(install) if install is not None else DEFAULT_CI_INSTALL,
    )


def _safe_word(node: YValue, what: str) -> str:
    text = as_scalar_text(node, what)
    if not SAFE_WORD.fullmatch(text):
        raise SpecError(node.at, f"{what} {text!r} is not safe in a pipeline file",
                        "runner labels and queues are words: letters, digits, '.', '_', '-', "
                        "not starting with '.' or '-'")
    return text


def _safe_words(node: YValue, what: str) -> tuple[str, ...]:
    words = as_str_list(node, what, allow_empty=False)
    items = node.items if isinstance(node, YSeq) else [node]
    for item, word in zip(items, words, strict=False):
        if not SAFE_WORD.fullmatch(word):
            raise SpecError(item.at, f"{what}: {word!r} is not safe in a pipeline file",
                            "runner labels are words: letters, digits, '.', '_', '-', not "
                            "starting with '.' or '-'")
    return words


def _parse_install(node: YValue) -> str:
    """ci.install: a pip requirement (``compatmatrix==0.2``, ``compatmatrix @ git+https://…``)
    or a local path (``.``); refused here when it could break the generated pipelines."""
    text = as_scalar_text(node, "ci.install").strip()
    hint = ("a pip requirement such as 'compatmatrix @ git+https://github.com/ORG/compatmatrix"
            "@v0.1.0' or 'compatmatrix==0.1.0', or '.' in compatmatrix's own repository")
    if not text or not _INSTALL_RE.match(text) or text.startswith("-"):
        raise SpecError(node.at, f"ci.install {text!r} is not safe in a pipeline file "
                        "(no quotes, $, backticks, ;, |, & or options)", hint)
    if text.startswith((".", "/")):
        return text
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        raise SpecError(node.at, f"ci.install {text!r} is not a pip requirement ({exc})",
                        hint) from None
    return text


def _parse_interpreters(value: YValue | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    mapping = as_map(value, "interpreters")
    pairs = []
    for key, node in mapping.entries:
        if not _PYTHON_RE.match(key.text):
            raise SpecError(key.at, f"interpreters key {key.text!r} is not a Python version",
                            "keys are versions like \"3.11\" (quoted)")
        pairs.append((key.text, as_scalar_text(node, f"interpreters.{key.text}")))
    return tuple(pairs)


def _parse_timeouts(value: YValue | None) -> tuple[tuple[str, int], ...]:
    if value is None:
        return ()
    mapping = as_map(value, "timeouts")
    check_keys(mapping, "timeouts", STAGES)
    return tuple((key.text, as_int(node, f"timeouts.{key.text}", minimum=1,
                                   maximum=MAX_TIMEOUT_SECONDS, unit="s"))
                 for key, node in mapping.entries)


def with_wheels(matrix: Matrix, folder: Path) -> Matrix:
    """``matrix`` testing the wheels in ``folder`` (run --wheels) instead of building."""
    if matrix.project is None:
        raise UsageError(f"{matrix.path}: --wheels needs a project to test: add project: "
                         "{import: NAME} (the module the wheels install) to the matrix")
    if not folder.is_dir():
        what = "does not exist" if not os.path.lexists(folder) else "is not a folder"
        raise UsageError(f"--wheels {folder} {what}; give the folder that holds the wheels "
                         "to test (e.g. dist/ or wheelhouse/)")
    project = replace(matrix.project, wheels=(str(folder.resolve() / "*.whl"),),
                      wheels_at=(), requirement=None, requirement_at=None)
    return replace(matrix, project=project)


def with_release(matrix: Matrix, requirement: str) -> Matrix:
    """``matrix`` testing the published release ``requirement`` (run --requirement)."""
    text = release_requirement(requirement, None)
    if matrix.project is None:
        name = canonicalize_name(Requirement(text).name).replace("-", "_")
        project = Project(path=None, import_name=name, abi3=None, build_torch_attr=None)
    else:
        project = matrix.project
    project = replace(project, wheels=(), wheels_at=(), requirement=text, requirement_at=None)
    return replace(matrix, project=project)


def package_requirement(name: str, value: str) -> str | None:
    """The PEP 508 requirement for a package axis value; None for 'none' and 'preinstalled'."""
    if value in (NONE, PREINSTALLED):
        return None
    if value.startswith(_OPERATORS):
        return f"{name}{value}"
    return f"{name}=={value}"


def is_specifier(value: str) -> bool:
    return value.startswith(_OPERATORS)
