"""Other people's projects, end to end: compatmatrix run from each project's own root.

tests/projects/ holds small projects in the shapes real torch-extension projects have:

- setuppy_cuda: metadata only in setup.py, flat layout, TORCH_LIBRARY op loaded with
  torch.ops.load_library, a .cu kernel compiled only where a GPU is present;
- skbuild_cmake: scikit-build-core + CMake, static [project], src/ layout, a plain shared
  library of ops installed into the package;
- pybind_per_python: a pybind11 CppExtension (cp311-cp311 wheel), declarative setup.cfg,
  src/ layout, tests in test/;
- stable_ext: PyPI-style setup.py on torch's stable ABI (torch::stable, STABLE_TORCH_LIBRARY,
  TORCH_TARGET_VERSION, Py_LIMITED_API), static [project], project.torch_abi: stable;
- pure_ranged: pure Python (hatchling), a loose torch range and a `vllm` extra that the
  matrix's `vllm: none` rules out.

Each project is copied into a temporary folder and run as its maintainer would, with
`python -m compatmatrix run -j 2` in its root (the default work dir, `.compatmatrix/`, inside
the project on purpose), as a plain folder and, where cheap, as a git checkout without a
.gitignore. One run (and one unchanged rerun) per project and variant is shared by all the
assertions about it.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from compatmatrix.host.indexes import pip_config_find_links
from compatmatrix.host.interpreters import InterpreterFinder

pytestmark = pytest.mark.slow

PROJECTS = Path(__file__).resolve().parent / "projects"
CELL = "py3.11-torch2.13.0-cpu"
VLLM_CELL = "py3.11-torch2.13.0-cpu-extras-vllm"
RUN_TIMEOUT = 1800  # seconds; a cold compiled project takes one to two minutes on 2 cores


@dataclass(frozen=True)
class Expected:
    import_name: str
    statuses: Mapping[str, str]    # cell id -> status
    requires: tuple[str, ...]      # what the project declares (setup.py, setup.cfg, [project])
    tags: tuple[str, ...]          # the wheel's tags, as the audit reads them
    extensions: tuple[str, ...]    # compiled files in the wheel, as the audit lists them
    variants: tuple[str, ...]      # "plain" folder and/or "git" checkout
    # cell id -> (stage, words its reason must contain), for cells that do not pass
    reasons: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)


PER_PYTHON = ("cp311-cp311-linux_x86_64",)
EXPECTED = {
    "setuppy_cuda": Expected(
        "biasact", {CELL: "passed"}, ("torch>=2.13,<2.14",), PER_PYTHON,
        ("biasact/_C.cpython-311-x86_64-linux-gnu.so",), ("plain", "git")),
    "skbuild_cmake": Expected(
        "rmsnorm_cmake", {CELL: "passed"}, ("torch>=2.13,<2.14",), PER_PYTHON,
        ("rmsnorm_cmake/librmsnorm_ops.so",), ("plain",)),
    "pybind_per_python": Expected(
        "pairwise_ext", {CELL: "passed"}, ("torch>=2.13,<2.14",), PER_PYTHON,
        ("pairwise_ext/_C.cpython-311-x86_64-linux-gnu.so",), ("git",)),
    "stable_ext": Expected(
        "stable_ext", {CELL: "passed"}, ("torch>=2.10",), ("cp39-abi3-linux_x86_64",),
        ("stable_ext/_C.abi3.so",), ("git",)),
    "pure_ranged": Expected(
        "shapecheck", {CELL: "passed", VLLM_CELL: "incompatible"},
        ("torch>=2.4.0,<3.0.0", "packaging"), ("py3-none-any",), (), ("plain", "git"),
        # decided from the package's metadata: the extra asks for what the cell rules out
        {VLLM_CELL: ("resolve", ("extra 'vllm'", "vllm>=0.10.1", "vllm: none"))}),
}

CASES = [(name, variant) for name, expected in EXPECTED.items()
         for variant in expected.variants]


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    wall: float
    records: dict[str, dict[str, Any]]
    cpu: float = 0.0  # user + system seconds of compatmatrix and all it started


@dataclass(frozen=True)
class ProjectRuns:
    name: str
    variant: str
    root: Path
    expected: Expected
    first: Run
    rerun: Run


def require_python_and_torch() -> None:
    interpreter = InterpreterFinder(os.environ).find("3.11")
    if interpreter.path is None:
        pytest.skip(f"no Python 3.11: {interpreter.problem}")
    links = pip_config_find_links(os.environ)
    if not any(Path(d).glob("torch-2.13.0+cpu-cp311-*.whl") for d in links):
        pytest.skip("no CPU torch 2.13.0 wheel for cp311 in pip's find-links folders")


def copy_project(name: str, dest: Path, *, git: bool) -> Path:
    root = dest / name
    shutil.copytree(PROJECTS / name, root, ignore=shutil.ignore_patterns(
        "__pycache__", ".compatmatrix", "build", "dist", "*.egg-info"))
    if git:  # a checkout as a maintainer has it, with no .gitignore to hide the work dir
        assert not (root / ".gitignore").exists()
        env = {**os.environ, "GIT_AUTHOR_NAME": "m", "GIT_AUTHOR_EMAIL": "m@example.com",
               "GIT_COMMITTER_NAME": "m", "GIT_COMMITTER_EMAIL": "m@example.com"}
        for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                     ["git", "commit", "-q", "-m", "import", "--no-gpg-sign"]):
            subprocess.run(argv, cwd=root, env=env, check=True, capture_output=True,
                           timeout=60)
    return root


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_compatmatrix(root: Path) -> Run:
    start, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run([sys.executable, "-m", "compatmatrix", "run", "-j", "2"], cwd=root,
                          env=dict(os.environ), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    results = root / ".compatmatrix" / "results"
    records = {p.stem: json.loads(p.read_text(encoding="utf-8"))
               for p in sorted(results.glob("*.json"))} if results.is_dir() else {}
    return Run(done.returncode, done.stdout + done.stderr, wall, records,
               _children_cpu() - cpu)


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{v}" for n, v in CASES])
def runs(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectRuns]:
    require_python_and_torch()
    name, variant = request.param
    root = copy_project(name, tmp_path_factory.mktemp(f"{name}-{variant}"),
                        git=variant == "git")
    first = run_compatmatrix(root)
    rerun = run_compatmatrix(root)
    print(f"{name} ({variant}): first run {first.wall:.1f} s, unchanged rerun {rerun.wall:.1f} s")
    yield ProjectRuns(name, variant, root, EXPECTED[name], first, rerun)


def describe(record: Mapping[str, Any]) -> str:
    return (f"status={record.get('status')!r} stage={record.get('stage')!r} "
            f"reason={record.get('reason')!r} details={record.get('details')!r}")


def env_of(runs: ProjectRuns, cell: str) -> Path:
    return (runs.root / ".compatmatrix" / "envs" / cell).resolve()


def is_under(path: str, folder: Path) -> bool:
    resolved = Path(path).resolve()
    return resolved == folder or folder in resolved.parents


# -- the first run ----------------------------------------------------------------------------


def test_every_cell_ends_as_expected(runs: ProjectRuns) -> None:
    records = runs.first.records
    assert sorted(records) == sorted(runs.expected.statuses), runs.first.output[-4000:]
    for cell, status in runs.expected.statuses.items():
        assert records[cell]["status"] == status, f"{cell}: {describe(records[cell])}"
    for cell, (stage, words) in runs.expected.reasons.items():
        record = records[cell]
        assert record["stage"] == stage, f"{cell}: {describe(record)}"
        missing = [w for w in words if w not in record["reason"]]
        assert not missing, f"{cell}: reason lacks {missing}: {describe(record)}"
    assert runs.first.returncode == 0, runs.first.output[-4000:]


def test_passed_cells_ran_their_tests_on_the_built_wheel(runs: ProjectRuns) -> None:
    for cell, status in runs.expected.statuses.items():
        if status != "passed":
            continue
        record = runs.first.records[cell]
        assert record["status"] == "passed", f"{cell}: {describe(record)}"
        assert record["audit"]["tags"] == list(runs.expected.tags), record["audit"]
        assert record["audit"]["extensions"] == list(runs.expected.extensions), record["audit"]
        assert record["built_with_torch"] == record["running_torch"] == "2.13.0+cpu"
        assert record["resolved"]["torch"] == "2.13.0+cpu"
        wheel = Path(record["wheel"])
        assert record["artifact"] == {
            "file": wheel.name, "origin": "built",
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}
        for suite, result in record["suites"].items():
            assert result["status"] == "passed", (suite, result)
            assert result["passed"] > 0 and result["failed"] == result["errors"] == 0, result


def test_the_projects_own_requirements_were_resolved(runs: ProjectRuns) -> None:
    """Read from setup.py / setup.cfg through the build backend, or from [project]."""
    for cell, status in runs.expected.statuses.items():
        if status != "passed":
            continue
        record = runs.first.records[cell]
        resolved = {(canonicalize_name(r.name), r.specifier) for r in
                    map(Requirement, record.get("requirements") or [])}
        for declared in map(Requirement, runs.expected.requires):
            assert (canonicalize_name(declared.name), declared.specifier) in resolved, (
                f"{cell}: {declared} is not among the requirements resolved: "
                f"{record.get('requirements')}")


def test_the_package_is_imported_from_the_cells_venv(runs: ProjectRuns) -> None:
    for cell, status in runs.expected.statuses.items():
        if status != "passed":
            continue
        record, venv = runs.first.records[cell], env_of(runs, cell)
        module_file = record["identity"]["facts"].get("module_file")
        assert module_file, f"{cell}: the record has no identity.facts.module_file"
        assert is_under(module_file, venv), (
            f"{cell}: identity imported {runs.expected.import_name} from {module_file}, "
            f"not from {venv}")
        for suite, result in record["suites"].items():
            imported = result.get("imported_from")
            assert imported, f"{cell}: suite {suite} records no imported_from: {result}"
            outside = [p for p in imported if not is_under(p, venv)]
            assert not outside, (f"{cell}: suite {suite} imported "
                                 f"{runs.expected.import_name} from {outside}, not {venv}")


# -- the unchanged rerun ----------------------------------------------------------------------


def test_unchanged_rerun_reuses_every_record(runs: ProjectRuns) -> None:
    assert runs.rerun.returncode == 0, runs.rerun.output[-4000:]
    assert sorted(runs.rerun.records) == sorted(runs.first.records)
    not_reused = {cell: (record.get("reused"), record.get("status"), record.get("stage"))
                  for cell, record in runs.rerun.records.items()
                  if record.get("reused") is not True}
    assert not not_reused, f"records not reused on an unchanged rerun: {not_reused}"
    for cell, record in runs.rerun.records.items():
        assert record["status"] == runs.first.records[cell]["status"], describe(record)


def test_unchanged_rerun_takes_a_tenth_of_the_first(runs: ProjectRuns) -> None:
    # wall time, or CPU time where other work on the machine stretched the rerun's wall time
    # (the CPU a rerun spends is the work it does: reading records, asking uv for the lock)
    first, rerun = runs.first, runs.rerun
    assert rerun.wall < first.wall / 10 or rerun.cpu < first.cpu / 10, (
        f"first run {first.wall:.1f} s ({first.cpu:.1f} s CPU), unchanged rerun "
        f"{rerun.wall:.1f} s ({rerun.cpu:.1f} s CPU)")


def test_a_stable_abi_project_is_audited_stable(runs: ProjectRuns) -> None:
    if runs.name != "stable_ext":
        pytest.skip("only stable_ext is on torch's stable ABI")
    abi = runs.first.records[CELL]["audit"]["torch_abi"]
    assert (abi["verdict"], abi["min_torch"]) == ("torch-stable", "2.10.0")
    assert runs.first.records[CELL]["build_key"] == "abi3-torchstable-cpu"
