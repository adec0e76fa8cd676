"""One cell, end to end: resolve -> build -> audit -> install -> identity -> suites -> record.

Each stage either hands its result to the next or ends the cell with a record that names the
stage and a reason a person understands. A bug in compatmatrix becomes status ``error`` for
this cell only; the record is always written, atomically.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from .audit import audit_wheel
from .build import BuildRequest, BuildResult, build_wheel, read_torch_facts
from .env import install_cell_env
from .gpu import kind_problem
from .identity import check_identity
from .indexes import index_url_for
from .inputs import ProjectDigests, cell_inputs
from .interpreters import InterpreterFinder
from .plan import Cell
from .project import ProjectMeta, read_project
from .resolve import Resolution, Sources, cell_requirements, choose_sources, resolve_cell
from .results import CellRecord, Status, read_record
from .spec import NONE, PREINSTALLED, Matrix
from .suites import SuiteResult, run_suite
from .toolchain import NVCC_ENV, nvcc_setting
from .workdir import WorkDir

__all__ = ["DEFAULT_TIMEOUTS", "Cancelled", "RunContext", "StageHook", "run_cell"]

StageHook = Callable[[str, str], None]  # (cell id, stage) when a stage starts


class Cancelled(Exception):
    """The run was interrupted: this cell leaves no record, the next run redoes it."""

DEFAULT_TIMEOUTS = {"resolve": 600, "build": 3600, "audit": 300, "install": 1200,
                    "identity": 300, "suite": 1800}


@dataclass(frozen=True)
class RunContext:
    """Everything a cell run needs; built once per invocation and passed down."""

    matrix: Matrix
    cells: tuple[Cell, ...]
    workdir: WorkDir
    env: Mapping[str, str]
    finder: InterpreterFinder
    uv: tuple[str, ...]
    find_links: tuple[str, ...]
    jobs: int
    gpus: tuple[tuple[str, str], ...]
    digests: ProjectDigests
    reproduce_prefix: str = "compatmatrix run"
    force: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)

    def timeout(self, stage: str) -> float:
        return float(dict(self.matrix.timeouts).get(stage, DEFAULT_TIMEOUTS[stage]))


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
    matrix_arg = "" if ctx.matrix.path == Path.cwd() / "matrix.yaml" else \
        f" --matrix {shlex.quote(_relative(ctx.matrix.path))}"
    return CellRecord(cell=cell.id, axes=axes, status=Status.ERROR, build_key=cell.build_key,
                      reproduce=f"{ctx.reproduce_prefix}{matrix_arg} --cell {cell.id}")


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


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

    def end(self, status: Status, stage: str | None, reason: str,
            details: tuple[str, ...] = ()) -> CellRecord:
        self.record = self.record.but(status=status, stage=stage, reason=reason,
                                      details=details, durations=dict(self.durations),
                                      logs=dict(self.logs))
        return self.record

    def run(self) -> CellRecord:
        for step in (self.interpreter, self.resolve, self.reuse, self.build, self.audit,
                     self.install, self.identity, self.suites):
            final = step()
            if final is not None:
                return final
        return self.end(Status.PASSED, None, "")

    # -- stages ---------------------------------------------------------------------------

    def interpreter(self) -> CellRecord | None:
        found = self.ctx.finder.find(self.cell.python)
        if found.path is None:
            return self.end(Status.UNAVAILABLE, "resolve", found.problem)
        self.python = found.path
        self.record = self.record.but(interpreter=f"{found.path} ({found.full_version})")
        return None

    def reuse(self) -> CellRecord | None:
        """The previous record, when nothing this cell depends on has changed."""
        ctx = self.ctx
        inputs = cell_inputs(ctx.matrix, ctx.digests, axes=dict(self.cell.axes),
                             build_key=self.cell.build_key,
                             interpreter=str(self.record.interpreter),
                             pins=self.record.resolved, gpus=ctx.gpus,
                             machine=self.machine_inputs())
        self.record = self.record.but(inputs=inputs)
        previous = read_record(ctx.workdir.record(self.cell.id))
        if (ctx.force or previous is None or previous.inputs != inputs
                or previous.status is Status.ERROR):
            return None
        if self.on_stage is not None:
            self.on_stage(self.cell.id, "reused")
        return previous.but(reused=True)

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
        return found

    def resolve(self) -> CellRecord | None:
        ctx, log = self.ctx, self.log("resolve")
        self.meta: ProjectMeta = read_project(ctx.matrix.project.path)
        variant = self.cell.value("cuda")
        index_url = index_url_for(ctx.matrix.indexes, variant)
        self.sources: Sources = choose_sources(index_url, ctx.find_links)
        if self.sources.note:
            with log.open("a", encoding="utf-8") as handle:
                handle.write(f"[compatmatrix] {self.sources.note}; using find-links only\n")
        reqs = cell_requirements(ctx.matrix, self.cell, self.meta, index_url)
        result: Resolution = resolve_cell(
            reqs, uv=ctx.uv, interpreter=self.python, sources=self.sources,
            lock=ctx.workdir.lock(self.cell.id), log=log, env=ctx.env,
            timeout=ctx.timeout("resolve"),
            preinstalled=("torch",) if self.torch_preinstalled else ())
        self.durations["resolve"] = result.duration
        self.record = self.record.but(resolved=result.pins)
        if result.status == "ok":
            return None
        self.record = self.record.but(inputs="")  # nothing to compare: resolve again next time
        status = {"incompatible": Status.INCOMPATIBLE,
                  "unavailable": Status.UNAVAILABLE}.get(result.status, Status.FAILED)
        reason = {"incompatible": "the pins cannot be installed together",
                  "unavailable": "a package index or build is not available here"}.get(
            result.status, "uv could not resolve the requirements")
        return self.end(status, "resolve", reason, tuple(result.explanation.splitlines()))

    def build(self) -> CellRecord | None:
        ctx = self.ctx
        torch = self.record.resolved.get("torch")
        project = ctx.matrix.project
        request = BuildRequest(
            build_key=self.cell.build_key, project=project.path,
            exclude=tuple(ctx.matrix.root / p for s in ctx.matrix.suites for p in s.paths),
            interpreter=self.python, torch_version=torch,
            build_requires=self.meta.build_requires, sources=self.sources, jobs=ctx.jobs,
            cuda_archs=project.cuda_archs, nvcc=nvcc_setting(project.nvcc, ctx.env),
            torch_preinstalled=self.torch_preinstalled)
        result: BuildResult = build_wheel(request, workdir=ctx.workdir, uv=ctx.uv, env=ctx.env,
                                          log=self.log("build"), timeout=ctx.timeout("build"))
        self.durations["build"] = result.duration
        self.built = result
        self.record = self.record.but(
            wheel=str(result.wheel) if result.wheel else None, wheel_reused=result.reused,
            built_with_torch=result.torch_version)
        if not result.ok:
            if result.unavailable:  # e.g. no matching nvcc: try again once one is installed
                self.record = self.record.but(inputs="")
                return self.end(Status.UNAVAILABLE, "build", result.reason, result.details)
            return self.end(Status.FAILED, "build", result.reason, result.details)
        return None

    def audit(self) -> CellRecord | None:
        start = time.monotonic()
        assert self.built.wheel is not None
        # every Python the matrix covers: an abi3 wheel claims to load on all of them
        pythons = sorted({c.python for c in self.ctx.cells}, key=_version_key)
        suites = self.ctx.matrix.suites
        report = audit_wheel(self.built.wheel, python=self.cell.python, pythons=pythons,
                             torch_version=self.built.torch_version,
                             torch_lib_dirs=self.built.torch_lib_dirs,
                             torch_cuda=self.built.torch_cuda,
                             gpu_suites={s.name: s.gpu for s in suites if s.gpu},
                             expect_gpu_code=self.built.cuda_compiled)
        self.durations["audit"] = time.monotonic() - start
        self.record = self.record.but(audit=report.to_json())
        log = self.log("audit")
        log.write_text("".join(f"{line}\n" for line in report.gpu_code_lines()) +
                       "".join(f"{f.severity}: {f.file}: {f.message}\n"
                               for f in report.findings), encoding="utf-8")
        errors = [f for f in report.findings if f.severity == "error"]
        if errors:
            return self.end(Status.FAILED, "audit", errors[0].message,
                            tuple(f"{f.file}: {f.message}" for f in errors))
        return None

    def install(self) -> CellRecord | None:
        ctx = self.ctx
        assert self.built.wheel is not None
        result = install_cell_env(
            ctx.workdir.env(self.cell.id), interpreter=self.python, wheel=self.built.wheel,
            lock=ctx.workdir.lock(self.cell.id), sources=self.sources, uv=ctx.uv, env=ctx.env,
            log=self.log("install"), timeout=ctx.timeout("install"),
            system_site_packages=self.torch_preinstalled)
        self.durations["install"] = result.duration
        self.venv_python = result.python
        if not result.ok:
            return self.end(Status.FAILED, "install", result.reason, result.details)
        return None

    def identity(self) -> CellRecord | None:
        start = time.monotonic()
        matrix = self.ctx.matrix
        result = check_identity(
            self.venv_python, cell_axes=dict(self.cell.axes),
            package_axes=[a.name for a in matrix.axes if a.kind == "package"],
            import_name=matrix.project.import_name,
            build_torch_attr=matrix.project.build_torch_attr,
            wheel_torch=self.built.torch_version, log=self.log("identity"),
            timeout=self.ctx.timeout("identity"))
        self.durations["identity"] = time.monotonic() - start
        self.record = self.record.but(identity=result.to_json(),
                                      built_with_torch=result.built_with_torch,
                                      running_torch=result.running_torch)
        if result.import_error:
            return self.end(Status.FAILED, "identity",
                            f"{matrix.project.import_name} does not import (built against "
                            f"torch {result.built_with_torch}, running torch "
                            f"{result.running_torch})", tuple(result.import_error.splitlines()))
        if result.mismatches:
            return self.end(Status.FAILED, "identity", result.mismatches[0], result.mismatches)
        return None

    def suites(self) -> CellRecord | None:
        ctx, results = self.ctx, {}
        failed: list[SuiteResult] = []
        for suite in ctx.matrix.suites:
            start = time.monotonic()
            outcome = run_suite(
                suite, python=self.venv_python, cell_id=self.cell.id, root=ctx.matrix.root,
                junit=ctx.workdir.junit(self.cell.id, suite.name),
                log=self.log(f"suite-{suite.name}"), workers=_workers(suite.workers, ctx.jobs),
                timeout=float(suite.timeout or ctx.timeout("suite")),
                gpu_problem=kind_problem(suite.gpu, ctx.gpus) if suite.gpu else None,
                env=_suite_env(ctx.env))
            self.durations[f"suite:{suite.name}"] = time.monotonic() - start
            results[suite.name] = outcome.to_json()
            if outcome.status == "failed":
                failed.append(outcome)
        self.record = self.record.but(suites=results)
        if failed:
            first = failed[0]
            return self.end(Status.FAILED, f"suite:{first.name}", first.reason,
                            first.first_errors)
        return None


def _workers(setting: str, jobs: int) -> int:
    return max(1, jobs) if setting == "auto" else int(setting)


def _suite_env(env: Mapping[str, str]) -> dict[str, str]:
    # The suites must see only the venv: no PYTHONPATH from the caller, no user site.
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")} | {
        "PYTHONNOUSERSITE": "1"}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def package_axes(matrix: Matrix) -> list[str]:
    return [canonicalize_name(a.name) for a in matrix.axes if a.kind == "package"]
