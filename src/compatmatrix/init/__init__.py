"""``compatmatrix init``: a commented matrix.yaml and a noxfile for the project in a folder,
and compatmatrix's tox environments where the project uses tox.

It reads the project without building or importing anything (:mod:`.inspect`), picks the
axis values from this machine and the package index (:mod:`.versions`), renders the files
(:mod:`.render`) and writes those that do not exist yet: it never overwrites a file, it
prints what it would have written instead. A project's tox configuration
(:mod:`.toxconfig`) is never edited either: init prints the lines that point it at the
matrix; a tox.toml is written only where there is no tox configuration (``--tox``).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from compatmatrix.errors import CompatError, SpecError, UsageError
from compatmatrix.host.interpreters import InterpreterFinder, override_variable
from compatmatrix.host.uv import uv_command
from compatmatrix.init.inspect import ProjectFacts, ProjectFileError, TestFolder, inspect_project
from compatmatrix.init.install import InstallRequirement, install_requirement
from compatmatrix.init.render import (
    Axis,
    Draft,
    Exclude,
    Suite,
    Variant,
    render_matrix,
    render_noxfile,
    render_tox_keys,
    render_tox_toml,
)
from compatmatrix.init.toxconfig import TOX_TOML, ToxConfig, tox_config, tox_used_by
from compatmatrix.init.versions import (
    CudaBuild,
    TorchAnswers,
    TorchIndex,
    ask_torch,
    choose_pythons,
    installed_torch,
    public,
    pypi_cuda_builds,
    table_cuda_build,
    table_releases,
)
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.spec import parse_matrix

__all__ = ["InstallRequirement", "TorchIndex", "install_requirement", "run_init"]

MATRIX = "matrix.yaml"
NOXFILE = "noxfile.py"
NOX_MARKER = "register_cell_sessions"  # a noxfile that says this already has the sessions
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NEXT_STEPS = (
    ("compatmatrix plan", "the cells, and the interpreter each one uses"),
    ("nox -l", "one session per cell, plus matrix, report, gate and ci"),
    ("nox -s matrix", "run every cell in parallel, then write reports/"),
    ("nox -s gate", "the release gate over the results"),
)
TOX_MARKER = "compatmatrix_matrix"  # a tox configuration that says this has the environments
TOX_STEPS = (
    ("tox l", "one environment per cell, plus compat-matrix, -report, -gate and -ci"),
    ("tox -e compat-matrix", "or with tox: every cell in parallel, then reports/"),
)


@dataclass(frozen=True)
class _Decided:
    """A Draft plus the lines init prints about it."""

    draft: Draft
    summary: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]


def run_init(path: Path, *, env: Mapping[str, str] | None = None,
             finder: InterpreterFinder | None = None, index: TorchIndex | None = None,
             uv: Sequence[str] | None = None,
             torch_here: Callable[[], str | None] = installed_torch,
             install: InstallRequirement | None = None, out: TextIO | None = None,
             tox: bool = False) -> int:
    """Write matrix.yaml and noxfile.py into the project at ``path`` where they are missing.

    Where the project has a tox configuration that does not name the matrix yet, print the
    lines that do (to add by hand); where it has none, write a tox.toml when the project
    uses tox all the same (tox among its development requirements, a tox command in its CI
    files: :func:`tox_used_by`) or ``tox`` is true.

    Returns 0 when a file was written or none needed writing, 1 when every file it would
    write exists with other contents (printed instead). The keyword arguments replace what
    is read from this machine: tests pass a finder, an index of fake wheels, a torch.
    """
    environ = dict(os.environ if env is None else env)
    stream = out or sys.stdout
    facts = inspect_project(path)
    requirement = install or install_requirement()
    decided = _decide(facts, environ, finder or InterpreterFinder(environ), index or TorchIndex(),
                      uv, torch_here(), requirement)
    matrix_text = render_matrix(decided.draft)
    cells = _check(matrix_text, facts.root)
    files = [(MATRIX, matrix_text, None), (NOXFILE, render_noxfile(requirement.requirement),
                                           NOX_MARKER)]
    tox_here = tox_config(facts.root)
    tox_use = None if tox_here is not None else tox_used_by(facts.root)
    if tox_here is None and (tox or tox_use is not None):
        files.append((TOX_TOML, render_tox_toml(requirement.requirement, MATRIX), TOX_MARKER))

    def say(line: str = "") -> None:
        print(line, file=stream)

    say(f"compatmatrix init: {_shown(path)}")
    width = max(len(label) for label, _ in decided.summary)
    for label, text in decided.summary:
        say(f"  {label.ljust(width)}  {text}")
    say()
    wrote = kept = 0
    for name, text, marker in files:
        target = facts.root / name
        status = _write(target, text, marker)
        if status == "written":
            wrote += 1
            why = (f": {cells} cells" if name == MATRIX else
                   f" (this project uses tox, says {tox_use}, and has no tox configuration)"
                   if name == TOX_TOML and tox_use is not None else "")
            say(f"wrote {name}{why}")
        elif status == "present":
            say(f"{name} exists and already " + ("matches" if marker is None else
                                                 "registers compatmatrix's sessions"
                                                 if marker == NOX_MARKER else
                                                 "names the matrix"))
        else:
            kept += 1
            what = ("not overwritten. compatmatrix init would have written:" if marker is None
                    else "does not register compatmatrix's sessions; not overwritten. "
                    "compatmatrix init would have written (add its last two lines, and "
                    "compatmatrix to its dependencies):")
            say(f"{name} exists: {what}")
            say()
            say(textwrap.indent(text, "    ").rstrip("\n"))
            say()
    if tox_here is not None and _tox_lines(tox_here, requirement.requirement, say):
        kept += 1
    for note in (*decided.notes, requirement.note):
        if note:
            say("\n".join(textwrap.wrap("note: " + note, 100, subsequent_indent="  ",
                                         break_long_words=False, break_on_hyphens=False)))
    say()
    say("next:")
    steps = list(NEXT_STEPS)
    if tox_here is not None or tox or tox_use is not None:
        steps += TOX_STEPS
    if facts.root.resolve() != Path.cwd().resolve():
        steps.insert(0, (f"cd {shlex.quote(_shown(path))}",
                         "the commands below run in the project root"))
    command_width = max(len(command) for command, _ in steps)
    for command, why in steps:
        say(f"  {command.ljust(command_width)}   # {why}")
    return 1 if kept and not wrote else 0


def _tox_lines(config: ToxConfig, requirement: str, say: Callable[[str], None]) -> bool:
    """Say what points the project's tox configuration at the matrix, which init never
    edits; True when the person has lines to add."""
    if config.points:
        say(f"{config.file} already points tox at the matrix")
        return False
    where = (f"to its {config.section} section" if config.section
             else "at its top, before any table")
    say(f"{config.file} is this project's tox configuration; not edited. Add these lines "
        f"{where} (merge requires with yours):")
    say("")
    say(textwrap.indent(render_tox_keys(config.syntax, requirement, MATRIX), "    ")
        .rstrip("\n"))
    say("")
    if config.file != TOX_TOML:
        say(f"(a {TOX_TOML} beside it would not be read: tox reads {config.file} first)")
    return True


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def _write(target: Path, text: str, marker: str | None) -> str:
    """'written', 'present' (what is there will do) or 'kept' (it differs): never overwrites."""
    try:
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
        return "written"
    except FileExistsError:
        pass
    try:
        existing = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "kept"
    if existing == text or (marker is not None and marker in existing):
        return "present"
    return "kept"


def _check(text: str, root: Path) -> int:
    """The generated matrix must be what plan accepts; the number of its cells."""
    try:
        return len(plan_cells(parse_matrix(text, root / MATRIX)))
    except SpecError as error:
        if error.location.file != root / MATRIX:
            raise  # about the project's own files (read again by the parser): the person's
        raise CompatError(f"internal error: compatmatrix init generated a matrix.yaml that "
                          f"compatmatrix does not accept ({error}); please report it with "
                          "the project's pyproject.toml/setup.py") from None


def _decide(facts: ProjectFacts, env: Mapping[str, str], finder: InterpreterFinder,
            index: TorchIndex, uv: Sequence[str] | None, torch_here: str | None,
            requirement: InstallRequirement) -> _Decided:
    notes: list[str] = list(facts.notes)
    name = facts.name.value if facts.name else facts.root.resolve().name
    summary = [("project", f"{name} (from {', '.join(facts.files)}), import "
                           f"{facts.import_name} ({facts.import_source})")]
    pythons = _pythons(facts, finder)
    axes: list[Axis] = []
    variants: list[Variant] = []
    excludes: list[Exclude] = []
    gate: tuple[tuple[str, str], ...] = (("python", pythons.versions[-1]),)
    if facts.torch is None:
        axes.append(Axis("python", pythons.versions, pythons.comment))
        summary += [("python", ", ".join(pythons.versions)),
                    ("torch", "not required: no torch or cuda axes")]
    else:
        torch = _torch(facts, env, index, uv, torch_here, pythons.versions, notes)
        kept = tuple(p for p in pythons.versions if p not in torch.dropped)
        cuda = _cuda(facts, torch, env, index)
        axes += [Axis("python", kept, pythons.comment + torch.dropped_comment), torch.axis,
                 cuda.axis]
        variants, excludes = cuda.variants, torch.excludes + cuda.excludes
        summary += [
            ("python", ", ".join(kept) + (f" (left out: {', '.join(torch.dropped)})"
                                          if torch.dropped else "")),
            ("torch", ", ".join(torch.axis.values) + f" ({_declared(facts)} in "
                                                     f"{facts.torch.source})"),
            ("cuda", ", ".join(cuda.axis.values) + (
                f" (CUDA sources: {_sources(facts.cuda_sources)})" if facts.cuda_sources
                else " (no CUDA sources)"))]
        gate = _gate_cell(kept, torch)
    suites = _suites(facts.test_folders)
    summary.append(("suites", ", ".join(f"{s.name} ({s.path})" for s in suites) or
                    "none (no test folder found)"))
    suggested = (Axis("extras", ("none", *facts.extras), "uncomment to test the extras too",
                      quoted=False),) \
        if facts.extras else ()
    if not pythons.installed:
        notes.append(f"Python {pythons.versions[0]} is not installed here; install it "
                     f"('uv python install {pythons.versions[0]}') to run the cells")
    draft = Draft(
        title=name,
        import_name=facts.import_name,
        import_comment=f"what the identity stage imports ({facts.import_source})",
        axes=tuple(axes),
        suggested_axes=suggested,
        excludes=tuple(excludes),
        variants=tuple(variants),
        suites=suites,
        missing_suites="no test folder found (a top-level folder with test_*.py files); "
                       "for example:",
        gate_cell=gate,
        ci_install=requirement.requirement,
        notes=tuple(notes),
    )
    return _Decided(draft, tuple(summary), tuple(notes))


def _declared(facts: ProjectFacts) -> str:
    assert facts.torch is not None
    return f"torch{facts.torch.specifier}" if facts.torch.specifier else "torch (any version)"


@dataclass(frozen=True)
class _Pythons:
    versions: tuple[str, ...]
    installed: bool
    comment: str


def _pythons(facts: ProjectFacts, finder: InterpreterFinder) -> _Pythons:
    declared = facts.requires_python
    requires = SpecifierSet(declared.value) if declared else None
    try:
        choice = choose_pythons(requires, finder)
    except ValueError as exc:
        assert declared is not None  # without requires-python every version is admitted
        raise ProjectFileError(facts.root / declared.source,
                               f"requires-python {declared.value!r}: {exc}",
                               "compatmatrix runs cells on CPython 3.8 to 3.14") from None
    where = (f"requires-python {declared.value} ({declared.source})" if declared else
             "the project (it declares no requires-python)")
    if choice.installed:
        comment = f"the Pythons found here that {where} admits"
    else:
        version = choice.versions[0]
        comment = (f"not installed here: the newest Python {where} admits; 'uv python "
                   f"install {version}', or set {override_variable(version)}")
    return _Pythons(choice.versions, choice.installed, comment)


@dataclass(frozen=True)
class _Torch:
    axis: Axis
    answers: TorchAnswers  # what the index said
    exact: bool  # the values are versions (not the declared range, when the index failed)
    uv: tuple[str, ...] | None  # None: there is no uv to ask with
    dropped: tuple[str, ...] = ()  # Pythons no torch of the axis exists for
    dropped_comment: str = ""
    excludes: list[Exclude] = field(default_factory=list)


def _torch(facts: ProjectFacts, env: Mapping[str, str], index: TorchIndex,
           uv: Sequence[str] | None, torch_here: str | None, pythons: Sequence[str],
           notes: list[str]) -> _Torch:
    """The newest release the project admits and the one installed here; Pythons neither
    exists for are left out, pairs the index lacks are excluded."""
    assert facts.torch is not None
    declared = _declared(facts)
    here = public(torch_here) if torch_here else None
    if torch_here and here and not _admits(facts.torch.specifier, here):
        notes.append(f"torch {torch_here} is installed here, but the project requires "
                     f"{declared}: it is not on the torch axis")
        here = None
    command: tuple[str, ...] | None = None
    try:
        command = tuple(uv) if uv is not None else _uv(env)
    except UsageError as exc:  # no uv to ask with
        answers = TorchAnswers(None, None, {}, {}, str(exc))
    else:
        answers = ask_torch(facts.torch.specifier, pythons, [here] if here else [],
                            uv=command, index=index, env=env)
    found: dict[Version, tuple[str, str]] = {}  # version -> (axis value, why)
    if answers.newest is not None:
        found[Version(answers.newest)] = (answers.newest,
                                          f"{answers.newest} is the newest release it admits")
    if here is not None:
        value, why = found.get(Version(here), (here, f"{here} is"))
        found[Version(here)] = (value, why + (" and" if Version(here) in found else "")
                                + f" installed here ({torch_here})")
    where = f"{declared} ({facts.torch.source})"
    if not found:
        comment = (f"{where}: the package index could not be asked ({answers.problem}), so "
                   "the declared range stands in, resolved when each cell runs; put exact "
                   "versions here")
        return _Torch(Axis("torch", (facts.torch.specifier or ">=0",), comment), answers,
                      False, command)
    ordered = [found[key] for key in sorted(found)]
    values = tuple(value for value, _ in ordered)
    axis = Axis("torch", values, f"{where}: " + ", ".join(why for _, why in ordered))
    if answers.problem:  # nothing known about which Python each one has wheels for
        return _Torch(axis, answers, True, command)
    dropped = tuple(p for p in pythons if not any(answers.available(p, v) for v in values))
    if len(dropped) == len(pythons):
        dropped = ()  # keep the axis: the cells will show the resolver's proof
    excludes = [Exclude((("python", p), ("torch", v)),
                        f"the index has no torch {v} for Python {p}")
                for v in values for p in pythons
                if p not in dropped and not answers.available(p, v)]
    dropped_comment = ""
    if dropped:
        newest = ", ".join(f"{answers.newest_for[p]} for {p}"
                           for p in dropped if p in answers.newest_for)
        dropped_comment = (f"; {', '.join(dropped)} left out: no torch of the axis has wheels "
                           f"for {'them' if len(dropped) > 1 else 'it'}"
                           + (f" (the newest: {newest})" if newest else ""))
    return _Torch(axis, answers, True, command, dropped, dropped_comment, excludes)


def _admits(specifier: str, version: str) -> bool:
    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except InvalidVersion:
        return False


def _gate_cell(pythons: Sequence[str], torch: _Torch) -> tuple[tuple[str, str], ...]:
    """The newest combination that is not excluded, with torch's CPU build."""
    for python in reversed(pythons):
        for version in reversed(torch.axis.values):
            if not torch.exact or torch.answers.available(python, version):
                return (("python", python), ("torch", version), ("cuda", "cpu"))
    return (("python", pythons[-1]), ("torch", torch.axis.values[-1]), ("cuda", "cpu"))


def _uv(env: Mapping[str, str]) -> tuple[str, ...]:
    return uv_command(env)


@dataclass(frozen=True)
class _Cuda:
    axis: Axis
    variants: list[Variant]
    excludes: list[Exclude]


def _cuda(facts: ProjectFacts, torch: _Torch, env: Mapping[str, str],
          index: TorchIndex) -> _Cuda:
    """cpu, plus PyPI's CUDA build of each torch on the axis when there are CUDA sources."""
    cpu = Variant("cpu", CPU_INDEX, "PyTorch's CPU builds (the default for cpu)")
    if not facts.cuda_sources:
        return _Cuda(Axis("cuda", ("cpu",), "torch's CPU build: the project has no CUDA "
                          "sources (.cu, .cuh)", quoted=False), [cpu], [])
    asked: dict[str, CudaBuild | None] = {}
    if torch.exact and torch.uv is not None and torch.answers.python is not None:
        asked = pypi_cuda_builds(torch.axis.values, torch.answers.python, uv=torch.uv,
                                 index=index, env=env)  # the index answered: ask it more
    builds = {value: asked.get(value) or table_cuda_build(value) for value in torch.axis.values}
    names = sorted({b.variant for b in builds.values()}, key=_variant_order)
    variants = [cpu]
    for name in names:
        releases = [v for v, b in builds.items() if b.variant == name]
        hows = sorted({b.how for b in builds.values() if b.variant == name})
        shipped = table_releases(name)
        comment = (f"PyPI's torch {', '.join(releases)} for Linux x86_64 is the CUDA "
                   f"{_cuda_version(name)} build ({'; '.join(hows)})"
                   + (f"; PyPI ships torch {shipped} as {name}" if shipped else ""))
        variants.append(Variant(name, "pypi", comment))
    excludes = [Exclude((("torch", value), ("cuda", other)),
                        f"PyPI's torch {value} is the {build.variant} build")
                for value, build in builds.items() for other in names
                if other != build.variant]
    axis = Axis("cuda", ("cpu", *names), "torch's CPU build, and PyPI's CUDA build for the "
                f"CUDA sources ({_sources(facts.cuda_sources)})", quoted=False)
    return _Cuda(axis, variants, excludes)


def _variant_order(name: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", name)
    return (int(digits) if digits else 0, name)


def _cuda_version(variant: str) -> str:
    digits = variant[2:]
    return f"{digits[:-1]}.{digits[-1]}" if digits.isdigit() and len(digits) >= 2 else variant


def _sources(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:2])
    return shown + (f" and {len(paths) - 2} more" if len(paths) > 2 else "")


def _suites(folders: Sequence[TestFolder]) -> tuple[Suite, ...]:
    biggest = max(folders, key=lambda f: f.files, default=None)
    suites: list[Suite] = []
    names: set[str] = set()
    for folder in folders:
        base = re.sub(r"[^A-Za-z0-9._-]", "-", folder.path.rsplit("/", 1)[-1]).strip("-._")
        name = base or "tests"
        counter = 2
        while name in names:
            name, counter = f"{base or 'tests'}-{counter}", counter + 1
        names.add(name)
        auto = folder is biggest
        modules = f"{folder.files} test module" + ("s" if folder.files != 1 else "")
        comment = modules + (", run by pytest-xdist workers" if auto else "")
        suites.append(Suite(name, folder.path, auto, comment))
    return tuple(suites)
