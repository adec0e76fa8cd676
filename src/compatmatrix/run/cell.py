"""One cell, end to end: resolve -> build -> audit -> install -> identity -> suites -> record.

Each stage either hands its result to the next or ends the cell with a record that names the
stage and a reason a person understands. A bug in compatmatrix becomes status ``error`` for
this cell only; the record is always written, atomically.
"""

from __future__ import annotations

import dataclasses
import shlex
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compatmatrix.binary.torchabi import NO_TORCH, STABLE, AbiTool
from compatmatrix.host.gpu import cell_kind_problem
from compatmatrix.host.indexes import index_url_for
from compatmatrix.host.interpreters import InterpreterFinder
from compatmatrix.host.toolchain import NVCC_ENV, nvcc_setting
from compatmatrix.host.uv import Sources, choose_sources
from compatmatrix.model.outcomes import (
    Artifact,
    Finding,
    Stage,
    SuiteResult,
    SuiteStatus,
    stage_label,
)
from compatmatrix.model.plan import Cell, stable_build_torch
from compatmatrix.model.project import (
    ProjectMeta,
    StaticProject,
    marker_environment,
    parse_metadata,
)
from compatmatrix.model.record import CellRecord, Status, read_record, reproduce_command
from compatmatrix.model.spec import DEFAULT_RESOLUTION, NONE, PREINSTALLED, Matrix
from compatmatrix.model.workdir import WorkDir
from compatmatrix.run.inputs import ProjectDigests, cell_inputs
from compatmatrix.stages.audit import audit_wheel, check_running_torch
from compatmatrix.stages.build import (
    BuildRequest,
    BuildResult,
    MetadataRequest,
    build_wheel,
    prepare_metadata,
    read_torch_facts,
)
from compatmatrix.stages.identity import check_identity, same_torch
from compatmatrix.stages.install import install_cell_env, mark_venv, venv_marked, venv_python
from compatmatrix.stages.resolve import (
    Resolution,
    axis_conflict,
    cell_extras,
    cell_requirements,
    highest_pins,
    requirements_by_origin,
    resolve_cell,
    torch_requirement,
    unwanted_pins,
    wheel_requirement_problems,
)
from compatmatrix.stages.select import (
    GivenWheel,
    Selection,
    fetch_release,
    label_problem,
    sha_file,
    torch_problem,
)
from compatmatrix.stages.suites import run_suite

__all__ = ["DEFAULT_TIMEOUTS", "Cancelled", "RunContext", "StageHook", "run_cell"]

StageHook = Callable[[str, str], None]  # (cell id, stage) when a stage starts


class Cancelled(Exception):
    """The run was interrupted: this cell leaves no record, the next run redoes it."""

DEFAULT_TIMEOUTS = {Stage.METADATA: 1200, Stage.RESOLVE: 600, Stage.BUILD: 3600,
                    Stage.AUDIT: 300, Stage.INSTALL: 1200, Stage.IDENTITY: 300,
                    Stage.SUITE: 1800}  # seconds; matrix.yaml's timeouts override them


@dataclass(frozen=True)
class RunContext:
    """Everything a cell run needs; built once per invocation and passed down."""

    matrix: Matrix
    cells: tuple[Cell, ...]
    workdir: WorkDir
    project: StaticProject | None  # read once (None: a pins table); metadata from the build
    #                                backend comes per build key
    repo_root: Path  # the repository matrix.yaml is in (or its folder): reports relative to it
    env: Mapping[str, str]
    finder: InterpreterFinder
    uv: tuple[str, ...]
    find_links: tuple[str, ...]
    jobs: int
    gpus: tuple[tuple[str, str], ...]
    digests: ProjectDigests
    force: bool = False
    until: Stage | None = None  # Stage.RESOLVE: resolve only (records in pins/, resolvable)
    # A resolve-only run's own uv cache: what this run fetched from the indexes, asked
    # offline first (stages/resolve.py, snapshot)
    index_snapshot: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # wheels built elsewhere (project.wheels, run --wheels), read once, and where they are
    given: tuple[GivenWheel, ...] = ()
    given_where: str = ""
    selections: Mapping[str, Selection] = field(default_factory=dict)  # cell id -> its wheel

    @property
    def built_nothing(self) -> bool:
        """The cells test given or published wheels: nothing is built here."""
        return self.matrix.project is not None and self.matrix.project.mode != "built"

    def timeout(self, stage: Stage) -> float:
        return float(dict(self.matrix.timeouts).get(stage.value, DEFAULT_TIMEOUTS[stage]))


def run_cell(ctx: RunContext, cell: Cell, on_stage: StageHook | None = None) -> CellRecord:
    """Run one cell and write its record. Raises Cancelled (writing nothing) on interrupt."""
    record = _base_record(ctx, cell)
    try:
        record = _CellRun(ctx, cell, record, on_stage).run()
    except Cancelled:
        raise
    except Exception:
        log = ctx.workdir.log(cell.id, "error")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc(), encoding="utf-8")
        record = record.but(status=Status.ERROR, reason="compatmatrix itself failed "
                            "(a bug: please report it with this log)",
                            details=tuple(traceback.format_exc().splitlines()[-3:]),
                            logs={**record.logs, "error": str(log)})
    if ctx.cancel.is_set():  # killed subprocesses look like failures: do not record them
        raise Cancelled(cell.id)
    record.write(ctx.workdir.record(cell.id))
    return record


def _base_record(ctx: RunContext, cell: Cell) -> CellRecord:
    axes = {name: (None if value == NONE else value) for name, value in cell.axes}
    reproduce = reproduce_command(ctx.matrix.path, cell.id)
    project = ctx.matrix.project
    if project is not None and project.wheels and not project.wheels_at:  # run --wheels DIR
        reproduce += f" --wheels {shlex.quote(str(Path(project.wheels[0]).parent))}"
    elif project is not None and project.requirement and project.requirement_at is None:
        reproduce += f" --requirement {shlex.quote(project.requirement)}"
    return CellRecord(cell=cell.id, axes=axes, status=Status.ERROR, build_key=cell.build_key,
                      reproduce=reproduce,
                      root=str(ctx.repo_root))


class _CellRun:
    """The stages of one cell; each method returns a final record or None to go on."""

    def __init__(self, ctx: RunContext, cell: Cell, record: CellRecord,
                 on_stage: StageHook | None) -> None:
        self.ctx, self.cell, self.record = ctx, cell, record
        self.on_stage = on_stage
        self.durations: dict[str, float] = {}
        self.logs: dict[str, str] = {}

    def log(self, stage: str) -> Path:
        if self.ctx.cancel.is_set():
            raise Cancelled(self.cell.id)
        if self.on_stage is not None:
            self.on_stage(self.cell.id, stage)
        path = self.ctx.workdir.log(self.cell.id, stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
        self.logs[stage] = str(path)
        return path

    def end(self, status: Status, stage: Stage | str | None, reason: str,
            details: tuple[str, ...] = ()) -> CellRecord:
        label = stage.value if isinstance(stage, Stage) else stage  # "suite:unit" as is
        self.record = self.record.but(status=status, stage=label, reason=reason,
                                      details=details, durations=dict(self.durations),
                                      logs=dict(self.logs))
        return self.record

    def run(self) -> CellRecord:
        self.audit_errors: tuple[Finding, ...] = ()
        self.setup_reused = False
        self.given: GivenWheel | None = None  # a wheel built elsewhere (given or published)
        if self.ctx.built_nothing:
            # the audit reads the cell's torch where the wheel is installed: there is no
            # build environment (and nothing is built)
            setup: tuple[Callable[[], CellRecord | None], ...] = (
                self.install, self.audit, self.identity)
            steps = (self.interpreter, self.metadata, self.resolve, self.select, self.reuse,
                     self.stop_after_resolve, *setup, self.suites)
        else:
            setup = (self.build, self.audit, self.install, self.identity)
            steps = (self.interpreter, self.metadata, self.resolve, self.reuse,
                     self.stop_after_resolve, *setup, self.suites)
        for step in steps:
            if self.setup_reused and step in setup:
                continue  # only the tests changed: the wheel, the venv and identity hold
            final = step()
            if final is not None:
                return self.audit_first(final)
        return self.audit_first(self.end(Status.PASSED, None, ""))

    def audit_first(self, final: CellRecord) -> CellRecord:
        """The audit never hides test evidence: a wheel with audit errors is still installed
        and tested, and the cell fails at ``audit`` with the suites' results in its record."""
        if not self.audit_errors or final.reused:
            return final
        later = () if final.status is Status.PASSED else (
            f"then {final.status.value} at {final.stage}: {final.reason}",)
        more = len(self.audit_errors) - 1
        reason = self.audit_errors[0].message + (
            f" (and {more} more audit error{'s' * (more > 1)})" if more else "")
        lines = tuple(f"{f.file}: {f.message}" for f in self.audit_errors)
        return self.end(Status.FAILED, Stage.AUDIT, reason, (*lines, *later))

    # -- stages ---------------------------------------------------------------------------

    def interpreter(self) -> CellRecord | None:
        found = self.ctx.finder.find(self.cell.python)
        if found.path is None:
            return self.end(Status.UNAVAILABLE, Stage.RESOLVE, found.problem)
        self.python = found.path
        self.environment = marker_environment(found.full_version or f"{self.cell.python}.0")
        self.record = self.record.but(interpreter=f"{found.path} ({found.full_version})")
        return None

    def reuse(self) -> CellRecord | None:
        """The previous record, when nothing this cell depends on has changed. When only the
        tests changed (or the suites' settings), the previous wheel, venv and identity check
        are taken over instead, and the suites run again."""
        ctx = self.ctx
        inputs = cell_inputs(ctx.matrix, ctx.digests, axes=dict(self.cell.axes),
                             build_key=self.cell.build_key,
                             interpreter=str(self.record.interpreter),
                             pins=self.record.resolved, gpus=ctx.gpus,
                             machine=self.machine_inputs(),
                             mode="resolve" if ctx.until is Stage.RESOLVE else "run",
                             artifact=self.record.artifact.sha256
                             if self.record.artifact is not None else "")
        self.record = self.record.but(inputs=inputs.all, setup_inputs=inputs.setup)
        previous = read_record(ctx.workdir.record(self.cell.id))
        if ctx.force or previous is None or previous.status is Status.ERROR:
            return None
        if previous.inputs == inputs.all:
            if self.on_stage is not None:
                self.on_stage(self.cell.id, "reused")
            return previous.but(reused=True)
        if previous.setup_inputs == inputs.setup and self.setup_holds(previous):
            self.take_setup(previous)
        return None

    def setup_holds(self, previous: CellRecord) -> bool:
        """The previous run got through identity, and its wheel and marked venv are intact."""
        return (previous.identity is not None and previous.identity.ok
                and previous.wheel is not None and Path(previous.wheel).is_file()
                and venv_marked(self.ctx.workdir.env(self.cell.id), previous.setup_inputs))

    def take_setup(self, previous: CellRecord) -> None:
        """Build, audit, install and identity as the previous run left them (their logs too)."""
        self.setup_reused = True
        if self.on_stage is not None:
            self.on_stage(self.cell.id, "reused setup")
        self.record = self.record.but(
            wheel=previous.wheel, wheel_reused=True, built_with_torch=previous.built_with_torch,
            artifact=previous.artifact,
            running_torch=previous.running_torch, audit=previous.audit,
            identity=previous.identity, setup_reused=True)
        self.logs.update({stage: log for stage, log in previous.logs.items()
                          if stage in ("build", "audit", "install", "identity")})
        self.audit_errors = previous.audit.errors if previous.audit is not None else ()
        self.venv_python = venv_python(self.ctx.workdir.env(self.cell.id))

    def stop_after_resolve(self) -> CellRecord | None:
        if self.ctx.until is not Stage.RESOLVE:
            return None
        return self.end(Status.RESOLVABLE, Stage.RESOLVE,
                        "the pins install together; nothing built or tested")

    @property
    def source(self) -> Path:
        """The source tree that is built (a matrix without one builds nothing)."""
        path = self.ctx.matrix.package.source
        assert path is not None, "only a project with a source tree is built"
        return path

    @property
    def torch_preinstalled(self) -> bool:
        return self.cell.value("torch") == PREINSTALLED

    def machine_inputs(self) -> dict[str, str]:
        """What the cell depends on beyond the matrix: the nvcc forced, the interpreter's torch."""
        found = {}
        if self.ctx.env.get(NVCC_ENV):
            found["nvcc"] = self.ctx.env[NVCC_ENV]
        if self.torch_preinstalled:
            facts = read_torch_facts(self.python)
            found["torch"] = f"{facts.version} {facts.root}"
        if self.ctx.matrix.project is not None and self.ctx.matrix.package.torch_abi == "stable":
            # a lower torch added to the matrix builds this key's one wheel against it
            found["build_torch"] = str(self.build_torch())
        return found

    def metadata(self) -> CellRecord | None:
        """The project's name and requirements: static from pyproject.toml, or from the build
        backend in this cell's build environment (setup.py imports the cell's torch)."""
        ctx = self.ctx
        self.index_url = index_url_for(ctx.matrix.indexes, self.cell.value("cuda"))
        self.sources: Sources = choose_sources(self.index_url, ctx.find_links)
        if ctx.built_nothing:
            return self.release_metadata()
        if ctx.project is None:  # a pins table: only the axes are resolved
            self.meta: ProjectMeta = ProjectMeta("", None, (), (), None, "no project")
            return None
        if ctx.project.meta is not None:
            self.meta = ctx.project.meta
            return None
        # a stable-ABI key's one wheel is built against its one torch: so is its metadata
        torch = self.stable_torch() or self.cell.value("torch") or NONE
        request = MetadataRequest(
            build_key=self.cell.build_key, project=self.source,
            files=tuple(ctx.digests.files()), source_digest=ctx.digests.source(),
            interpreter=self.python, build_system=ctx.project.build_system,
            torch_requirement=None if torch in (NONE, PREINSTALLED) else
            torch_requirement(torch, self.cell.value("cuda"), self.sources.index_url),
            sources=self.sources, torch_preinstalled=self.torch_preinstalled)
        log = self.log("metadata")
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"[compatmatrix] {ctx.project.why_dynamic}: asking the build backend "
                         f"({ctx.project.build_system.backend})\n")
        result = prepare_metadata(request, workdir=ctx.workdir, uv=ctx.uv, env=ctx.env,
                                  log=log, timeout=ctx.timeout(Stage.METADATA))
        self.durations["metadata"] = result.duration
        if result.meta is None:
            return self.end(Status.FAILED, Stage.METADATA, result.reason, result.details)
        self.meta = result.meta
        return None

    def release_metadata(self) -> CellRecord | None:
        """What a wheel built elsewhere requires: the given wheel's METADATA; for a published
        release, the release itself (its requirements come with it from the index)."""
        project = self.ctx.matrix.package
        if project.requirement is not None:
            release = Requirement(project.requirement)
            extras = cell_extras(self.cell)
            text = f"{release.name}{'[' + ','.join(extras) + ']' if extras else ''}" \
                   f"{release.specifier}"
            self.meta = ProjectMeta(release.name, next(iter(release.specifier)).version,
                                    (text,), tuple(extras), None,
                                    f"the published release {project.requirement}")
            return None
        selection = self.ctx.selections.get(self.cell.id) or Selection(
            None, f"no wheel was chosen for {self.cell.id} in {self.ctx.given_where}")
        if selection.wheel is None:
            return self.end(Status.FAILED, Stage.SELECT, selection.reason, selection.details)
        self.given = selection.wheel
        # the wheel is an input from here on: a verdict decided from its metadata alone
        # (an extra's conflict at resolve) must not outlive a replaced wheel
        self.record = self.record.but(wheel=str(selection.wheel.path), artifact=Artifact(
            selection.wheel.file, sha_file(selection.wheel.path), "given"))
        try:
            self.meta = parse_metadata(read_wheel_metadata(selection.wheel.path),
                                       f"the wheel {selection.wheel.file}")
        except (OSError, ValueError, KeyError, StopIteration, zipfile.BadZipFile) as exc:
            return self.end(Status.FAILED, Stage.SELECT, f"the wheel {selection.wheel.file} "
                            f"has no readable METADATA ({exc})")
        self.record = self.record.but(declared=self.declared(self.meta))
        return None

    def select(self) -> CellRecord | None:
        """The wheel the cell tests, checked against the resolved torch; a published release's
        wheel is fetched first. Nothing is built."""
        if self.ctx.until is Stage.RESOLVE:
            return None
        project = self.ctx.matrix.package
        origin = "given"
        if project.requirement is not None:
            origin = "published"
            final = self.fetch()
            if final is not None:
                return final
        wheel = self.given
        assert wheel is not None
        torch = None if self.torch_preinstalled else self.record.resolved.get("torch")
        problem = label_problem(wheel.label, self.cell.value("cuda"), torch)
        if problem is None and torch is not None:
            problem = torch_problem(wheel, python=self.cell.python, torch=torch)
        if problem is not None:
            why = f"{wheel.file} {problem}, and the cell resolved torch {torch}"
            return self.end(Status.FAILED, Stage.SELECT, why, (why,))
        if self.record.artifact is None:  # a given wheel's was taken when it was chosen
            self.record = self.record.but(wheel=str(wheel.path), artifact=Artifact(
                wheel.file, sha_file(wheel.path), origin))
        return None

    def fetch(self) -> CellRecord | None:
        ctx, release = self.ctx, Requirement(self.ctx.matrix.package.requirement or "")
        version = self.record.resolved.get(canonicalize_name(release.name)) or next(
            iter(release.specifier)).version
        fetched = fetch_release(
            release.name, version, python=self.cell.python, variant=self.cell.value("cuda"),
            torch=None if self.torch_preinstalled else self.record.resolved.get("torch"),
            uv=ctx.uv, interpreter=self.python, sources=self.sources,
            folder=ctx.workdir.root / "published" / self.cell.id, log=self.log("select"),
            env=ctx.env, timeout=ctx.timeout(Stage.RESOLVE))
        self.durations["select"] = fetched.duration
        if fetched.wheel is None:
            if fetched.unavailable:
                self.record = self.record.but(inputs="")
                return self.end(Status.UNAVAILABLE, Stage.SELECT, fetched.reason,
                                fetched.details)
            return self.end(Status.FAILED, Stage.SELECT, fetched.reason, fetched.details)
        self.given = fetched.wheel
        try:
            meta = parse_metadata(read_wheel_metadata(fetched.wheel.path),
                                  f"the wheel {fetched.wheel.file}")
        except (OSError, ValueError, KeyError, StopIteration, zipfile.BadZipFile):
            return None  # the audit reports an unreadable wheel
        self.record = self.record.but(declared=self.declared(meta))
        return None

    def resolve(self) -> CellRecord | None:
        ctx, log = self.ctx, self.log("resolve")
        if self.sources.note:
            with log.open("a", encoding="utf-8") as handle:
                handle.write(f"[compatmatrix] {self.sources.note}; using find-links only\n")
        conflict = axis_conflict(ctx.matrix, self.cell, self.meta, self.environment)
        if conflict is not None:  # a proof from metadata: nothing to ask an index
            # it depends only on the inputs (no index was asked), so it is reused like a
            # record that got further
            return self.reuse() or self.end(Status.INCOMPATIBLE, Stage.RESOLVE, conflict,
                                            (conflict,))
        project_reqs = self.meta.requirements(cell_extras(self.cell), self.environment)
        resolution = self.cell.value("resolution") or DEFAULT_RESOLUTION
        tests = None
        project = ctx.matrix.project
        if resolution != DEFAULT_RESOLUTION and project is not None and project.test_requires:
            # test requirements stay at their newest: only the project's bounds are tested
            tests = highest_pins(
                project.test_requires,
                cell_requirements(ctx.matrix, self.cell, project_reqs, self.index_url,
                                  test_requires=()),
                resolution=resolution, uv=ctx.uv, interpreter=self.python,
                sources=self.sources, log=log,
                constraints=ctx.workdir.lock(self.cell.id).with_suffix(".project-pins.txt"),
                env=ctx.env, timeout=ctx.timeout(Stage.RESOLVE))
        reqs = cell_requirements(ctx.matrix, self.cell, project_reqs, self.index_url,
                                 test_requires=tests)
        snapshot = ctx.index_snapshot
        result: Resolution = resolve_cell(
            reqs, uv=ctx.uv, interpreter=self.python, sources=self.sources,
            lock=ctx.workdir.lock(self.cell.id), log=log,
            env={**ctx.env, "UV_CACHE_DIR": str(snapshot)} if snapshot else ctx.env,
            timeout=ctx.timeout(Stage.RESOLVE), resolution=resolution,
            preinstalled=("torch",) if self.torch_preinstalled else (),
            snapshot=snapshot is not None)
        self.durations["resolve"] = result.duration
        self.record = self.record.but(resolved=result.pins, requirements=list(reqs),
                                      declared=self.declared(self.meta))
        if result.status is None:
            unwanted = unwanted_pins(ctx.matrix, self.cell, result.pins)
            if unwanted is None:
                return None
            self.record = self.record.but(inputs="")
            return self.end(Status.INCOMPATIBLE, Stage.RESOLVE, unwanted, (unwanted,))
        self.record = self.record.but(inputs="")  # nothing to compare: resolve again next time
        return self.end(result.status, Stage.RESOLVE, result.reason,
                        tuple(result.explanation.splitlines()))

    def stable_torch(self) -> str | None:
        """For a stable-ABI project, the one torch release its build key is built against
        (project.stable_build_torch, else the lowest of the key's cells); else None."""
        project, torch = self.ctx.matrix.package, self.cell.value("torch")
        if project.torch_abi != "stable" or torch in (None, NONE, PREINSTALLED):
            return None
        return stable_build_torch(self.ctx.matrix, [
            c.value("torch") or NONE for c in self.ctx.cells
            if c.build_key == self.cell.build_key])

    def build_torch(self) -> str | None:
        """The torch to build against: the lock's, or a stable-ABI key's one torch, in the
        variant the lock names (``2.11.0+cpu`` beside a locked ``2.13.0+cpu``; PyPI's own
        build has no label)."""
        locked = self.record.resolved.get("torch")
        chosen = self.stable_torch()
        if chosen is None or locked is None or "+" in chosen:
            return locked if chosen is None else chosen
        try:
            label = Version(locked).local
        except InvalidVersion:
            label = None
        return f"{chosen}+{label}" if label else chosen

    def build(self) -> CellRecord | None:
        ctx = self.ctx
        torch = self.build_torch()
        project = ctx.matrix.package
        request = BuildRequest(
            build_key=self.cell.build_key, project=self.source,
            files=tuple(ctx.digests.files()), source_digest=ctx.digests.source(),
            interpreter=self.python, torch_version=torch,
            build_requires=ctx.project.build_requires if ctx.project else (),
            sources=self.sources, jobs=ctx.jobs,
            cuda_archs=project.cuda_archs, nvcc=nvcc_setting(project.nvcc, ctx.env),
            torch_preinstalled=self.torch_preinstalled)
        result: BuildResult = build_wheel(request, workdir=ctx.workdir, uv=ctx.uv, env=ctx.env,
                                          log=self.log("build"), timeout=ctx.timeout(Stage.BUILD))
        self.durations["build"] = result.duration
        self.built = result
        self.record = self.record.but(
            wheel=str(result.wheel) if result.wheel else None, wheel_reused=result.reused,
            built_with_torch=result.torch_version,
            artifact=Artifact(result.wheel.name, sha_file(result.wheel), "built")
            if result.wheel else None)
        if not result.ok:
            details = result.details
            if self.stable_torch() is not None:
                details = (*details, f"this stable-ABI wheel (build key {self.cell.build_key}) "
                           f"is built against torch {torch}: the lowest torch of the cells "
                           "that share it, or project.stable_build_torch, which names another")
            if result.unavailable:  # e.g. no matching nvcc: try again once one is installed
                self.record = self.record.but(inputs="")
                return self.end(Status.UNAVAILABLE, Stage.BUILD, result.reason, details)
            return self.end(Status.FAILED, Stage.BUILD, result.reason, details)
        return self.check_wheel_metadata()

    def check_wheel_metadata(self) -> CellRecord | None:
        """What was resolved came from the metadata read before the build; the wheel's own
        METADATA is the truth. A requirement of the wheel the lock does not satisfy means the
        build changed the metadata (setup.py reading its environment), and the cell would not
        test what users get."""
        assert self.built.wheel is not None
        try:
            built = parse_metadata(read_wheel_metadata(self.built.wheel), "the wheel")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None  # the audit reports an unreadable wheel
        self.record = self.record.but(declared=self.declared(built))
        skip = ("torch",) if self.torch_preinstalled else ()
        problems = wheel_requirement_problems(
            built.requirements(cell_extras(self.cell), self.environment),
            self.record.resolved, self.environment, skip=skip)
        if not problems:
            return None
        return self.end(Status.FAILED, Stage.BUILD, f"the built wheel's metadata differs from what "
                        f"was resolved: {problems[0]}", (*problems, (
                            f"the requirements were read from {self.meta.origin} before the "
                            "build; the build produced others (does setup.py compute them "
                            "from its environment?)")))

    def declared(self, meta: ProjectMeta) -> list[list[str]]:
        """The package's own requirements with the extras in play, and the extra of each."""
        return [[text, extra] for extra, text in
                requirements_by_origin(meta, cell_extras(self.cell), self.environment)]

    def audit(self) -> CellRecord | None:
        start = time.monotonic()
        if self.given is not None:
            # a wheel built elsewhere, judged against the cell's torch where it is installed,
            # for every Python of the cells it was chosen for
            wheel, facts = self.given.path, read_torch_facts(self.venv_python)
            torch_version, torch_cuda, nvcc = facts.version, facts.cuda, None
            lib_dirs: tuple[Path, ...] = ((facts.root / "lib",) if facts.root is not None
                                          and (facts.root / "lib").is_dir() else ())
            pythons = sorted({c.python for c in self.ctx.cells
                              if (s := self.ctx.selections.get(c.id)) is not None
                              and s.wheel == self.given} | {self.cell.python}, key=_version_key)
        else:
            assert self.built.wheel is not None
            wheel, torch_version, torch_cuda = (self.built.wheel, self.built.torch_version,
                                                self.built.torch_cuda)
            lib_dirs, nvcc = self.built.torch_lib_dirs, self.built.cuda_compiled
            # every Python of the cells that share this wheel: an abi3 wheel claims to load
            # on all
            pythons = sorted({c.python for c in self.ctx.cells
                              if c.build_key == self.cell.build_key}, key=_version_key)
        suites = self.ctx.matrix.suites
        log = self.log("audit")
        if self.given is None:
            assert self.built.wheel is not None
            abi_cache = self.built.wheel.parent / "torch-abi.json"
        else:  # one verdict per given wheel, whichever cells test it
            sha = self.record.artifact.sha256 if self.record.artifact is not None else "wheel"
            abi_cache = self.ctx.workdir.root / "torch-abi" / sha / "torch-abi.json"
        report = audit_wheel(wheel, python=self.cell.python, pythons=pythons,
                             compiled_sources=self.ctx.digests.has_compiled_sources(),
                             cuda_sources=self.ctx.digests.cuda_sources(),
                             nvcc_ran=nvcc,
                             cuda_code_optional=self.ctx.matrix.package.cuda_code == "optional",
                             torch_version=torch_version,
                             torch_lib_dirs=lib_dirs,
                             torch_cuda=torch_cuda,
                             gpu_suites={s.name: s.gpu for s in suites if s.gpu},
                             torch_abi=self.ctx.matrix.package.torch_abi,
                             abi_tool=AbiTool(self.ctx.uv, self.ctx.env, log,
                                              timeout=min(120.0, self.ctx.timeout(Stage.AUDIT)),
                                              cache=abi_cache),
                             )
        self.durations["audit"] = time.monotonic() - start
        self.record = self.record.but(audit=report)
        with log.open("a", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in report.torch_abi_lines()) +
                         "".join(f"{line}\n" for line in report.gpu_code_lines()) +
                         "".join(f"{f.severity}: {f.file}: {f.message}\n"
                                 for f in report.findings))
        # errors do not stop the cell: install, identity and suites still run (audit_first)
        self.audit_errors = report.errors
        return None

    def install(self) -> CellRecord | None:
        ctx = self.ctx
        wheel = self.given.path if self.given is not None else self.built.wheel
        assert wheel is not None
        result = install_cell_env(
            ctx.workdir.env(self.cell.id), interpreter=self.python, wheel=wheel,
            lock=ctx.workdir.lock(self.cell.id), sources=self.sources, uv=ctx.uv, env=ctx.env,
            log=self.log("install"), timeout=ctx.timeout(Stage.INSTALL),
            system_site_packages=self.torch_preinstalled)
        self.durations["install"] = result.duration
        self.venv_python = result.python
        if not result.ok:
            return self.end(Status.FAILED, Stage.INSTALL, result.reason, result.details)
        return None

    @property
    def stable_abi(self) -> bool:
        """The wheel is not bound to the torch it was built against: the audit found every
        library that uses torch on its stable ABI only, or (in a stable-ABI project, whose
        cells share one wheel) no library that uses torch at all."""
        audit = self.record.audit
        if audit is None:
            return False
        verdict = audit.torch_abi_verdict
        return verdict == STABLE or (verdict in (NO_TORCH, None)
                                     and self.ctx.matrix.package.torch_abi == "stable")

    def check_running_torch(self) -> None:
        """A stable-ABI wheel built against another torch: its ELF dependencies against the
        torch this cell runs (an audit finding, so the audit keeps every error). A wheel
        built elsewhere was audited against the running torch already."""
        if self.given is not None:
            return
        built = self.built.torch_version
        facts = read_torch_facts(self.venv_python)
        if (not self.stable_abi or self.built.wheel is None or facts.version is None
                or facts.root is None or built is None or same_torch(built, facts.version)):
            return
        found = check_running_torch(self.built.wheel, python=self.cell.python,
                                    torch_version=facts.version,
                                    torch_lib_dirs=(facts.root / "lib",))
        if found and self.record.audit is not None:
            audit = self.record.audit
            self.record = self.record.but(audit=dataclasses.replace(
                audit, findings=(*audit.findings, *found)))
            self.audit_errors = self.record.audit.errors if self.record.audit else ()
            with self.ctx.workdir.log(self.cell.id, "audit").open("a", encoding="utf-8") as log:
                log.write("".join(f"{f.severity}: {f.file}: {f.message} (under the running "
                                  f"torch {facts.version})\n" for f in found))

    def identity(self) -> CellRecord | None:
        start = time.monotonic()
        matrix = self.ctx.matrix
        self.check_running_torch()
        result = check_identity(
            self.venv_python, cell_axes=dict(self.cell.axes),
            package_axes=[a.name for a in matrix.axes if a.kind == "package"],
            import_name=matrix.package.import_name,
            build_torch_attr=matrix.package.build_torch_attr,
            wheel_torch=self.built.torch_version if self.given is None else None,
            log=self.log("identity"),
            timeout=self.ctx.timeout(Stage.IDENTITY), venv=self.ctx.workdir.env(self.cell.id),
            cwd=self.ctx.workdir.neutral(self.cell.id), stable_abi=self.stable_abi)
        self.durations["identity"] = time.monotonic() - start
        self.record = self.record.but(identity=result,
                                      built_with_torch=result.built_with_torch,
                                      running_torch=result.running_torch)
        if result.import_error:
            lines = [line for line in result.import_error.splitlines() if line.strip()]
            why = f"{matrix.package.import_name} does not import: {lines[-1].strip()}"
            if result.built_with_torch or result.running_torch:  # what an ABI break comes from
                why += (f" (built against torch {result.built_with_torch or 'unknown'}, "
                        f"running torch {result.running_torch or 'none'})")
            return self.end(Status.FAILED, Stage.IDENTITY, why, tuple(lines))
        if result.mismatches:
            return self.end(Status.FAILED, Stage.IDENTITY, result.mismatches[0], result.mismatches)
        # a rerun whose tests alone changed may take this venv over, as long as it holds
        mark_venv(self.ctx.workdir.env(self.cell.id), self.record.setup_inputs)
        return None

    def suites(self) -> CellRecord | None:
        ctx, results = self.ctx, {}
        outcomes: list[SuiteResult] = []
        if not ctx.matrix.suites:
            return self.end(Status.FAILED, Stage.SUITES, "matrix.yaml defines no suites: no test "
                            "ran, so nothing shows that the wheel works", (
                                "add a suite, e.g. suites: {tests: {paths: [tests]}}",))
        for suite in ctx.matrix.suites:
            start = time.monotonic()
            outcome = run_suite(
                suite, python=self.venv_python, cell_id=self.cell.id, root=ctx.matrix.root,
                junit=ctx.workdir.junit(self.cell.id, suite.name),
                log=self.log(f"suite-{suite.name}"), workers=_workers(suite.workers, ctx.jobs),
                timeout=float(suite.timeout or ctx.timeout(Stage.SUITE)),
                gpu_problem=cell_kind_problem(suite.gpu, self.cell.value("cuda"), ctx.gpus)
                if suite.gpu else None,
                env=_suite_env(ctx.env), venv=ctx.workdir.env(self.cell.id),
                import_name=ctx.matrix.package.import_name)
            self.durations[f"suite:{suite.name}"] = time.monotonic() - start
            results[suite.name] = outcome
            outcomes.append(outcome)
        self.record = self.record.but(suites=results)
        failed = [o for o in outcomes if o.status is SuiteStatus.FAILED]
        if failed:
            first = failed[0]
            return self.end(Status.FAILED, stage_label(Stage.SUITE, first.name), first.reason,
                            first.first_errors)
        if all(o.status is SuiteStatus.NOT_RUN for o in outcomes):
            # nothing that proves nothing is green: not one test ran in this cell
            return self.end(Status.UNAVAILABLE, stage_label(Stage.SUITE, outcomes[0].name),
                            "no test ran: " + "; ".join(f"{o.name}: {o.reason}"
                                                        for o in outcomes),
                            tuple(f"{o.name}: {o.reason}" for o in outcomes))
        return None

def _workers(setting: str, jobs: int) -> int:
    return max(1, jobs) if setting == "auto" else int(setting)


def _suite_env(env: Mapping[str, str]) -> dict[str, str]:
    # The suites must see only the venv: no PYTHONPATH from the caller, no user site, and not
    # the working directory (the project's root, where a source tree would shadow the wheel;
    # Python >= 3.11 honours PYTHONSAFEPATH, the pytest plugin does the same for older ones).
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")} | {
        "PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1"}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def read_wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist()
                    if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode("utf-8")
