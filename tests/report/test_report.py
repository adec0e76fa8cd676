from __future__ import annotations

import datetime as dt
import html
import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml

from compatmatrix.errors import CompatError
from compatmatrix.model.junit import write_not_run_junit
from compatmatrix.model.plan import Cell, plan_cells
from compatmatrix.model.spec import Matrix, parse_matrix
from compatmatrix.report.collect import collect
from compatmatrix.report.gate import evaluate
from compatmatrix.report.html import GLYPHS
from compatmatrix.report.junit import MergeEntry, inspect_junit, merge_junit
from compatmatrix.report.model import REPORT_FILES, Report, load_report
from compatmatrix.report.views import MARKS, python_ranges, resolver_reason, unavailable_facts
from compatmatrix.report.write import write_report
from tests.conftest import make_package
from tests.report.png import pixel_counts

MATRIX = """
version: 1
project: {path: pkg, import: pkg, abi3: ">=2.6"}
axes:
  python: ["3.10", "3.11", "3.12"]
  torch: ["2.9.0", "2.13.0"]
  cuda: [cpu, cu128, cu130]
  vllm: [none]
exclude:
  - {torch: "<2.10", cuda: cu130}
  - {torch: ">=2.10", cuda: cu128}
include:
  - {python: "3.12", torch: "2.13.0", cuda: cu130, vllm: "0.30.0"}
  - {python: "3.12", torch: "2.9.0", cuda: cpu, vllm: "0.30.0"}
suites:
  import: {paths: [tests/import]}
  unit: {paths: [tests/unit]}
  gpu: {paths: [tests/gpu], requires: {gpu: h100}}
"""

DASH, MINUS, TIMES = "\u2013", "\u2796", "\u00d7"  # en dash, heavy minus, multiplication
NO_GPU = "needs GPU kind h100 (compute capability 9.x); this machine has no NVIDIA GPU"
UV_CONFLICT = [  # as uv prints it, decorations and all
    f"  {TIMES} No solution found when resolving dependencies:",
    "  ╰─▶ Because vllm==0.30.0 depends on torch==2.13.0 and you require torch==2.9.0, we",
    "      can conclude that your requirements and vllm==0.30.0 are incompatible.",
    "      And because you require vllm==0.30.0, we can conclude that your requirements",
    "      are unsatisfiable.",
]
NO_PYTHON = ("no Python 3.12 found (looked in PATH); install it with 'pyenv install 3.12' "
             "or 'uv python install 3.12', or set COMPATMATRIX_PYTHON_3_12=/path/to/python3.12")


# --- building a work directory by hand ---------------------------------------------------


def junit_xml(cell: str, *cases: str) -> str:
    body = "".join(cases)
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
            f'<testsuite name="{cell}" tests="{len(cases)}" timestamp="2026-01-01T00:00:00" '
            f'hostname="ci-7">{body}</testsuite></testsuites>')


def case(name: str, inner: str = "", classname: str = "tests.unit.test_ops") -> str:
    return f'<testcase classname="{classname}" name="{name}" time="0.010">{inner}</testcase>'


FAIL = ('<failure message="AssertionError: assert 1 == 2">def test_b():\n&gt; assert 1 == 2'
        "</failure>")


def suite_data(name: str, status: str, *, reason: str = "", collected: int = 0,
               passed: int = 0, failed: int = 0, skipped: int = 0) -> dict[str, Any]:
    # Paths as a record from another machine has them: the report must not use them.
    return {"name": name, "status": status, "reason": reason, "collected": collected,
            "passed": passed, "failed": failed, "errors": 0, "skipped": skipped,
            "duration": 1.23456, "junit": f"/elsewhere/junit/{name}.xml",
            "log": f"/elsewhere/logs/suite-{name}.log", "command": "cd /elsewhere && pytest",
            "first_errors": []}


def passing_suites(import_tests: int = 2, unit_tests: int = 3) -> dict[str, Any]:
    return {"import": suite_data("import", "passed", collected=import_tests,
                                 passed=import_tests),
            "unit": suite_data("unit", "passed", collected=unit_tests, passed=unit_tests),
            "gpu": suite_data("gpu", "not_run", reason=NO_GPU)}


class WorkDir:
    """A work directory written by hand: records and JUnit files like a real run leaves."""

    def __init__(self, root: Path, cells: dict[str, Cell]) -> None:
        self.root, self.cells = root, cells

    def record(self, cell_id: str, status: str, *, stage: str | None = None, reason: str = "",
               details: tuple[str, ...] = (), suites: dict[str, Any] | None = None,
               torch: str | None = None, root: str = "") -> None:
        cell = self.cells[cell_id]
        data = {
            "schema": 1, "cell": cell_id, "axes": cell.to_json()["axes"], "status": status,
            "stage": stage, "reason": reason, "details": list(details),
            "build_key": cell.build_key, "interpreter": "/elsewhere/bin/python3 (3.11.7)",
            "resolved": {"torch": torch or str(cell.value("torch")), "numpy": "2.2.6"},
            "wheel": "/elsewhere/wheels/x.whl", "wheel_reused": False,
            "built_with_torch": torch, "running_torch": torch, "audit": None,
            "identity": None, "suites": suites or {},
            "durations": {"resolve": 1.23456, "build": 31.16},
            "logs": {"resolve": "/elsewhere/logs/resolve.log"},
            "reproduce": f"compatmatrix run --cell {cell_id}", "inputs": "abc",
            "reused": False, "root": root,
        }
        path = self.root / "results" / f"{cell_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")

    def junit(self, cell_id: str, suite: str, text: str) -> Path:
        path = self.root / "junit" / cell_id / f"{suite}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def not_run(self, cell_id: str) -> None:
        write_not_run_junit(self.root / "junit" / cell_id / "gpu.xml", cell_id, "gpu", NO_GPU)

    def passing(self, cell_id: str, *, skip: tuple[str, ...] = ()) -> None:
        """The JUnit files of passing_suites(), except the suites in ``skip``."""
        if "import" not in skip:
            self.junit(cell_id, "import", junit_xml(
                cell_id, case("test_imports", classname="tests.import.test_import"),
                case("test_ops_registered", classname="tests.import.test_import")))
        if "unit" not in skip:
            self.junit(cell_id, "unit", junit_xml(cell_id, case("test_a"), case("test_b"),
                                                  case("test_c")))
        self.not_run(cell_id)


@pytest.fixture
def matrix(tmp_path: Path) -> Matrix:
    make_package(tmp_path / "pkg")
    return parse_matrix(textwrap.dedent(MATRIX), tmp_path / "matrix.yaml")


# Every kind of outcome the report must tell apart, one cell each.
PASSED = ("py3.10-torch2.13.0-cpu", "py3.11-torch2.13.0-cpu")
UNAVAILABLE = "py3.12-torch2.13.0-cpu"
BUILD = "py3.10-torch2.9.0-cpu"
AUDIT = "py3.11-torch2.9.0-cpu"
IDENTITY = "py3.12-torch2.9.0-cpu"
SUITE = "py3.10-torch2.9.0-cu128"
ERROR = "py3.11-torch2.9.0-cu128"
NO_RECORD = "py3.12-torch2.9.0-cu128"
NO_JUNIT = "py3.10-torch2.13.0-cu130"
EMPTY_JUNIT = "py3.11-torch2.13.0-cu130"
DUPLICATED = "py3.12-torch2.13.0-cu130"
VLLM = "py3.12-torch2.13.0-cu130-vllm0.30.0"
INCOMPATIBLE = "py3.12-torch2.9.0-cpu-vllm0.30.0"

AUDIT_REASON = "abi3 wheel carries compat/_C.cpython-312-x86_64-linux-gnu.so"
IDENTITY_REASON = "running torch 2.9.1 is not the cell's torch 2.9.0"
BUILD_REASON = "the build failed: error: 'at::Tensor' has no member named 'foo'"


@pytest.fixture
def workdir(tmp_path: Path, matrix: Matrix) -> WorkDir:
    work = WorkDir(tmp_path / "work", {cell.id: cell for cell in plan_cells(matrix)})
    for cell_id in (*PASSED, VLLM):
        work.record(cell_id, "passed", suites=passing_suites(), torch="2.13.0+cpu")
        work.passing(cell_id)
    work.record(UNAVAILABLE, "unavailable", stage="resolve", reason=NO_PYTHON)
    work.record(BUILD, "failed", stage="build", reason=BUILD_REASON,
                details=("kernels/csrc/ops.cpp:12:5: error: 'at::Tensor' has no member "
                         "named 'foo'", "ninja: build stopped: subcommand failed."))
    work.record(AUDIT, "failed", stage="audit", reason=AUDIT_REASON,
                details=(f"compat/_C.cpython-312-x86_64-linux-gnu.so: {AUDIT_REASON}",))
    work.record(IDENTITY, "failed", stage="identity", reason=IDENTITY_REASON,
                details=(IDENTITY_REASON,))
    _suite_failure(work)
    work.record(ERROR, "error", stage=None,
                reason="compatmatrix itself failed (a bug: please report it with this log)",
                details=("KeyError: 'torch'",))
    _evidence_problems(work)
    work.record(INCOMPATIBLE, "incompatible", stage="resolve",
                reason="the pins cannot be installed together", details=tuple(UV_CONFLICT))
    return work


def _suite_failure(work: WorkDir) -> None:
    """A failing unit suite, and two flaky tests: one in each rerun style."""
    suites = passing_suites()
    suites["unit"] = suite_data("unit", "failed", reason="2 failed of 3 tests", collected=3,
                                passed=1, failed=2)
    work.record(SUITE, "failed", stage="suite:unit", reason="2 failed of 3 tests",
                details=("tests/unit/test_ops.py::test_b: AssertionError: assert 1 == 2",),
                suites=suites)
    work.junit(SUITE, "import", junit_xml(
        SUITE, case("test_imports", classname="tests.import.test_import"),
        case("test_ops_registered", '<flakyFailure message="timeout"/>',
             classname="tests.import.test_import")))
    work.junit(SUITE, "unit", junit_xml(SUITE, case("test_a"), case("test_b", FAIL),
                                        case("test_c", FAIL), case("test_c")))
    work.not_run(SUITE)


def _evidence_problems(work: WorkDir) -> None:
    """Passed by their records, but the JUnit files do not show it."""
    work.record(NO_JUNIT, "passed", suites=passing_suites(), torch="2.13.0")
    work.passing(NO_JUNIT, skip=("unit",))
    work.junit(NO_JUNIT, "import", junit_xml(NO_JUNIT))  # no test cases at all
    work.record(EMPTY_JUNIT, "passed", suites=passing_suites(), torch="2.13.0")
    work.passing(EMPTY_JUNIT)
    work.junit(EMPTY_JUNIT, "import", "")
    work.record(DUPLICATED, "passed", suites=passing_suites(), torch="2.13.0")
    work.passing(DUPLICATED)
    work.junit(DUPLICATED, "unit", junit_xml(DUPLICATED, case("test_a"), case("test_b"),
                                             case("test_c"), case("test_c")))


@pytest.fixture
def report(matrix: Matrix, workdir: WorkDir) -> Report:
    return collect(matrix, [workdir.root], commit="0123abc")


@pytest.fixture
def written(report: Report, tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "reports"
    write_report(report, out)
    return {name: (out / name).read_text(encoding="utf-8") for name in REPORT_FILES}


# --- the report value --------------------------------------------------------------------


def test_every_planned_cell_is_in_the_report_sorted(report: Report, matrix: Matrix) -> None:
    assert [c.id for c in report.cells] == sorted(c.id for c in plan_cells(matrix))
    assert report.axes == ("python", "torch", "cuda", "vllm")
    assert report.counts() == {"passed": 6, "failed": 4, "incompatible": 1, "unavailable": 1,
                               "error": 1, "missing": 1}


def test_cell_without_record_is_missing(report: Report) -> None:
    cell = report.cell(NO_RECORD)
    assert cell is not None and cell.status == "missing"
    assert cell.reason == "no record: the cell has not run"
    assert cell.reproduce == f"compatmatrix run --cell {NO_RECORD}"
    assert report.cell("py3.9-nothing") is None


def test_failures_keep_stage_reason_and_details(report: Report) -> None:
    stages = {cid: (c.status, c.stage) for cid in (BUILD, AUDIT, IDENTITY, SUITE, ERROR)
              if (c := report.cell(cid)) is not None}
    assert stages == {BUILD: ("failed", "build"), AUDIT: ("failed", "audit"),
                      IDENTITY: ("failed", "identity"), SUITE: ("failed", "suite:unit"),
                      ERROR: ("error", None)}


def test_suite_counts_come_from_the_junit_file(report: Report) -> None:
    cell = report.cell(SUITE)
    assert cell is not None
    unit = {s.name: s for s in cell.suites}["unit"]
    # test_c failed, then passed on a rerun: counted once, at its worst, like the runner does
    assert (unit.passed, unit.failed, unit.collected) == (1, 2, 3)
    assert unit.failed_tests == ("tests.unit.test_ops::test_b", "tests.unit.test_ops::test_c")


def test_flaky_tests_in_both_rerun_styles(report: Report) -> None:
    cell = report.cell(SUITE)
    assert cell is not None
    flaky = {s.name: s.flaky for s in cell.suites}
    assert flaky == {"import": ("tests.import.test_import::test_ops_registered",),
                     "unit": ("tests.unit.test_ops::test_c",), "gpu": ()}
    assert cell.problems == ()  # a rerun that passed is flaky, not a duplicate


def test_honest_counting_problems(report: Report) -> None:
    def problems(cell_id: str) -> tuple[str, ...]:
        cell = report.cell(cell_id)
        assert cell is not None and cell.status == "passed" and not cell.verified
        return cell.problems

    assert problems(NO_JUNIT) == ("import: no tests in the JUnit file",
                                  "import: 2 of 2 collected tests are not in the JUnit file",
                                  "unit: JUnit file missing")
    assert problems(EMPTY_JUNIT) == ("import: JUnit file is empty",)
    assert problems(DUPLICATED) == ("unit: 1 duplicated test case",)
    no_junit = report.cell(NO_JUNIT)
    assert no_junit is not None
    assert {s.name: s.status for s in no_junit.suites} == {
        "import": "passed", "unit": "missing", "gpu": "not_run"}


def test_clean_passes_are_verified(report: Report) -> None:
    for cell_id in (*PASSED, VLLM):
        cell = report.cell(cell_id)
        assert cell is not None and cell.verified, cell


def test_durations_are_rounded(report: Report) -> None:
    cell = report.cell(PASSED[0])
    assert cell is not None and cell.durations == {"build": 31.2, "resolve": 1.2}


def test_a_suite_the_record_lacks_is_missing(matrix: Matrix, workdir: WorkDir) -> None:
    suites = passing_suites()
    del suites["unit"]
    workdir.record(PASSED[0], "passed", suites=suites)
    cell = collect(matrix, [workdir.root]).cell(PASSED[0])
    assert cell is not None
    assert [(s.name, s.status, s.problems) for s in cell.suites][-1] == (
        "unit", "missing", ("not in the record",))


def test_unreadable_record_is_reported(matrix: Matrix, workdir: WorkDir) -> None:
    (workdir.root / "results" / f"{NO_RECORD}.json").write_text("{", encoding="utf-8")
    cell = collect(matrix, [workdir.root]).cell(NO_RECORD)
    assert cell is not None and cell.status == "missing"
    assert cell.reason.startswith(f"results/{NO_RECORD}.json is unreadable: not JSON (")


def test_missing_source_folder_is_a_usage_error(matrix: Matrix, tmp_path: Path) -> None:
    with pytest.raises(CompatError, match="no such folder"):
        collect(matrix, [tmp_path / "nowhere"])


# --- sources: a work directory, CI artifacts, later wins ---------------------------------


def as_artifacts(workdir: WorkDir, dest: Path) -> Path:
    """One folder per cell, as actions/download-artifact leaves them."""
    for record in (workdir.root / "results").glob("*.json"):
        cell_id = record.stem
        target = dest / f"cell-{cell_id}"
        (target / "results").mkdir(parents=True)
        shutil.copy(record, target / "results" / record.name)
        junit = workdir.root / "junit" / cell_id
        if junit.is_dir():
            shutil.copytree(junit, target / "junit" / cell_id)
    return dest


def test_artifacts_layout_gives_the_same_report(matrix: Matrix, workdir: WorkDir,
                                                report: Report, tmp_path: Path) -> None:
    artifacts = as_artifacts(workdir, tmp_path / "artifacts")
    from_artifacts = collect(matrix, [artifacts], commit="0123abc")
    assert from_artifacts == report
    write_report(report, tmp_path / "a")
    write_report(from_artifacts, tmp_path / "b")
    for name in REPORT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_copies_that_disagree_are_a_conflict_never_the_last_one_wins(
        matrix: Matrix, workdir: WorkDir, tmp_path: Path) -> None:
    rerun = WorkDir(tmp_path / "rerun", workdir.cells)
    rerun.record(BUILD, "passed", suites=passing_suites())
    rerun.passing(BUILD)
    for order in ([workdir.root, rerun.root], [rerun.root, workdir.root]):
        cell = collect(matrix, order).cell(BUILD)
        assert cell is not None and cell.status == "failed"  # the worst verdict stands
        (conflict,) = cell.evidence
        assert conflict.startswith("conflicting records: failed at build (work/results/")
        assert "passed (rerun/results/" in conflict
    result = evaluate(matrix.gate, collect(matrix, [rerun.root, workdir.root]), None,
                      dt.date(2026, 11, 29))
    assert any("the evidence cannot be trusted: conflicting records" in v.message
               for v in result.failures)


def test_identical_copies_count_once(matrix: Matrix, workdir: WorkDir, tmp_path: Path) -> None:
    copy = tmp_path / "reuploaded"
    shutil.copytree(workdir.root, copy)
    report = collect(matrix, [workdir.root, copy])
    assert report == collect(matrix, [workdir.root])
    assert all(not cell.evidence for cell in report.cells)


def test_a_record_that_is_not_its_cell_is_no_evidence(matrix: Matrix,
                                                      workdir: WorkDir) -> None:
    path = workdir.root / "results" / f"{PASSED[0]}.json"
    data = json.loads(path.read_text())
    data["axes"]["torch"] = "2.9.0"  # edited, or copied from another cell
    path.write_text(json.dumps(data))
    cell = collect(matrix, [workdir.root]).cell(PASSED[0])
    assert cell is not None and cell.status == "missing"
    assert cell.evidence == (f"results/{PASSED[0]}.json says torch=2.9.0, which is not cell "
                             f"{PASSED[0]}; run the cell again, or delete the file",)


def test_junit_files_never_come_from_another_source(matrix: Matrix, workdir: WorkDir,
                                                    tmp_path: Path) -> None:
    rerun = WorkDir(tmp_path / "rerun", workdir.cells)
    rerun.record(PASSED[0], "passed", suites=passing_suites())  # its JUnit files were lost
    cell = collect(matrix, [rerun.root, workdir.root]).cell(PASSED[0])
    assert cell is not None and not cell.verified
    assert cell.problems == ("import: JUnit file missing", "unit: JUnit file missing")


def test_records_of_cells_not_planned_are_left_out(matrix: Matrix, workdir: WorkDir) -> None:
    stray = workdir.root / "results" / "py3.9-torch1.0.0-cpu.json"
    shutil.copy(workdir.root / "results" / f"{BUILD}.json", stray)
    data = json.loads(stray.read_text())
    data["cell"] = stray.stem
    stray.write_text(json.dumps(data))
    report = collect(matrix, [workdir.root])
    assert report.cell(stray.stem) is None and len(report.cells) == 14


def _status(report: Report, cell_id: str) -> str | None:
    cell = report.cell(cell_id)
    return cell.status if cell else None


# --- compatibility.md --------------------------------------------------------------------


def test_markdown_summary_legend_and_grids(written: dict[str, str]) -> None:
    md = written["compatibility.md"]
    assert "generated from commit `0123abc`" in md
    assert ("14 cells: 6 passed (3 with incomplete test evidence), 4 failed, "
            "1 incompatible, 1 unavailable, 1 error, 1 missing.") in md
    assert "### no vllm" in md and "### vllm 0.30.0" in md
    assert "| torch (variant) | Python 3.10 | Python 3.11 | Python 3.12 |" in md
    assert "| torch 2.9.0 (cpu) | ❌ build | ❌ audit | ❌ identity |" in md
    assert "| torch 2.9.0 (cu128) | ❌ unit | 💥 | ❔ |" in md
    assert f"| torch 2.13.0 (cpu) | ✅ | ✅ | {MINUS} |" in md
    assert "| torch 2.13.0 (cu130) | ⚠️ | ⚠️ | ⚠️ |" in md
    assert "| torch 2.9.0 (cpu) | · | · | ⛔ |" in md
    for mark in ("✅ passed", "❌ failed", "⛔ incompatible", f"{MINUS} unavailable", "💥 error",
                 "❔ missing", "· not planned", "⚠️ passed, but"):
        assert mark in md


def test_markdown_works_together_compresses_pythons(written: dict[str, str]) -> None:
    md = written["compatibility.md"]
    assert "| vllm | torch (variant) | Python | suites not run |" in md
    assert f"| — | torch 2.13.0 (cpu) | 3.10{DASH}3.11 | gpu |" in md
    assert "| 0.30.0 | torch 2.13.0 (cu130) | 3.12 | gpu |" in md
    assert "cu130) | 3.10" not in md  # passes without JUnit evidence are not "measured"


def test_markdown_failures_with_reproduce(written: dict[str, str]) -> None:
    md = written["compatibility.md"]
    for cell_id, stage in ((BUILD, "build"), (AUDIT, "audit"), (IDENTITY, "identity"),
                           (SUITE, "suite:unit")):
        section = md.split(f"### {cell_id}\n", 1)[1].split("\n### ", 1)[0]
        assert f"**failed at {stage}**" in section
        assert f"Reproduce: `compatmatrix run --cell {cell_id}`" in section
    assert "ninja: build stopped: subcommand failed." in md
    assert "tests/unit/test_ops.py::test_b: AssertionError: assert 1 == 2" in md
    assert f"### {ERROR}\n\n**error**: compatmatrix itself failed" in md


def test_markdown_incompatible_unavailable_not_run(written: dict[str, str]) -> None:
    md = written["compatibility.md"]
    assert (f"- **{INCOMPATIBLE}**: vllm==0.30.0 depends on torch==2.13.0 and you require "
            "torch==2.9.0\n") in md
    assert f"- **{UNAVAILABLE}**: no Python 3.12 found" in md
    assert f"- **gpu**: {NO_GPU} — 7 cells: " in md
    assert f"- **{NO_RECORD}**: no record: the cell has not run" in md


def test_markdown_problems_and_flaky(written: dict[str, str]) -> None:
    md = written["compatibility.md"]
    assert f"- **{NO_JUNIT}** unit: JUnit file missing" in md
    assert f"- **{EMPTY_JUNIT}** import: JUnit file is empty" in md
    assert f"- **{NO_JUNIT}** import: no tests in the JUnit file" in md
    assert f"- **{DUPLICATED}** unit: 1 duplicated test case" in md
    assert f"- **{SUITE}** unit: `tests.unit.test_ops::test_c`" in md
    assert f"- **{SUITE}** import: `tests.import.test_import::test_ops_registered`" in md


def test_no_timestamps_or_machine_paths(written: dict[str, str]) -> None:
    for name, text in written.items():
        assert "/elsewhere" not in text, name
        assert "2026-01-01" not in text and "ci-7" not in text, name


# --- compatibility.json ------------------------------------------------------------------


def test_json_has_every_cell_with_reason(written: dict[str, str]) -> None:
    data = json.loads(written["compatibility.json"])
    assert data["schema"] == 1 and data["commit"] == "0123abc"
    cells = {c["id"]: c for c in data["cells"]}
    assert len(cells) == 14
    assert (cells[AUDIT]["stage"], cells[AUDIT]["reason"]) == ("audit", AUDIT_REASON)
    assert cells[INCOMPATIBLE]["details"] == UV_CONFLICT
    assert cells[NO_RECORD]["status"] == "missing"
    assert cells[NO_JUNIT]["problems"][-1] == "unit: JUnit file missing"
    assert cells[NO_JUNIT]["verified"] is False
    unit = {s["name"]: s for s in cells[SUITE]["suites"]}["unit"]
    assert (unit["passed"], unit["failed"], unit["flaky"]) == (
        1, 2, ["tests.unit.test_ops::test_c"])
    assert cells[PASSED[0]]["resolved"] == {"numpy": "2.2.6", "torch": "2.13.0+cpu"}
    assert written["compatibility.json"] == json.dumps(data, indent=2, sort_keys=True,
                                                       ensure_ascii=False) + "\n"


def test_load_report_round_trips(report: Report, tmp_path: Path) -> None:
    write_report(report, tmp_path)
    loaded = load_report(tmp_path / "compatibility.json")
    assert loaded == report
    assert load_report(tmp_path / "nothing.json") is None


def test_load_report_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "compatibility.json"
    path.write_text('{"schema": 7}', encoding="utf-8")
    with pytest.raises(CompatError, match="not a readable compatibility report"):
        load_report(path)


# --- compatibility.html ------------------------------------------------------------------


def test_html_grid_links_to_every_cell(written: dict[str, str], report: Report) -> None:
    page = written["compatibility.html"]
    assert "<script" not in page and "http" not in page.split("<body>")[0]
    for cell in report.cells:
        assert f'href="#cell-{cell.id}"' in page
        assert f'id="cell-{cell.id}"' in page
    assert '<td class="s-failed"><a href="#cell-' + BUILD in page
    assert '<td class="s-unverified"><a href="#cell-' + NO_JUNIT in page


def test_html_details_escape_reasons(written: dict[str, str]) -> None:
    page = written["compatibility.html"]
    for text in (AUDIT_REASON, IDENTITY_REASON, BUILD_REASON, NO_PYTHON,
                 "vllm==0.30.0 depends on torch==2.13.0 and you require torch==2.9.0",
                 "unit: JUnit file missing", "import: JUnit file is empty",
                 "1 duplicated test case", "tests.unit.test_ops::test_c", NO_GPU,
                 f"compatmatrix run --cell {SUITE}"):
        assert html.escape(text) in page, text
    assert "'at::Tensor'" not in page  # quotes escaped too


# --- junit.xml ---------------------------------------------------------------------------


def test_merged_junit(written: dict[str, str], report: Report) -> None:
    xml = JUnitXml.fromstring(written["junit.xml"].encode())
    suites = {suite.name: suite for suite in xml}
    names = list(suites)
    assert names == sorted(names, key=lambda name: name.split("/"))  # cell id, suite name
    assert suites[f"{SUITE}/unit"].tests == 4  # the rerun's cases are kept as pytest wrote
    assert suites[f"{SUITE}/gpu"].skipped == 1
    missing = suites[f"{NO_JUNIT}/unit"]
    assert missing.errors == 1 and "JUnit file missing" in written["junit.xml"]
    assert suites[BUILD].failures == 1 and suites[INCOMPATIBLE].skipped == 1
    assert suites[NO_RECORD].skipped == 1
    assert xml.tests == sum(suite.tests for suite in xml)
    assert written["junit.xml"].startswith('<?xml version="1.0" encoding="utf-8"?>\n')


def test_merge_junit_keeps_case_order(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_text(junit_xml("c", case("z"), case("a", FAIL), case("m")), encoding="utf-8")
    xml = merge_junit([MergeEntry("c/unit", (("cell", "c"),), junit=path)])
    suite = next(iter(xml))
    assert [c.name for c in suite] == ["z", "a", "m"]
    assert (xml.tests, xml.failures) == (3, 1)


# --- determinism -------------------------------------------------------------------------


def test_same_records_same_bytes(report: Report, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    assert sorted(p.name for p in write_report(report, out)) == sorted(REPORT_FILES)
    before = {name: (out / name).read_bytes() for name in REPORT_FILES}
    assert write_report(report, out) == []
    assert {name: (out / name).read_bytes() for name in REPORT_FILES} == before


def test_only_changed_files_are_written(matrix: Matrix, workdir: WorkDir, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    write_report(collect(matrix, [workdir.root]), out)
    # a rerun with the same outcome but other timings changes only the JSON's durations
    workdir.record(BUILD, "failed", stage="build", reason=BUILD_REASON,
                   details=("kernels/csrc/ops.cpp:12:5: error: 'at::Tensor' has no member "
                            "named 'foo'", "ninja: build stopped: subcommand failed."))
    data = json.loads((workdir.root / "results" / f"{BUILD}.json").read_text())
    data["durations"]["build"] = 99.0
    (workdir.root / "results" / f"{BUILD}.json").write_text(json.dumps(data))
    changed = write_report(collect(matrix, [workdir.root]), out)
    assert [p.name for p in changed] == ["compatibility.json"]


# --- trimming the resolver's words -------------------------------------------------------


def test_resolver_reason_from_cause_style_output() -> None:
    details = ["error: No solution found when resolving dependencies",
               "  cause: Because vllm==0.10.1.1 depends on torch==2.7.1 and you require "
               "torch==2.8.0, we can conclude that your requirements and vllm==0.10.1.1 are "
               "incompatible."]
    assert resolver_reason(details) == ("vllm==0.10.1.1 depends on torch==2.7.1 and you "
                                        "require torch==2.8.0")


def test_resolver_reason_without_because_keeps_the_first_line() -> None:
    assert resolver_reason([f"  {TIMES} No solution found", "  ╰─▶ torch was not found"]) == (
        "torch was not found")
    assert resolver_reason([], "the pins cannot be installed together") == (
        "the pins cannot be installed together")


def test_unavailable_facts_from_an_unreachable_index() -> None:
    details = [
        "index https://download.pytorch.org/whl/cpu is not reachable ([Errno -2] Name or "
        "service not known); error: No solution found when resolving dependencies",
        "  cause: Because torch==2.13.0+cpu has no wheels with a matching Python ABI tag "
        "(e.g., `cp312`) and you require torch==2.13.0+cpu, we can conclude that your "
        "requirements are unsatisfiable.",
        "",
        "hint: You require CPython 3.12 (`cp312`), but we only found wheels for `torch` "
        "(v2.13.0+cpu) with the following Python ABI tag: `cp311`"]
    assert unavailable_facts(details, "a package index or build is not available here") == [
        "index https://download.pytorch.org/whl/cpu is not reachable ([Errno -2] Name or "
        "service not known)",
        "torch==2.13.0+cpu has no wheels with a matching Python ABI tag (e.g., `cp312`) and "
        "you require torch==2.13.0+cpu",
        "You require CPython 3.12 (`cp312`), but we only found wheels for `torch` "
        "(v2.13.0+cpu) with the following Python ABI tag: `cp311`"]
    assert unavailable_facts([], NO_PYTHON) == [NO_PYTHON]


@pytest.mark.parametrize(("versions", "expected"), [
    (["3.12", "3.10", "3.11"], f"3.10{DASH}3.12"),
    (["3.9", "3.10", "3.12", "3.13", "3.14"], f"3.9{DASH}3.10, 3.12{DASH}3.14"),
    (["3.11"], "3.11"),
    (["3.10", "3.12"], "3.10, 3.12"),
])
def test_python_ranges(versions: list[str], expected: str) -> None:
    assert python_ranges(versions) == expected


def test_inspect_junit_teardown_error_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "unit.xml"
    error = '<error message="teardown failed"/>'
    path.write_text(junit_xml("c", case("t", FAIL), case("t", error)), encoding="utf-8")
    evidence = inspect_junit(path)
    assert (evidence.tests, evidence.failed, evidence.duplicated, evidence.flaky) == (
        1, 1, 0, ())


def test_markdown_escapes_markup(matrix: Matrix, workdir: WorkDir) -> None:
    workdir.record(AUDIT, "failed", stage="audit", reason="bad | pipe <b>tag</b> __init__")
    out = workdir.root.parent / "md"
    write_report(collect(matrix, [workdir.root]), out)
    text = (out / "compatibility.md").read_text(encoding="utf-8")
    assert r"bad \| pipe \<b\>tag\</b\> \_\_init\_\_" in text


# --- the page in a real browser ----------------------------------------------------------


@pytest.mark.slow
def test_html_renders_in_headless_chromium(written: dict[str, str], tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium binary on PATH")
    page = tmp_path / "compatibility.html"
    page.write_text(written["compatibility.html"], encoding="utf-8")
    png = tmp_path / "shot.png"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={png}", "--window-size=1400,1000", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert png.is_file(), done.stderr[-2000:]
    assert png.stat().st_size > 10_000  # a drawn page, not a blank one
    # Every status mark of the legend is drawn, whatever fonts the machine has: an emoji
    # without an emoji font would be an empty box, and none of these colours.
    pixels = pixel_counts(png)
    for status, (_, colour, _) in GLYPHS.items():
        if status == "not_planned":
            continue  # a 4-pixel dot
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert pixels[rgb] >= 40, f"the {status} mark ({colour}) is not drawn"


def test_html_marks_need_no_font(written: dict[str, str]) -> None:
    page = written["compatibility.html"]
    for status, (mark, _) in MARKS.items():
        if status == "not_planned":
            continue  # a middle dot: every font has one
        assert mark not in page.split("<body>")[1], f"{mark!r} needs an emoji font"
    assert page.count('<svg class="mark"') >= len(MARKS)


def test_committed_report_shows_paths_relative_to_the_repository(tmp_path: Path,
                                                                  matrix: Matrix) -> None:
    work = WorkDir(tmp_path / "work", {cell.id: cell for cell in plan_cells(matrix)})
    ci_root = "/home/runner/work/proj/proj"  # where the cell ran: another machine
    skip = (f'<testcase classname="t" name="test_x"><skipped message="no GPU">{ci_root}/'
            'tests/import/test_import.py:170: no GPU</skipped></testcase>')
    work.junit(IDENTITY, "import", junit_xml(IDENTITY, skip))
    work.record(IDENTITY, "failed", stage="identity", root=ci_root,
                reason=f"tinyext was imported from {ci_root}/tinyext/__init__.py",
                details=(f"{ci_root}/tinyext/__init__.py: not the venv",),
                suites={"import": passing_suites()["import"]})
    report = collect(matrix, [work.root])
    cell = report.cell(IDENTITY)
    assert cell is not None
    assert cell.reason == "tinyext was imported from tinyext/__init__.py"
    assert cell.details == ("tinyext/__init__.py: not the venv",)
    # the command is for the repository's root, wherever the record was written
    assert cell.reproduce == f"compatmatrix run --cell {IDENTITY}"
    out = tmp_path / "reports"
    write_report(report, out)
    for name in ("compatibility.md", "compatibility.json", "compatibility.html", "junit.xml"):
        text = (out / name).read_text()
        assert ci_root not in text and str(tmp_path) not in text, name
    assert "tests/import/test_import.py:170" in (out / "junit.xml").read_text()
