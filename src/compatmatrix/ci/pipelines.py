"""CI pipelines from the matrix: GitHub Actions and Buildkite, GPU cells on GPU runners.

Both pipelines have one shape. A plan step reads matrix.yaml when the pipeline runs and fans
out one job per cell, on the runner its suites need (``ci.runners``: ``cpu`` and each GPU
kind); each cell job runs the cell's nox session and uploads its record, JUnit files and
logs, even when it failed; a final job gathers them, writes the report, runs the gate and,
on the default branch only, commits ``reports/`` back.

The committed files (``.github/workflows/compat-matrix.yml``, ``.buildkite/pipeline.yml``)
are generated here and :func:`stale_pipelines` says when they no longer match the matrix.
Every value that reaches a YAML file or a shell line is checked first (cell ids, axis values,
runner labels, queues, the matrix file name, the branch); values known only at run time
travel through environment variables, never through templates, so no matrix value can
inject a command.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from compatmatrix._text import short_hash
from compatmatrix.errors import CIError
from compatmatrix.host.gpu import KNOWN_KINDS
from compatmatrix.host.safeio import write_atomic
from compatmatrix.model.plan import Cell, plan_cells
from compatmatrix.model.spec import SAFE_VALUE, SAFE_WORD, Matrix, Runner

__all__ = [
    "BUILDKITE_PIPELINE",
    "BUILDKITE_RELEASE_PIPELINE",
    "GITHUB_MATRIX_LIMIT",
    "GITHUB_RELEASE_WORKFLOW",
    "GITHUB_WORKFLOW",
    "CIError",
    "PipelineFile",
    "Route",
    "buildkite_key",
    "buildkite_steps",
    "check_cell",
    "github_matrix",
    "github_parts",
    "gpu_kind",
    "pipeline_files",
    "routes",
    "stale_pipelines",
    "write_pipelines",
]

GITHUB_WORKFLOW = Path(".github/workflows/compat-matrix.yml")
BUILDKITE_PIPELINE = Path(".buildkite/pipeline.yml")
# The release flow (ci --wheels-artifact NAME): test the wheels a build job made, then gate
GITHUB_RELEASE_WORKFLOW = Path(".github/workflows/compat-release.yml")
BUILDKITE_RELEASE_PIPELINE = Path(".buildkite/release.yml")
WHEELS = "wheels"  # the folder the wheels are downloaded into, beside matrix.yaml
GITHUB_MATRIX_LIMIT = 256  # GitHub Actions runs at most this many jobs per matrix
CPU = "cpu"
SYSTEMS = ("github", "buildkite")
TOOL_PYTHON = "3.12"  # runs compatmatrix and nox; a cell's own Python is set up beside it
HELPER_TIMEOUT = 30   # at most, for the plan, report and publish jobs
VENV = ".compat-venv"  # Buildkite agents: compatmatrix in a venv, never in the system Python
WORKDIR = ".compatmatrix"  # the default work directory, beside matrix.yaml
ARTIFACTS = "artifacts"
REGENERATE = "run `nox -s ci` (or `compatmatrix ci`) and commit the result"

# Pinned by full commit SHA: a tag can be moved, a commit cannot.
ACTIONS = {
    "checkout": ("actions/checkout", "11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "setup-python": ("actions/setup-python", "a26af69be951a213d495a4c3e4e4022e16d87065",
                     "v5.6.0"),
    "upload-artifact": ("actions/upload-artifact", "ea165f8d65b6e75b540449e92b4886f43607fa02",
                        "v4.6.2"),
    "download-artifact": ("actions/download-artifact",
                          "d3f86a106a0bac45b974a628896c90dbdf5c8093", "v4.3.0"),
}

# Cell ids, axis names, runner labels, queues and file names: a shell word that is never an
# option (no leading '-') nor a path of its own ('.', '..').
# Axis values (versions, specifiers, variants, extras) reach YAML and JSON only, never a shell
# line, but nothing that could mean something to a shell gets through either. matrix.yaml's
# parser refuses the same, with the place; this is the generator's own check.
_WORD = SAFE_WORD
_VALUE = SAFE_VALUE
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")
_KEY_MAX = 100  # Buildkite step keys: [a-zA-Z0-9_:-], at most 100 characters




# --- where each cell runs ----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Where one cell runs: ``kind`` is ``cpu`` or the GPU kind its suites need."""

    cell: Cell
    kind: str
    labels: tuple[str, ...]   # GitHub runner labels
    queue: str | None         # Buildkite agent queue; None: the default queue (CPU only)


def routes(matrix: Matrix, systems: Sequence[str] = SYSTEMS) -> list[Route]:
    """Every planned cell with its runner, checked safe; unmapped GPU kinds are errors."""
    gpu = gpu_kind(matrix)
    why = ", ".join(f"suite {s.name!r} needs {s.gpu!r}" for s in matrix.suites if s.gpu)
    runners = dict(matrix.ci.runners)
    found = []
    for cell in plan_cells(matrix):
        check_cell(cell)
        kind = gpu if gpu is not None and _uses_cuda(cell) else CPU
        found.append(_route(cell, kind, runners.get(kind), systems, why))
    if not found:
        raise CIError("the matrix plans no cells: there is nothing to run in CI")
    return found


def gpu_kind(matrix: Matrix) -> str | None:
    """The GPU kind a CUDA cell runs on: one that serves every GPU suite (None: no GPU suite).

    All suites run in every cell, and a cell runs on one machine, so that machine must serve
    each suite's kind (an ``h100`` runner serves a suite asking for any ``cuda`` GPU).
    """
    needed = {suite.gpu for suite in matrix.suites if suite.gpu}
    if not needed:
        return None
    serving = sorted(kind for kind in needed if all(_serves(kind, want) for want in needed))
    if not serving:
        suites = ", ".join(f"{s.name} ({s.gpu})" for s in matrix.suites if s.gpu)
        raise CIError(f"the suites need GPU kinds no one runner is known to serve: {suites}; "
                      "a cell runs on one runner, so give its GPU suites one kind")
    return serving[0]


def _serves(kind: str, want: str) -> bool:
    if kind == want:
        return True
    have, need = KNOWN_KINDS.get(kind), KNOWN_KINDS.get(want)
    if have is None or need is None or have.major is None:
        return False
    return need.major is None or (need.major == have.major and need.minor in (None, have.minor))


def _uses_cuda(cell: Cell) -> bool:
    # CPU and ROCm builds of torch cannot use an NVIDIA GPU: such cells stay on CPU runners.
    # Without a cuda axis, torch is PyPI's default build, which is a CUDA one.
    variant = cell.value("cuda")
    return variant is None or variant.startswith("cu")


def _route(cell: Cell, kind: str, runner: Runner | None, systems: Sequence[str],
           why: str) -> Route:
    labels = runner.github if runner is not None else ()
    queue = runner.buildkite if runner is not None else None
    if "github" in systems and not labels:
        raise CIError(_unmapped(cell, kind, "github", f"[self-hosted, linux, x64, {kind}]", why))
    if "buildkite" in systems and queue is None and kind != CPU:
        raise CIError(_unmapped(cell, kind, "buildkite", kind, why))
    for label in labels:
        _check_word(label, f"ci.runners.{kind}.github label")
    if queue is not None:
        _check_word(queue, f"ci.runners.{kind}.buildkite")
    return Route(cell, kind, labels, queue)


def _unmapped(cell: Cell, kind: str, system: str, example: str, why: str) -> str:
    needs = "a CPU runner" if kind == CPU else f"a runner with GPU kind {kind!r} ({why})"
    return (f"cell {cell.id} needs {needs}, and matrix.yaml maps none for {system}\n"
            f"  hint: add ci.runners.{kind}.{system}: {example}")


def check_cell(cell: Cell) -> None:
    """Refuse a cell whose id or axis values could mean something to YAML or a shell."""
    if not _WORD.fullmatch(cell.id):
        raise CIError(f"cell id {cell.id!r} is not safe in a CI job key or a shell word "
                      "(letters, digits, '.', '_', '-', not starting with '.' or '-')")
    for axis, value in cell.axes:
        if not _WORD.fullmatch(axis) or not _VALUE.fullmatch(value):
            raise CIError(f"cell {cell.id}: {axis}={value!r} is not safe in a pipeline file "
                          "(versions, specifiers, variants and extras only)")


def _check_word(text: str, what: str) -> str:
    if not _WORD.fullmatch(text):
        raise CIError(f"{what} {text!r} is not safe in a pipeline file "
                      "(letters, digits, '.', '_', '-', not starting with '.' or '-')")
    return text


@dataclass(frozen=True)
class _Settings:
    """What the generated pipelines need besides the cells, all checked safe."""

    matrix_file: str         # matrix.yaml's name: pipelines run in its folder
    install: str             # what pip installs to get compatmatrix
    timeout: int             # minutes per cell job
    branch: str              # the default branch: its pushes run the matrix and publish
    cpu_labels: tuple[str, ...]
    cpu_queue: str | None
    # the release flow: the artifact that holds the wheels (GitHub: its name; Buildkite: the
    # folder its *.whl were uploaded from); None: the cells build the wheels themselves
    wheels_artifact: str | None = None

    @property
    def helper_timeout(self) -> int:
        """Minutes for the plan, report and publish jobs: they build nothing."""
        return min(HELPER_TIMEOUT, self.timeout)


def _settings(matrix: Matrix, branch: str, systems: Sequence[str] = SYSTEMS,
              wheels_artifact: str | None = None) -> _Settings:
    if not _BRANCH.fullmatch(branch) or ".." in branch:
        raise CIError(f"default branch {branch!r} is not a safe branch name")
    cpu = dict(matrix.ci.runners).get(CPU) or Runner((), None)
    if "github" in systems and not cpu.github:
        raise CIError("the plan, report and publish jobs run on CPU runners, and matrix.yaml "
                      "maps none for github\n  hint: add ci.runners.cpu.github: [ubuntu-latest]")
    return _Settings(
        matrix_file=_check_word(matrix.path.name, "the matrix file name"),
        install=matrix.ci.install, timeout=matrix.ci.timeout_minutes,
        branch=branch,
        cpu_labels=tuple(_check_word(x, "ci.runners.cpu.github label") for x in cpu.github),
        cpu_queue=_check_word(cpu.buildkite, "ci.runners.cpu.buildkite")
        if cpu.buildkite is not None else None,
        wheels_artifact=_check_word(wheels_artifact, "--wheels-artifact")
        if wheels_artifact is not None else None)


# --- GitHub Actions ----------------------------------------------------------------------


def github_parts(cells: int) -> int:
    """How many matrix jobs hold ``cells`` cells at GitHub's 256 jobs per matrix."""
    return max(1, -(-cells // GITHUB_MATRIX_LIMIT))


def github_matrix(matrix: Matrix, part: tuple[int, int] | None = None) -> str:
    """One line of JSON for ``strategy.matrix`` through ``fromJSON``: ``{"include": [...]}``.

    ``part`` (index, count) takes the index-th of that many contiguous slices, for matrices
    beyond 256 cells; the workflow from ``nox -s ci`` has one matrix job per part.
    """
    entries = [{"cell": r.cell.id, "python": r.cell.python, "labels": list(r.labels),
                "runner": r.kind} for r in routes(matrix, ("github",))]
    chosen = _part(entries, part) if part is not None else entries
    if part is None and len(entries) > GITHUB_MATRIX_LIMIT:
        count = github_parts(len(entries))
        raise CIError(f"{len(entries)} cells are more than the {GITHUB_MATRIX_LIMIT} jobs a "
                      f"GitHub Actions matrix may hold: ask for them in {count} parts "
                      f"(--part 1/{count} ... --part {count}/{count}), as the workflow from "
                      "`nox -s ci` does")
    return json.dumps({"include": chosen}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def _part(entries: list[dict[str, Any]], part: tuple[int, int]) -> list[dict[str, Any]]:
    index, count = part
    if not 1 <= index <= count:
        raise CIError(f"--part {index}/{count}: expected I/N with 1 <= I <= N")
    chosen = entries[(index - 1) * len(entries) // count:index * len(entries) // count]
    if len(chosen) > GITHUB_MATRIX_LIMIT:
        raise CIError(f"part {index}/{count} would hold {len(chosen)} cells, more than the "
                      f"{GITHUB_MATRIX_LIMIT} a GitHub Actions matrix may hold: the matrix "
                      f"has outgrown the workflow; {REGENERATE}")
    if not chosen:
        raise CIError(f"part {index}/{count} is empty: the matrix has shrunk below the "
                      f"workflow's {count} parts; {REGENERATE}")
    return chosen


def _github_workflow(s: _Settings, found: Sequence[Route]) -> dict[str, Any]:
    parts = github_parts(len(found))
    cell_jobs = ["cells"] if parts == 1 else [f"cells-{i}" for i in range(1, parts + 1)]
    jobs: dict[str, Any] = {"plan": _plan_job(s, parts)}
    for index, job in enumerate(cell_jobs, 1):
        jobs[job] = _cell_job(s, _output(index, parts))
    jobs["report"] = _report_job(s, cell_jobs)
    jobs["publish"] = _publish_job(s)
    return {
        "name": "compat matrix",
        "on": {"push": {"branches": [s.branch]}, "pull_request": None,
               "workflow_dispatch": None},
        "permissions": {"contents": "read"},
        # a newer commit of a pull request cancels the older run; on the default branch runs
        # queue instead, so every pushed state is reported
        "concurrency": {
            "group": "${{ github.workflow }}-${{ github.event.pull_request.number || github.ref }}",
            "cancel-in-progress": "${{ github.event_name == 'pull_request' }}"},
        "defaults": {"run": {"shell": "bash"}},  # bash -eo pipefail: a failed pipe fails
        "jobs": jobs,
    }


def _github_release_workflow(s: _Settings, found: Sequence[Route]) -> dict[str, Any]:
    """A reusable workflow (``on: workflow_call``): the cells test the wheels in the caller's
    artifact, then report and gate. The caller uploads the wheels only when this passes."""
    parts = github_parts(len(found))
    cell_jobs = ["cells"] if parts == 1 else [f"cells-{i}" for i in range(1, parts + 1)]
    jobs: dict[str, Any] = {"plan": _plan_job(s, parts)}
    for index, job in enumerate(cell_jobs, 1):
        jobs[job] = _cell_job(s, _output(index, parts), wheels=True)
    jobs["report"] = _report_job(s, cell_jobs)
    return {
        "name": "compat matrix (release wheels)",
        "on": {"workflow_call": {"inputs": {"wheels-artifact": {
            "description": "the artifact of the calling run that holds the wheels to test",
            "type": "string", "required": False, "default": s.wheels_artifact}}}},
        "permissions": {"contents": "read"},
        "defaults": {"run": {"shell": "bash"}},
        "jobs": jobs,
    }


def _output(index: int, parts: int) -> str:
    return "matrix" if parts == 1 else f"matrix-{index}"


def _plan_job(s: _Settings, parts: int) -> dict[str, Any]:
    lines = []
    for index in range(1, parts + 1):
        part = f" --part {index}/{parts}" if parts > 1 else ""
        # an assignment of its own: with bash -e a failing plan stops the step
        lines += [f'cells="$(compatmatrix plan --matrix {s.matrix_file} --github-matrix{part})"',
                  f'echo "{_output(index, parts)}=$cells" >> "$GITHUB_OUTPUT"']
    return {
        "name": "plan", "runs-on": list(s.cpu_labels), "timeout-minutes": s.helper_timeout,
        "outputs": {_output(i, parts): f"${{{{ steps.plan.outputs.{_output(i, parts)} }}}}"
                    for i in range(1, parts + 1)},
        "steps": [*_setup_steps(s, TOOL_PYTHON),
                  {"name": "plan the cells", "id": "plan", "run": _script(lines)}],
    }


def _cell_job(s: _Settings, output: str, *, wheels: bool = False) -> dict[str, Any]:
    cell = "${{ matrix.cell }}"
    paths = [f"{WORKDIR}/results/{cell}.json", f"{WORKDIR}/junit/{cell}/",
             f"{WORKDIR}/logs/{cell}/"]
    run: list[dict[str, Any]] = [
        {"name": "run the cell", "env": {"COMPATMATRIX_CELL": cell},
         "run": 'python -m nox -s "$COMPATMATRIX_CELL"'}]
    if wheels:  # the caller's wheels, tested as they are: nothing is built
        run = [{"name": "download the wheels", "uses": _action("download-artifact"),
                "with": {"name": "${{ inputs.wheels-artifact }}", "path": WHEELS}},
               {"name": "test the cell's wheel", "env": {"COMPATMATRIX_CELL": cell},
                "run": f"compatmatrix run --matrix {s.matrix_file} --wheels {WHEELS} "
                       '--cell "$COMPATMATRIX_CELL"'}]
    return {
        "name": cell, "needs": "plan", "runs-on": "${{ matrix.labels }}",
        "timeout-minutes": s.timeout,
        "strategy": {"fail-fast": False,
                     "matrix": f"${{{{ fromJSON(needs.plan.outputs.{output}) }}}}"},
        "steps": [
            *_setup_steps(s, "${{ matrix.python }}", TOOL_PYTHON),
            *run,
            {"name": "upload the record, JUnit files and logs", "if": "${{ always() }}",
             "uses": _action("upload-artifact"),
             # several paths: the artifact is rooted at their common folder, .compatmatrix/,
             # so it holds results/, junit/ and logs/ like a work directory
             "with": {"name": cell, "path": _script(paths), "include-hidden-files": True,
                      "if-no-files-found": "warn"}},
        ],
    }


def _report_job(s: _Settings, cell_jobs: list[str]) -> dict[str, Any]:
    results = f"--matrix {s.matrix_file} --from {ARTIFACTS}"
    return {
        "name": "report and gate", "needs": ["plan", *cell_jobs],
        # after failed cells too, but not when the run was cancelled or never planned
        "if": "${{ !cancelled() && needs.plan.result == 'success' }}",
        "runs-on": list(s.cpu_labels), "timeout-minutes": s.helper_timeout,
        "steps": [
            *_setup_steps(s, TOOL_PYTHON), _download_step(),
            {"name": "write the report", "run": _script([
                f"mkdir -p {ARTIFACTS}", f"compatmatrix report {results}",
                'cat reports/compatibility.md >> "$GITHUB_STEP_SUMMARY"'])},
            {"name": "upload the report", "uses": _action("upload-artifact"),
             "with": {"name": "compatibility-report", "path": "reports/"}},
            {"name": "gate", "run": f"compatmatrix gate {results}"},
        ],
    }


def _publish_job(s: _Settings) -> dict[str, Any]:
    # Only after a passing gate: the committed report is the next run's baseline, and
    # committing a regression would hide it from the gate from then on.
    condition = ("!cancelled() && needs.report.result == 'success' && "
                 "github.event_name == 'push' && "
                 "github.ref_name == github.event.repository.default_branch")
    return {
        "name": "publish the report", "needs": "report", "if": f"${{{{ {condition} }}}}",
        "runs-on": list(s.cpu_labels), "timeout-minutes": s.helper_timeout,
        "permissions": {"contents": "write"},
        "concurrency": {"group": "compat-matrix-publish", "cancel-in-progress": False},
        "steps": [
            *_setup_steps(s, TOOL_PYTHON, persist_credentials=True), _download_step(),
            {"name": "commit reports/ back", "env": {"BRANCH": "${{ github.ref_name }}"},
             "run": _script([f"mkdir -p {ARTIFACTS}",
                             f"compatmatrix publish --matrix {s.matrix_file} "
                             f'--from {ARTIFACTS} --branch "$BRANCH"'])},
        ],
    }


def _setup_steps(s: _Settings, *pythons: str,
                 persist_credentials: bool = False) -> list[dict[str, Any]]:
    versions = _script(list(pythons)) if len(pythons) > 1 else pythons[0]
    return [
        {"name": "check out", "uses": _action("checkout"),
         "with": {"persist-credentials": persist_credentials}},
        {"name": "set up Python", "uses": _action("setup-python"),
         "with": {"python-version": versions}},  # the last one listed is `python`
        {"name": "install compatmatrix", "run": f"python -m pip install {shlex.quote(s.install)}"},
    ]


def _download_step() -> dict[str, Any]:
    # every artifact of the run, each into artifacts/<name>/: report --from reads that
    return {"name": "download the cells' artifacts", "uses": _action("download-artifact"),
            "with": {"path": ARTIFACTS}}


def _action(name: str) -> str:
    repo, sha, _ = ACTIONS[name]
    return f"{repo}@{sha}"


def _script(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


# --- Buildkite ---------------------------------------------------------------------------


def buildkite_key(cell_id: str) -> str:
    """A step key for a cell: Buildkite keys allow ``[a-zA-Z0-9_:-]``, so dots become ``_``."""
    key = "cell-" + cell_id.replace(".", "_")
    return key if len(key) <= _KEY_MAX else f"{key[:_KEY_MAX - 7]}-{short_hash(cell_id)}"


def buildkite_steps(matrix: Matrix, wheels_artifact: str | None = None) -> str:
    """The steps ``compatmatrix plan --buildkite`` prints for ``buildkite-agent pipeline
    upload``: a group of cell steps, a wait that continues on failure, report and publish.
    With ``wheels_artifact`` (a folder the build step uploaded ``*.whl`` from) the cells test
    those wheels, and nothing is published: report and gate judge the release."""
    # Buildkite reads its branch at run time
    s = _settings(matrix, "main", ("buildkite",), wheels_artifact)
    found = routes(matrix, ("buildkite",))
    return _dump({"steps": [
        {"group": ":test_tube: compat matrix cells", "key": "compat-cells",
         "steps": [_cell_step(s, route, key) for route, key in _keys(found)]},
        {"wait": None, "continue_on_failure": True},
        _report_step(s),
        *([] if s.wheels_artifact else [_publish_step(s)]),
    ]}, _TildeDumper)


def _keys(found: Sequence[Route]) -> list[tuple[Route, str]]:
    seen: set[str] = set()
    pairs = []
    for route in found:
        key = buildkite_key(route.cell.id)
        if key in seen:  # two ids that differ only in '.' against '_'
            key = f"{key[:_KEY_MAX - 7]}-{short_hash(route.cell.id)}"
        seen.add(key)
        pairs.append((route, key))
    return pairs


def _cell_step(s: _Settings, route: Route, key: str) -> dict[str, Any]:
    cell = route.cell.id
    step: dict[str, Any] = {"label": cell, "key": key}
    if route.queue is not None:
        step["agents"] = {"queue": route.queue}
    # $$: Buildkite interpolates $VAR when the steps are uploaded; the shell must see it
    run = ['python -m nox -s "$$COMPATMATRIX_CELL"']
    if s.wheels_artifact:  # the build step's wheels, tested as they are
        run = [f"buildkite-agent artifact download '{s.wheels_artifact}/*.whl' {WHEELS}/",
               f"compatmatrix run --matrix {s.matrix_file} --wheels "
               f'{WHEELS}/{s.wheels_artifact} --cell "$$COMPATMATRIX_CELL"']
    step.update({
        "env": {"COMPATMATRIX_CELL": cell},
        "commands": [*_venv_commands(s), *run],
        "artifact_paths": [f"{WORKDIR}/results/{cell}.json", f"{WORKDIR}/junit/{cell}/**/*",
                           f"{WORKDIR}/logs/{cell}/**/*"],
        "timeout_in_minutes": s.timeout,
    })
    return step


def _report_step(s: _Settings) -> dict[str, Any]:
    results = f"--matrix {s.matrix_file} --from {ARTIFACTS}/{WORKDIR}"
    gate_and_annotate = _script([
        f"if compatmatrix gate {results}; then style=success; else style=error; fi",
        'buildkite-agent annotate --style "$$style" --context compat '
        "< reports/compatibility.md",
        'test "$$style" = success'])
    return {**_helper_step(s, ":bar_chart: report and gate", "compat-report"),
            "commands": [*_venv_commands(s), *_download_commands(),
                         f"compatmatrix report {results}", gate_and_annotate],
            "artifact_paths": ["reports/*"]}


def _publish_step(s: _Settings) -> dict[str, Any]:
    # the agent's own git credentials push; nothing secret is in this file
    return {**_helper_step(s, ":git: publish the report", "compat-publish"),
            "depends_on": "compat-report",
            "if": "build.branch == pipeline.default_branch && build.pull_request.id == null",
            "concurrency": 1, "concurrency_group": "compat-matrix-publish",
            "commands": [*_venv_commands(s), *_download_commands(),
                         f"compatmatrix publish --matrix {s.matrix_file} "
                         f'--from {ARTIFACTS}/{WORKDIR} --branch "$$BUILDKITE_BRANCH"']}


def _helper_step(s: _Settings, label: str, key: str) -> dict[str, Any]:
    step: dict[str, Any] = {"label": label, "key": key}
    if s.cpu_queue is not None:
        step["agents"] = {"queue": s.cpu_queue}
    step["timeout_in_minutes"] = s.helper_timeout
    return step


def _venv_commands(s: _Settings) -> list[str]:
    # commands run as one script, so the activated venv holds for the ones after
    return [f"python3 -m venv {VENV}", f". {VENV}/bin/activate",
            f"python -m pip install --quiet {shlex.quote(s.install)}"]


def _download_commands() -> list[str]:
    # Each artifact comes back at the path it was uploaded from, so the cells' files merge
    # into one work directory, artifacts/.compatmatrix/. Nothing to download is not an
    # error here: the report then shows every cell as missing, and the gate judges that.
    return [f"mkdir -p {ARTIFACTS}/{WORKDIR}",
            *(f"buildkite-agent artifact download '{WORKDIR}/{what}/*' {ARTIFACTS} "
              f'|| echo "no {what} artifacts"' for what in ("results", "junit"))]


def _buildkite_pipeline(s: _Settings) -> dict[str, Any]:
    wheels = f" --wheels-artifact {s.wheels_artifact}" if s.wheels_artifact else ""
    upload = (f"compatmatrix plan --matrix {s.matrix_file} --buildkite{wheels} "
              "| buildkite-agent pipeline upload")
    return {"steps": [{**_helper_step(s, ":pipeline: plan the compat matrix", "compat-plan"),
                       "commands": [*_venv_commands(s), f"set -o pipefail; {upload}"]}]}


# --- the files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineFile:
    path: Path   # beside matrix.yaml: .github/workflows/… or .buildkite/…
    text: str


def pipeline_files(matrix: Matrix, branch: str = "main",
                   wheels_artifact: str | None = None) -> list[PipelineFile]:
    """The GitHub workflow and the static Buildkite pipeline for ``matrix``; with
    ``wheels_artifact``, also the release flow's (a reusable workflow and a pipeline to
    upload after the build step), which test that artifact's wheels."""
    s = _settings(matrix, branch)
    found = routes(matrix)
    github = lambda r: "[" + ", ".join(r.labels) + "]"  # noqa: E731
    buildkite = lambda r: r.queue or "the default queue"  # noqa: E731
    workflow = _header("GitHub Actions", s, found, github)
    workflow += _dump(_github_workflow(s, found), _Dumper)
    pipeline = _header("Buildkite", s, found, buildkite)
    pipeline += _dump(_buildkite_pipeline(s), _TildeDumper)
    files = [PipelineFile(matrix.root / GITHUB_WORKFLOW, workflow),
             PipelineFile(matrix.root / BUILDKITE_PIPELINE, pipeline)]
    if wheels_artifact is not None:
        release = _settings(matrix, branch, wheels_artifact=wheels_artifact)
        option = f" --wheels-artifact {release.wheels_artifact}"
        workflow = _header("GitHub Actions", release, found, github, option)
        workflow += _dump(_github_release_workflow(release, found), _Dumper)
        pipeline = _header("Buildkite", release, found, buildkite, option)
        pipeline += _dump(_buildkite_pipeline(release), _TildeDumper)
        files += [PipelineFile(matrix.root / GITHUB_RELEASE_WORKFLOW, workflow),
                  PipelineFile(matrix.root / BUILDKITE_RELEASE_PIPELINE, pipeline)]
    return files


def write_pipelines(files: Sequence[PipelineFile]) -> list[Path]:
    """Write each file whose bytes differ; return those written."""
    written = []
    for file in files:
        if not _current(file):
            write_atomic(file.path, file.text)
            written.append(file.path)
    return written


def stale_pipelines(files: Sequence[PipelineFile]) -> list[Path]:
    """The files that are missing or differ from what the matrix generates now."""
    return [file.path for file in files if not _current(file)]


def _current(file: PipelineFile) -> bool:
    try:
        return file.path.read_text(encoding="utf-8") == file.text
    except OSError:
        return False


def _header(system: str, s: _Settings, found: Sequence[Route],
            target: Callable[[Route], str], option: str = "") -> str:
    # The plan is read again when the pipeline runs; this summary makes the file change (and
    # --check fail) whenever the cells or their runners do, so that a review shows it.
    plan = "\n".join(f"{r.cell.id} {r.kind} {' '.join(r.labels)} {r.queue}" for r in found)
    counts = Counter((r.kind, target(r)) for r in found)
    what = ("The release gate (the wheels of artifact "
            f"{s.wheels_artifact!r}, tested as they are)" if s.wheels_artifact
            else "The compatibility matrix")
    lines = [
        f"{what} on {system}, generated from {s.matrix_file} by "
        + (f"`compatmatrix ci{option}`." if option else "`nox -s ci`."),
        *([f"Do not edit: change {s.matrix_file} and run `compatmatrix ci{option}`; with "
           "--check it fails while", "this file is stale. The plan step reads "
           f"{s.matrix_file} again when the pipeline runs."] if option else [
            f"Do not edit: change {s.matrix_file} and run `nox -s ci`; `nox -s ci -- --check` "
            "fails while",
            f"this file is stale. The plan step reads {s.matrix_file} again when the pipeline "
            "runs."]),
        f"Cells when generated: {len(found)} (plan sha256:{short_hash(plan, 12)})",
        *(f"  {kind} on {where}: {n}" for (kind, where), n in sorted(counts.items())),
    ]
    return "".join(f"# {line}\n" for line in lines) + "\n"



# --- YAML out ----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style, sequences indented under their key, scripts as literal blocks."""

    null_text = ""  # `pull_request:` reads better than `pull_request: null`

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


class _TildeDumper(_Dumper):
    null_text = "~"  # `- wait: ~`: an empty value there would read as a parent key


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data,
                                   style="|" if "\n" in data else None)


def _represent_none(dumper: yaml.SafeDumper, data: None) -> yaml.ScalarNode:
    text = dumper.null_text if isinstance(dumper, _Dumper) else "null"
    return dumper.represent_scalar("tag:yaml.org,2002:null", text)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(type(None), _represent_none)
_PINNED = {f"{repo}@{sha}": tag for repo, sha, tag in ACTIONS.values()}
_COMMENTS = {  # why each permission is there (zizmor's pedantic persona asks)
    "contents: read": "every job reads the repository, nothing more",
    "contents: write": "this job alone pushes the report commit",
}
_SPACED = ("jobs:", "steps:")  # sections whose entries get a blank line between them


def _dump(data: dict[str, Any], dumper: type[_Dumper]) -> str:
    """YAML text for ``data`` in the order built, with pinned actions' tags as comments."""
    text = yaml.dump(data, Dumper=dumper, sort_keys=False, width=1 << 20, allow_unicode=True)
    lines: list[str] = []
    section = ""
    for line in text.splitlines():
        if line == "'on':":  # YAML 1.1 would read a bare `on` as true; GitHub reads a key
            line = "on:"
        pinned = line.rsplit("uses: ", 1)[-1]
        comment = _PINNED.get(pinned) or _COMMENTS.get(line.strip())
        if comment:
            line += f"  # {comment}"
        indent = len(line) - len(line.lstrip())
        if lines and (indent == 0 or (indent == 2 and section in _SPACED
                                      and lines[-1] != section)):
            lines.append("")
        section = line if indent == 0 else section
        lines.append(line)
    return "\n".join(lines) + "\n"
