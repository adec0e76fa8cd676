"""What ``compatmatrix init`` reads from a project: files only, nothing built or imported.

Metadata comes from, in order, pyproject.toml's ``[project]`` table (static fields only; a
``dynamic`` dependencies list read from ``[tool.setuptools.dynamic]`` files), setup.cfg's
``[metadata]``/``[options]`` and setup.py read with :mod:`ast` (the literal keyword arguments
of its ``setup()`` call). The first source that declares a field statically wins; a field
setup.py computes is reported as a note instead of being guessed.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from compatmatrix.errors import Location, ProjectFileError, UsageError
from compatmatrix.model.project import toml_error, tomllib

__all__ = [
    "Declared",
    "ProjectFacts",
    "ProjectFileError",
    "TestFolder",
    "TorchRequirement",
    "inspect_project",
]

PROJECT_FILES = ("pyproject.toml", "setup.cfg", "setup.py")
# folders that never hold the project's own sources or tests
SKIP_DIRS = frozenset({"build", "dist", "node_modules", "__pycache__", "site-packages",
                       "venv", "env", "htmlcov", "wheelhouse"})
TEST_DIR_NAMES = frozenset({"test", "tests", "testing"})
NOT_TEST_FOLDERS = frozenset({"src", "docs", "doc", "third_party", "third-party", "3rdparty",
                              "vendor", "external"})
NOT_MODULES = frozenset({"setup", "noxfile", "conftest", "tasks", "fabfile", "manage",
                         "versioneer"})
CUDA_SUFFIXES = (".cu", ".cuh")
# markers of torch requirements are evaluated for the machines the matrix targets
LINUX_MARKERS = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                 "platform_machine": "x86_64", "extra": ""}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")




@dataclass(frozen=True)
class Declared:
    """A value and the file that declares it (for the generated file's comments)."""

    value: str
    source: str


@dataclass(frozen=True)
class TorchRequirement:
    """The torch requirement: its specifier ("" for any version) and where it was found."""

    specifier: str
    written: str  # the requirement(s) as the project writes them
    source: str  # "pyproject.toml [project] dependencies", "setup.py install_requires", ...

    @property
    def specifier_set(self) -> SpecifierSet:
        return SpecifierSet(self.specifier)


@dataclass(frozen=True)
class TestFolder:
    path: str  # relative to the project root, with '/'
    files: int  # test modules (test_*.py, *_test.py) in it


@dataclass(frozen=True)
class ProjectFacts:
    root: Path
    files: tuple[str, ...]  # which of pyproject.toml, setup.cfg, setup.py there are
    name: Declared | None
    requires_python: Declared | None
    torch: TorchRequirement | None
    extras: tuple[str, ...]
    import_name: str
    import_source: str  # the file that makes it importable, or why the name is a guess
    cuda_sources: tuple[str, ...]  # relative paths, sorted
    test_folders: tuple[TestFolder, ...]
    notes: tuple[str, ...] = ()  # what could not be read statically


@dataclass
class _Source:
    """What one metadata file declares statically; None: not declared there."""

    label: str
    name: str | None = None
    requires_python: str | None = None
    dependencies: list[str] | None = None
    dependencies_label: str = ""  # where exactly, for comments
    dependencies_file: str = ""  # the file holding them, for error locations
    extras: dict[str, list[str]] = field(default_factory=dict)
    packages: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    computed: dict[str, str] = field(default_factory=dict)  # field -> why it was not read;
    # "*": why any field may be missing (setup(**kwargs), no setup() call)

    def why_missing(self, attr: str) -> str | None:
        return self.computed.get(attr) or self.computed.get("*")


def inspect_project(root: Path) -> ProjectFacts:
    """Read ``root``'s metadata and layout; ProjectFileError (exit 2) when it cannot."""
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder; pass --path DIR, the root of a Python "
                         "project")
    files = tuple(name for name in PROJECT_FILES if (root / name).is_file())
    if not files:
        raise UsageError(
            f"{root} is not a Python project: it has no pyproject.toml, setup.py or setup.cfg\n"
            "  hint: run 'compatmatrix init' in the root folder of the package to test (or pass "
            "--path DIR); a new project needs a pyproject.toml with a [project] table first")
    data = _load_toml(root / "pyproject.toml") if "pyproject.toml" in files else {}
    sources = [source for source in (
        _from_pyproject(root, data) if "pyproject.toml" in files else None,
        _from_setup_cfg(root) if "setup.cfg" in files else None,
        _from_setup_py(root) if "setup.py" in files else None,
    ) if source is not None]
    notes: list[str] = []
    name = _first(sources, "name", notes)
    requires_python = _first(sources, "requires_python", notes)
    if requires_python is not None:
        _check_specifier(root, requires_python, "requires-python")
    torch = _torch_requirement(root, sources, data, notes)
    extras = sorted({extra for source in sources for extra in source.extras})
    import_name, import_source, package = _import_name(root, name, sources, notes)
    tests = _test_folders(root, package)
    return ProjectFacts(
        root=root, files=files, name=name, requires_python=requires_python, torch=torch,
        extras=tuple(extras), import_name=import_name, import_source=import_source,
        cuda_sources=tuple(_cuda_sources(root, tests)), test_folders=tuple(tests),
        notes=tuple(dict.fromkeys(notes)))


# -- the three metadata files -------------------------------------------------------------


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectFileError(path, f"cannot read it: {exc}") from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        where, message = toml_error(path, text, exc)
        raise ProjectFileError(where, f"invalid TOML: {message}",
                               "fix the file (the package cannot be built either), then run "
                               "'compatmatrix init' again") from None


def _from_pyproject(root: Path, data: dict[str, Any]) -> _Source:
    path = root / "pyproject.toml"
    source = _Source("pyproject.toml")
    project = data.get("project")
    if not isinstance(project, dict):  # [build-system] only: setup.cfg or setup.py, if any
        if _table(data, "tool", "poetry"):
            source.computed["*"] = ("pyproject.toml keeps its metadata in [tool.poetry], which "
                                    "compatmatrix init does not read: check python, torch and "
                                    "project.import by hand")
        return source
    dynamic = project.get("dynamic", [])
    dynamic = set(dynamic) if isinstance(dynamic, list) else set()
    source.name = _typed_str(path, project, "name")
    if "requires-python" not in dynamic:
        source.requires_python = _typed_str(path, project, "requires-python")
    setuptools = _table(data, "tool", "setuptools")
    if "dependencies" not in dynamic:
        source.dependencies = _typed_list(path, project, "dependencies") or []
        source.dependencies_label = "pyproject.toml [project] dependencies"
        source.dependencies_file = "pyproject.toml"
    else:
        _setuptools_dynamic(root, _table(setuptools, "dynamic", "dependencies"), source)
    optional = project.get("optional-dependencies", {})
    if isinstance(optional, dict) and "optional-dependencies" not in dynamic:
        source.extras = {str(k): _typed_list(path, optional, k) or [] for k in optional}
    if isinstance(setuptools.get("packages"), list):
        source.packages = [str(p) for p in setuptools["packages"]]
    if isinstance(setuptools.get("py-modules"), list):
        source.modules = [str(m) for m in setuptools["py-modules"]]
    return source


def _table(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``data[k1][k2]...``, or {} where a table is missing or not a table."""
    for key in keys:
        value = data.get(key)
        data = value if isinstance(value, dict) else {}
    return data


def _setuptools_dynamic(root: Path, spec: dict[str, Any], source: _Source) -> None:
    """Dependencies from ``[tool.setuptools.dynamic] dependencies = {file = [...]}``."""
    files = spec.get("file")
    names = [files] if isinstance(files, str) else files
    if not isinstance(names, list) or not names:
        return
    source.dependencies = _requirement_files(root, [str(n) for n in names])
    source.dependencies_label = f"{', '.join(map(str, names))} (pyproject.toml dynamic)"
    source.dependencies_file = str(names[0])


def _requirement_files(root: Path, names: Sequence[str]) -> list[str] | None:
    """The requirements of requirements files; options, URLs and other lines that are not
    requirements are left out (none of them can be torch's version range)."""
    found: list[str] = []
    for name in names:
        try:
            text = (root / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        for line in text.splitlines():
            line = line.split(" #")[0].split(" --hash")[0].rstrip("\\ ").strip()
            if line and not line.startswith(("#", "-")) and _is_requirement(line):
                found.append(line)
    return found


def _is_requirement(text: str) -> bool:
    try:
        Requirement(text)
    except InvalidRequirement:
        return False
    return True


def _from_setup_cfg(root: Path) -> _Source:
    path = root / "setup.cfg"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except configparser.Error as exc:
        lineno = getattr(exc, "lineno", None)
        errors = getattr(exc, "errors", None)
        if lineno is None and errors:
            lineno = errors[0][0]
        raise ProjectFileError(Location(path, int(lineno), 1) if lineno else path,
                               f"invalid setup.cfg: {exc.message}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectFileError(path, f"cannot read it: {exc}") from None
    source = _Source("setup.cfg")
    source.name = parser.get("metadata", "name", fallback=None)
    source.requires_python = parser.get("options", "python_requires", fallback=None)
    requires = parser.get("options", "install_requires", fallback=None)
    if requires is not None:
        source.dependencies = _cfg_requirements(root, requires)
        source.dependencies_label = "setup.cfg [options] install_requires"
        source.dependencies_file = "setup.cfg"
    if parser.has_section("options.extras_require"):
        source.extras = {key: _cfg_requirements(root, value) or []
                         for key, value in parser.items("options.extras_require")}
    packages = parser.get("options", "packages", fallback="")
    if not packages.strip().startswith("find"):
        source.packages = _cfg_list(packages)
    source.modules = _cfg_list(parser.get("options", "py_modules", fallback=""))
    return source


def _cfg_list(value: str) -> list[str]:
    items = [part.strip() for line in value.splitlines() for part in line.split(",")]
    return [item for item in items if item and not item.startswith("#")]


def _cfg_requirements(root: Path, value: str) -> list[str] | None:
    value = value.strip()
    if value.startswith("file:"):
        return _requirement_files(root, _cfg_list(value[len("file:"):]))
    lines = [line.split(" #")[0].strip() for line in value.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _from_setup_py(root: Path) -> _Source:
    path = root / "setup.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ProjectFileError(Location(path, exc.lineno or 1, exc.offset or 1),
                               f"setup.py does not parse: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectFileError(path, f"cannot read it: {exc}") from None
    source = _Source("setup.py")
    call = _setup_call(tree)
    if call is None:
        source.computed["*"] = "setup.py has no setup(...) call that could be read"
        return source
    constants = _module_constants(tree)
    fields = {"name": "name", "python_requires": "requires_python",
              "install_requires": "dependencies", "extras_require": "extras",
              "packages": "packages", "py_modules": "modules"}
    for keyword in call.keywords:
        if keyword.arg is None:
            source.computed["*"] = (f"setup.py:{keyword.value.lineno}: setup() takes "
                                    f"**{_short(ast.unparse(keyword.value))}, which is not "
                                    "read")
            continue
        if keyword.arg not in fields:
            continue
        try:
            value = _literal(keyword.value, constants)
        except (ValueError, TypeError, SyntaxError, RecursionError):  # not a literal
            source.computed[fields[keyword.arg]] = (
                f"setup.py:{keyword.value.lineno}: {keyword.arg}="
                f"{_short(ast.unparse(keyword.value))} is computed, not a literal, so it was "
                "not read")
            continue
        _set_setup_field(source, fields[keyword.arg], value, keyword.value.lineno, path)
    return source


def _set_setup_field(source: _Source, name: str, value: object, line: int, path: Path) -> None:
    def strings(what: str) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        raise ProjectFileError(Location(path, line, 1), f"setup() {what} must be a list of "
                               f"strings, not {type(value).__name__}")

    if name == "name" and isinstance(value, str):
        source.name = value
    elif name == "requires_python" and isinstance(value, str):
        source.requires_python = value
    elif name == "dependencies":
        source.dependencies = strings("install_requires")
        source.dependencies_label = "setup.py install_requires"
        source.dependencies_file = "setup.py"
    elif name == "extras" and isinstance(value, dict):
        source.extras = {str(k): [v] if isinstance(v, str) else [str(x) for x in v]
                         for k, v in value.items()}
    elif name == "packages":
        source.packages = strings("packages")
    elif name == "modules":
        source.modules = strings("py_modules")


def _setup_call(tree: ast.Module) -> ast.Call | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "setup") or (
                    isinstance(func, ast.Attribute) and func.attr == "setup"):
                return node
    return None


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Names assigned exactly once at module level (``REQUIRES = [...]``)."""
    found: dict[str, ast.expr] = {}
    seen: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in seen:
                found.pop(name, None)
            else:
                found[name] = node.value
            seen.add(name)
    return found


def _literal(node: ast.expr, constants: Mapping[str, ast.expr]) -> object:
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    return ast.literal_eval(node)


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _first(sources: Sequence[_Source], attr: str, notes: list[str]) -> Declared | None:
    for source in sources:
        value = getattr(source, attr)
        if value:
            return Declared(str(value), source.label)
        why = source.why_missing(attr)
        if why:
            notes.append(why)
    return None


def _typed_str(path: Path, table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ProjectFileError(_locate(path, key), f"{key} must be a string, not "
                           f"{type(value).__name__}")


def _typed_list(path: Path, table: dict[str, Any], key: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise ProjectFileError(_locate(path, key), f"{key} must be a list of strings")


def _locate(path: Path, needle: str) -> Location:
    """Where ``needle`` first appears in ``path`` (line 1 column 1 when it does not)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for number, line in enumerate(lines, 1):
        column = line.find(needle)
        if column >= 0:
            return Location(path, number, column + 1)
    return Location(path, 1, 1)


def _check_specifier(root: Path, declared: Declared, what: str) -> None:
    try:
        SpecifierSet(declared.value)
    except InvalidSpecifier:
        path = root / declared.source
        raise ProjectFileError(_locate(path, declared.value) if path.is_file() else path,
                               f"{what} {declared.value!r} is not a valid PEP 440 specifier",
                               "write e.g. '>=3.9'") from None


# -- torch -------------------------------------------------------------------------------


def _torch_requirement(root: Path, sources: Sequence[_Source], data: dict[str, Any],
                       notes: list[str]) -> TorchRequirement | None:
    """torch from the first static dependency list, else an extra, else the build
    requirements (an extension built against torch that does not declare it at run time)."""
    for source in sources:
        if source.dependencies is None:
            why = source.why_missing("dependencies")
            if why:
                notes.append(why)
            continue
        found = _torch_in(root, source.dependencies, source.dependencies_file,
                          source.dependencies_label)
        if found is not None:
            return found
        break
    for source in sources:
        for extra, requirements in source.extras.items():
            found = _torch_in(root, requirements, source.label,
                              f"{source.label} extra {extra!r}")
            if found is not None:
                return found
    build = data.get("build-system", {})
    requires = build.get("requires") if isinstance(build, dict) else None
    if isinstance(requires, list):
        return _torch_in(root, [str(r) for r in requires], "pyproject.toml",
                         "pyproject.toml [build-system] requires")
    return None


def _torch_in(root: Path, requirements: Sequence[str], file: str,
              label: str) -> TorchRequirement | None:
    found: list[tuple[str, Requirement]] = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            path = root / file
            where = _locate(path, text) if path.is_file() else path
            raise ProjectFileError(where, f"{text!r} is not a valid requirement ({exc})") \
                from None
        if canonicalize_name(requirement.name) == "torch":
            found.append((text, requirement))
    if not found:
        return None
    applicable = [(t, r) for t, r in found if r.marker is None or _on_linux(r.marker)] or found
    specifier = SpecifierSet()
    for _, requirement in applicable:
        specifier &= requirement.specifier
    return TorchRequirement(_ordered(specifier), "; ".join(t for t, _ in applicable), label)


def _on_linux(marker: Marker) -> bool:
    try:
        return marker.evaluate(dict(LINUX_MARKERS))
    except Exception:  # an unknown marker variable: count the requirement in
        return True


def _ordered(specifier: SpecifierSet) -> str:
    """Lower bounds first: '>=2.4,<3', as people write them (str() sorts alphabetically)."""
    def rank(spec: object) -> tuple[int, str]:
        text = str(spec)
        return (0 if text.startswith((">", "~", "=")) else 1, text)
    return ",".join(str(s) for s in sorted(specifier, key=rank))


# -- layout ------------------------------------------------------------------------------


def _skipped(parent: Path, name: str) -> bool:
    return (name.startswith(".") or name in SKIP_DIRS or name.endswith(".egg-info")
            or (parent / name / "pyvenv.cfg").is_file())


def _walk(top: Path, skip: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Files under ``top``, leaving out hidden, build, virtual-environment and ``skip``
    folders (names, or paths relative to ``top``)."""
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        rel = here.relative_to(top)
        dirnames[:] = sorted(d for d in dirnames if not _skipped(here, d)
                             and d not in skip and (rel / d).as_posix() not in skip)
        for name in sorted(filenames):
            yield here / name


def _is_test_module(name: str) -> bool:
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _test_folders(root: Path, package: Path | None) -> list[TestFolder]:
    """Top-level folders holding test modules: tests/, test/ and testing/ first, then others
    (checks/, ...) by name; else the test folders inside the package folder."""
    found: list[TestFolder] = []
    for entry in sorted(root.iterdir(), key=lambda e: (e.name not in TEST_DIR_NAMES, e.name)):
        if not entry.is_dir() or _skipped(root, entry.name) or entry.name in NOT_TEST_FOLDERS \
                or entry == package:
            continue
        count = sum(_is_test_module(p.name) for p in _walk(entry))
        if count:
            found.append(TestFolder(entry.name, count))
    if found or package is None:
        return found
    for name in sorted(TEST_DIR_NAMES):
        folder = package / name
        if folder.is_dir():
            count = sum(_is_test_module(p.name) for p in _walk(folder))
            if count:
                found.append(TestFolder(folder.relative_to(root).as_posix(), count))
    return found



def _cuda_sources(root: Path, tests: Sequence[TestFolder]) -> list[str]:
    skip = frozenset(TEST_DIR_NAMES | {t.path for t in tests})
    return [p.relative_to(root).as_posix() for p in _walk(root, skip)
            if p.suffix in CUDA_SUFFIXES]


def _package_dirs(root: Path) -> list[Path]:
    """Folders with an __init__.py directly under src/ and under the root, tests left out."""
    found: list[Path] = []
    for top in (root / "src", root):
        if not top.is_dir():
            continue
        for entry in sorted(top.iterdir()):
            if entry.is_dir() and _IDENTIFIER.match(entry.name) and entry.name != "src" \
                    and not entry.name.startswith("test") and entry.name not in NOT_TEST_FOLDERS \
                    and not _skipped(top, entry.name) and (entry / "__init__.py").is_file():
                found.append(entry)
    return found


def _import_name(root: Path, name: Declared | None, sources: Sequence[_Source],
                 notes: list[str]) -> tuple[str, str, Path | None]:
    """The top-level package (name, the file that makes it one, its folder): the one matching
    the distribution name, else one the metadata lists, else the first; a top-level module
    as a fallback; the distribution (or folder) name as a guess at last."""
    wanted = canonicalize_name(name.value).replace("-", "_") if name else None
    packages = _package_dirs(root)
    declared = [p.split(".")[0] for source in sources for p in source.packages]
    chosen = next((p for p in packages if p.name.lower() == wanted), None) \
        or next((p for p in packages if p.name in declared), None)
    if chosen is None and packages:
        chosen = packages[0]
        if len(packages) > 1:
            others = ", ".join(p.name for p in packages[1:])
            notes.append(f"import: {chosen.name} was chosen among several package folders "
                         f"(also {others}); set project.import to the one to check")
    if chosen is not None:
        return chosen.name, (chosen / "__init__.py").relative_to(root).as_posix(), chosen
    modules = [p.stem for p in sorted(root.glob("*.py"))
               if _IDENTIFIER.match(p.stem) and p.stem not in NOT_MODULES
               and not _is_test_module(p.name)]
    modules += [m for source in sources for m in source.modules if m not in modules]
    module = next((m for m in modules if m.lower() == wanted), modules[0] if modules else None)
    if module is not None:
        return module, f"{module}.py", None
    guess = wanted or re.sub(r"\W", "_", root.resolve().name).lower() or "package"
    notes.append(f"import: no package folder (src/<name>/__init__.py or <name>/__init__.py) "
                 f"was found; {guess!r} is a guess, set project.import to the import name")
    return guess, "a guess from the " + ("distribution name" if wanted else "folder name"), None
