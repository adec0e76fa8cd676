"""Stage 1, resolve: the cell's whole requirement set, compiled by uv at the cell's Python.

The resolved pins are the cell's lock. An unsatisfiable set is ``incompatible`` with uv's
explanation kept verbatim; an index or build that is not reachable here is ``unavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from compatmatrix.host import cmd as _cmd
from compatmatrix.host.uv import (
    NETWORK,
    UNSATISFIABLE,
    Sources,
    explanation,
    involves_missing,
    parse_pins,
    pin_line,
    uv_source_args,
)
from compatmatrix.model.plan import Cell
from compatmatrix.model.project import ProjectMeta
from compatmatrix.model.record import Status
from compatmatrix.model.spec import (
    DEFAULT_RESOLUTION,
    NONE,
    PREINSTALLED,
    Matrix,
    is_specifier,
    package_requirement,
)

__all__ = [
    "Resolution",
    "axis_conflict",
    "cell_extras",
    "cell_requirements",
    "highest_pins",
    "requirements_by_origin",
    "resolve_cell",
    "torch_requirement",
    "unwanted_pins",
    "wheel_requirement_problems",
]


# What uv says offline when the cache lacks something: the answer is not the index's
_NOT_CACHED = ("network was disabled", "not found in the cache",
               "needs to be downloaded from a registry", "network connectivity is disabled")


def _not_cached(result: _cmd.CommandResult) -> bool:
    return not result.ok and any(marker in result.output for marker in _NOT_CACHED)


@dataclass(frozen=True)
class Resolution:
    status: Status | None  # None: resolved; else the cell's (incompatible, unavailable, failed)
    pins: dict[str, str]
    requirements: tuple[str, ...]
    explanation: str = ""
    sources: Sources | None = None
    duration: float = 0.0

    summary: str = ""  # the reason, when there is more to say than the status's words

    @property
    def reason(self) -> str:
        """One line for the record; the explanation keeps uv's words."""
        if self.summary:
            return self.summary
        return {Status.INCOMPATIBLE: "the pins cannot be installed together",
                Status.UNAVAILABLE: "a package index or build is not available here"}.get(
            self.status, "uv could not resolve the requirements") if self.status else ""


def torch_requirement(value: str, variant: str | None, index_url: str | None) -> str:
    """The torch pin for a cell, precise about the CUDA variant.

    ``torch==2.13.0`` also matches ``2.13.0+cpu``, and a find-links folder holding the CPU
    build would win over PyPI's CUDA build. So a variant index gets ``==X+variant`` and
    PyPI's own (unlabelled) build gets arbitrary equality ``===X``.
    """
    if is_specifier(value) or variant is None or "+" in value:
        return package_requirement("torch", value) or "torch"
    if index_url is None:
        return f"torch==={value}"
    return f"torch=={value}+{variant}"


def cell_requirements(matrix: Matrix, cell: Cell, project_requirements: Sequence[str],
                      index_url: str | None,
                      test_requires: Sequence[str] | None = None) -> list[str]:
    """What the cell resolves: the project's requirements (with the extras in play, from
    :meth:`ProjectMeta.requirements`), every package axis pinned, and the test requirements."""
    reqs = list(project_requirements)
    for axis in matrix.axes:
        value = cell.value(axis.name) or NONE
        if axis.kind != "package" or value == NONE:
            continue
        if canonicalize_name(axis.name) == "torch":
            if value != PREINSTALLED:  # the interpreter's own torch: nothing to resolve
                reqs.append(torch_requirement(value, cell.value("cuda"), index_url))
        else:
            reqs.append(package_requirement(axis.name, value) or axis.name)
    if matrix.project is not None:  # a pins table resolves the axes alone
        reqs += matrix.project.test_requires if test_requires is None else test_requires
    return reqs


def highest_pins(test_requires: Sequence[str], project_reqs: Sequence[str], *,
                 resolution: str, uv: Sequence[str], interpreter: Path, sources: Sources,
                 constraints: Path, log: Path, env: Mapping[str, str],
                 timeout: float) -> list[str]:
    """The test requirements pinned to their newest versions that install with the
    project's own requirements at ``resolution``, so that a lowest resolution moves only
    the project's requirements: the test requirements are direct requirements too, and
    pinning them to their newest alone (pytest 9.2 needs packaging>=24) would raise the
    very bound under test. ``constraints`` is where the project's own pins are written.
    As given when uv cannot resolve them so (the cell's own
    resolution then says why)."""
    constraints.parent.mkdir(parents=True, exist_ok=True)
    alone = _compile(project_reqs, resolution, uv=uv, interpreter=interpreter,
                     sources=sources, log=log, env=env, timeout=timeout)
    direct = set()
    for text in project_reqs:
        try:
            direct.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    constraints.write_text("".join(pin_line(n, v) + "\n" for n, v in alone.items()
                                   if n in direct), encoding="utf-8")
    pins = _compile(test_requires, DEFAULT_RESOLUTION, uv=uv, interpreter=interpreter,
                    sources=sources, log=log, env=env, timeout=timeout,
                    extra=("--constraint", str(constraints)))
    pinned = []
    for text in test_requires:
        name = canonicalize_name(Requirement(text).name)
        pinned.append(f"{name}=={pins[name]}" if name in pins else text)
    return pinned


def _compile(reqs: Sequence[str], resolution: str, *, uv: Sequence[str], interpreter: Path,
             sources: Sources, log: Path, env: Mapping[str, str], timeout: float,
             extra: Sequence[str] = ()) -> dict[str, str]:
    """What uv pins for ``reqs`` alone; {} when it cannot."""
    argv = [*uv, "pip", "compile", "-", "--python", str(interpreter), "--no-header",
            "--no-annotate", "--quiet", *uv_source_args(sources), *extra]
    if resolution != DEFAULT_RESOLUTION:
        argv += ["--resolution", resolution]
    result = _cmd.run(argv, log=log, env=env, timeout=timeout,
                      input_text="\n".join(reqs) + "\n")
    return parse_pins(result.output) if result.ok else {}


def cell_extras(cell: Cell) -> tuple[str, ...]:
    value = cell.value("extras")
    return () if value in (None, NONE) else tuple(value.split("+"))


def axis_conflict(matrix: Matrix, cell: Cell, meta: ProjectMeta,
                  environment: Mapping[str, str]) -> str | None:
    """Why the project's own requirements cannot hold in this cell, decided before resolving.

    A requirement (of the package, or of an extra in play) on a package whose axis says
    ``none``, or an exact version it excludes, is a proof from metadata: the cell is
    incompatible without asking an index (and without downloading, say, vLLM).
    """
    axes = {canonicalize_name(a.name): a.name for a in matrix.axes if a.kind == "package"}
    for extra, text in requirements_by_origin(meta, cell_extras(cell), environment):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in axes or (req.marker is not None
                                and not req.marker.evaluate(dict(environment))):
            continue
        axis = axes[name]
        value = cell.value(axis) or NONE
        who = f"extra {extra!r} requires" if extra else f"{meta.name} requires"
        bare = f"{req.name}{req.specifier}" if req.specifier else req.name
        if value == NONE:
            return f"{who} {bare}, the cell says {axis}: none"
        if value == PREINSTALLED or is_specifier(value) or req.url:
            continue
        if not req.specifier.contains(Version(value), prereleases=True):
            return f"{who} {bare}, the cell says {axis} {value}"
    return None


def requirements_by_origin(meta: ProjectMeta, extras: Sequence[str],
                            environment: Mapping[str, str]) -> list[tuple[str, str]]:
    """(extra or "", requirement without its extra marker) for the package and each extra."""
    base = set(meta.requirements((), environment))
    found = [("", text) for text in sorted(base)]
    for extra in extras:
        found += [(extra, text) for text in meta.requirements((extra,), environment)
                  if text not in base]
    return found


def unwanted_pins(matrix: Matrix, cell: Cell, pins: Mapping[str, str]) -> str | None:
    """A package the cell says is not installed (``none``) that the resolution brought in."""
    for axis in matrix.axes:
        name = canonicalize_name(axis.name)
        if axis.kind == "package" and (cell.value(axis.name) or NONE) == NONE and name in pins:
            return (f"the requirements bring in {axis.name} {pins[name]} (through another "
                    f"package), but the cell says {axis.name}: none")
    return None


def resolve_cell(reqs: Sequence[str], *, uv: Sequence[str], interpreter: Path,
                 sources: Sources, lock: Path, log: Path, env: Mapping[str, str],
                 timeout: float, preinstalled: Sequence[str] = (),
                 resolution: str = DEFAULT_RESOLUTION,
                 snapshot: bool = False) -> Resolution:
    """Compile ``reqs`` for ``interpreter`` into ``lock``, with uv's ``resolution`` strategy.

    ``preinstalled`` packages (the interpreter's own torch) are left out of the lock even when
    something requires them: the cell uses the interpreter's copy. With a lowest strategy
    the lowest version a requirement admits may have no wheel for the cell; uv's --no-build
    would silently move to one that has, so the lock is compiled both ways, and a version
    that moved makes the cell unavailable, naming it — never a silent substitute.

    ``snapshot``: uv's cache (``UV_CACHE_DIR`` in ``env``) holds only what this run fetched,
    so it is asked offline first; only a resolution that needs something not fetched yet asks
    the index (and adds it). A resolve-only run's cells then see one snapshot of the index,
    each page fetched about once, not revalidated once per cell: on 200 vLLM x torch cells,
    56 asked the index and the CPU time halved. (Holding back the online ones to retry
    offline after others fetched cost more CPU than it saved.)
    """
    start = time.monotonic()
    req_file = lock.with_suffix(".in")
    req_file.parent.mkdir(parents=True, exist_ok=True)
    req_file.write_text("\n".join(reqs) + "\n", encoding="utf-8")
    argv = [*uv, "pip", "compile", str(req_file), "--python", str(interpreter),
            "--no-header", "--no-annotate", "--quiet", *uv_source_args(sources)]
    if resolution != DEFAULT_RESOLUTION:
        argv += ["--resolution", resolution]
    for name in preinstalled:
        argv += ["--no-emit-package", name]
    result = None
    if snapshot:
        result = _cmd.run([*argv, "--offline"], log=log, env=env, timeout=timeout)
    if result is None or _not_cached(result):
        result = _cmd.run(argv, log=log, env=env, timeout=timeout)
    if result.timed_out:
        return Resolution(Status.UNAVAILABLE, {}, tuple(reqs),
                          f"uv did not finish within {timeout:.0f} s (index not responding?)",
                          sources, result.duration)
    if not result.ok:
        return _failure(result.output, reqs, sources, result.duration)
    pins = parse_pins(result.output)
    if resolution != DEFAULT_RESOLUTION:
        binary = _cmd.run([*argv, "--no-build"], log=log, env=env, timeout=timeout)
        if not binary.ok:
            why = explanation(binary.output).splitlines()
            return Resolution(
                Status.UNAVAILABLE, pins, tuple(reqs),
                "\n".join(["uv resolves these requirements only by building a dependency "
                           "from source; compatmatrix builds only the package under test:",
                           *why]), sources, time.monotonic() - start,
                summary=f"the {resolution} resolution needs a dependency built from source")
        moved = _without_wheels(reqs, pins, parse_pins(binary.output))
        if moved:
            more = f" (and {len(moved) - 1} more)" if len(moved) > 1 else ""
            return Resolution(Status.UNAVAILABLE, pins, tuple(reqs),
                              "\n".join(long for _, long in moved), sources,
                              time.monotonic() - start, summary=moved[0][0] + more)
    lock.write_text("".join(pin_line(n, v) + "\n" for n, v in pins.items()), encoding="utf-8")
    return Resolution(None, pins, tuple(reqs), "", sources, time.monotonic() - start)


def _without_wheels(reqs: Sequence[str], pins: Mapping[str, str],
                    binary: Mapping[str, str]) -> list[tuple[str, str]]:
    """For each package whose resolved version has no wheel here: what moved, in short
    and whole."""
    declared: dict[str, str] = {}
    for text in reqs:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        declared.setdefault(canonicalize_name(req.name), text)
    found = []
    for name, version in sorted(pins.items()):
        with_wheel = binary.get(name)
        if with_wheel == version:
            continue
        bound = declared.get(name, f"{name} (a dependency)")
        lowest = (f"the lowest version that has one is {with_wheel}" if with_wheel
                  else "the resolution without building leaves it out")
        short = (f"{name} {version}, the lowest {bound} admits, has no wheel here"
                 + (f"; the lowest with one is {with_wheel}" if with_wheel else ""))
        found.append((short, f"{name} {version}, the lowest {bound} admits, has no wheel "
                      f"for this cell's Python and platform: {lowest}; compatmatrix builds "
                      "only the package under test, and never substitutes another version "
                      "silently"))
    return found


def wheel_requirement_problems(requirements: Sequence[str], pins: Mapping[str, str],
                               environment: Mapping[str, str],
                               skip: Sequence[str] = ()) -> list[str]:
    """Requirements (of the built wheel, extras in play) that the resolved pins do not meet."""
    problems = []
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name in skip or req.url or (req.marker is not None
                                       and not req.marker.evaluate(dict(environment))):
            continue
        pinned = pins.get(name)
        if pinned is None:
            problems.append(f"it requires {text}, which the resolved pins do not include")
        elif req.specifier and not req.specifier.contains(Version(pinned), prereleases=True):
            problems.append(f"it requires {text}, but {req.name} {pinned} was resolved")
    return problems


def _failure(output: str, reqs: Sequence[str], sources: Sources,
             duration: float) -> Resolution:
    text = explanation(output)
    if any(marker in output for marker in UNSATISFIABLE):
        if sources.note and involves_missing(text):
            # the variant's index was skipped: what is missing may be there
            return Resolution(Status.UNAVAILABLE, {}, tuple(reqs), f"{sources.note}; {text}",
                              sources, duration)
        return Resolution(Status.INCOMPATIBLE, {}, tuple(reqs), text, sources, duration)
    if any(marker in output for marker in NETWORK):
        return Resolution(Status.UNAVAILABLE, {}, tuple(reqs), text, sources, duration)
    return Resolution(Status.FAILED, {}, tuple(reqs), text, sources, duration)


