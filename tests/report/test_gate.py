from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from compatmatrix.model.spec import Gate, Quarantine
from compatmatrix.report.gate import evaluate
from compatmatrix.report.model import Report
from tests.conftest import make_package

TODAY = dt.date(2026, 11, 21)


def cell(ident: str, status: str, *, python: str = "3.11", torch: str = "2.13.0",
         stage: str | None = None, failed_tests: tuple[str, ...] = (),
         problems: tuple[str, ...] = ()) -> dict[str, Any]:
    suites = []
    if stage and stage.startswith("suite"):
        suites.append({"name": stage.split(":")[1], "status": "failed", "reason": "1 failed",
                       "collected": 3, "passed": 2, "failed": len(failed_tests), "errors": 0,
                       "skipped": 0, "failed_tests": list(failed_tests), "flaky": [],
                       "problems": []})
    if problems:
        suites.append({"name": "unit", "status": "missing", "reason": "", "collected": 0,
                       "passed": 0, "failed": 0, "errors": 0, "skipped": 0,
                       "failed_tests": [], "flaky": [], "problems": list(problems)})
    return {"id": ident, "axes": {"python": python, "torch": torch}, "status": status,
            "stage": stage, "reason": "" if status == "passed" else f"{status} here",
            "details": [], "reproduce": f"compatmatrix run --cell {ident}", "suites": suites}


def report(*cells: dict[str, Any]) -> Report:
    return Report.from_json({"schema": 1, "axes": ["python", "torch"], "cells": list(cells)})


REQUIRED = Gate(required=((("python", "3.11"), ("torch", "2.13.0")),))


def test_required_cell_must_pass() -> None:
    result = evaluate(REQUIRED, report(cell("a", "failed", stage="build")), None, TODAY)
    assert not result.ok
    assert "required cell is failed at build" in result.failures[0].line()
    assert "reproduce: compatmatrix run --cell a" in result.failures[0].line()
    assert evaluate(REQUIRED, report(cell("a", "passed")), None, TODAY).ok


def test_required_cell_absent_from_results_fails() -> None:
    result = evaluate(REQUIRED, report(cell("b", "passed", python="3.12")), None, TODAY)
    assert not result.ok and "no such cell" in result.failures[0].message


def test_pass_without_test_evidence_is_not_a_pass() -> None:
    current = report(cell("a", "passed", problems=("JUnit file missing",)))
    assert not evaluate(REQUIRED, current, None, TODAY).ok


def test_regression_against_baseline_fails_and_fixes_are_noted() -> None:
    baseline = report(cell("x", "passed", python="3.12"), cell("y", "failed", python="3.10",
                                                                stage="audit"))
    current = report(cell("x", "failed", python="3.12", stage="identity"),
                     cell("y", "passed", python="3.10"))
    result = evaluate(Gate(), current, baseline, TODAY)
    assert [v.cell for v in result.failures] == ["x"]
    message = result.failures[0].message
    assert "regression: passed in the baseline, now failed at identity" in message
    assert any(v.cell == "y" and "fixed" in v.message for v in result.notes)


def test_new_and_incompatible_cells_are_notes_unless_configured() -> None:
    baseline = report(cell("x", "passed"))
    current = report(cell("x", "passed"), cell("n", "failed", python="3.13", stage="build"),
                     cell("i", "incompatible", python="3.12", stage="resolve"))
    relaxed = evaluate(Gate(), current, baseline, TODAY)
    assert relaxed.ok and {v.cell for v in relaxed.notes} >= {"n", "i"}
    strict = evaluate(Gate(fail_on_new=True, fail_on_incompatible=True), current, baseline,
                      TODAY)
    assert {v.cell for v in strict.failures} == {"n", "i"}


def test_quarantine_excuses_known_flaky_tests_until_expiry() -> None:
    flaky = "kernels/tests/unit/test_ops.py::test_flaky"
    current = report(cell("a", "failed", stage="suite:unit", failed_tests=(flaky,)))
    active = Gate(required=REQUIRED.required,
                  quarantine=(Quarantine("*::test_flaky", "issue 12", dt.date(2026, 12, 1)),))
    result = evaluate(active, current, None, TODAY)
    assert result.ok and any("quarantined until 2026-12-01" in v.message for v in result.notes)
    expired = Gate(required=REQUIRED.required,
                   quarantine=(Quarantine("*::test_flaky", "issue 12", dt.date(2026, 11, 1)),))
    result = evaluate(expired, current, None, TODAY)
    assert not result.ok and any("expired on 2026-11-01" in v.message for v in result.notes)


def test_quarantine_does_not_excuse_other_failures() -> None:
    current = report(cell("a", "failed", stage="suite:unit",
                          failed_tests=("t.py::test_flaky", "t.py::test_real")))
    gate = Gate(required=REQUIRED.required,
                quarantine=(Quarantine("t.py::test_flaky", "flaky", dt.date(2027, 1, 1)),))
    assert not evaluate(gate, current, None, TODAY).ok


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="{cell}" tests="1"><testcase classname="t" name="test_ok"/>
</testsuite></testsuites>"""


def write_run(work: Path, statuses: dict[str, str]) -> None:
    for ident, status in statuses.items():
        record = {"schema": 1, "cell": ident, "axes": {"python": ident[2:]}, "status": status,
                  "stage": None if status == "passed" else "build",
                  "reason": "" if status == "passed" else "the wheel did not build",
                  "build_key": "cp3", "reproduce": f"compatmatrix run --cell {ident}",
                  "suites": {} if status != "passed" else {"unit": {
                      "name": "unit", "status": "passed", "collected": 1, "passed": 1,
                      "failed": 0, "errors": 0, "skipped": 0}}}
        (work / "results").mkdir(parents=True, exist_ok=True)
        (work / "results" / f"{ident}.json").write_text(json.dumps(record))
        if status == "passed":
            (work / "junit" / ident).mkdir(parents=True, exist_ok=True)
            (work / "junit" / ident / "unit.xml").write_text(JUNIT.format(cell=ident))


def gate_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compatmatrix", "gate", "--matrix",
                           str(tmp_path / "matrix.yaml"), *args], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


def test_gate_command_exit_codes_and_reproduction(tmp_path: Path) -> None:
    make_package(tmp_path / "pkg")
    (tmp_path / "matrix.yaml").write_text(
        "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n  python: ['3.11', '3.12']\n"
        "suites:\n  unit: {paths: [t]}\ngate:\n  required: [{python: '3.11'}]\n")
    write_run(tmp_path / "good", {"py3.11": "passed", "py3.12": "passed"})
    done = gate_cli(tmp_path, "--from", str(tmp_path / "good"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate: passed" in done.stdout

    write_run(tmp_path / "bad", {"py3.11": "failed", "py3.12": "passed"})
    done = gate_cli(tmp_path, "--from", str(tmp_path / "bad"))
    assert done.returncode == 1
    assert "FAIL: py3.11: required cell is failed at build" in done.stdout
    assert "reproduce: compatmatrix run --cell py3.11" in done.stdout

    baseline = tmp_path / "baseline.json"
    subprocess.run([sys.executable, "-m", "compatmatrix", "report", "--matrix",
                    str(tmp_path / "matrix.yaml"), "--from", str(tmp_path / "good"), "--out",
                    str(tmp_path / "base")], check=True, capture_output=True, timeout=120)
    (tmp_path / "base" / "compatibility.json").rename(baseline)
    write_run(tmp_path / "regressed", {"py3.11": "passed", "py3.12": "failed"})
    done = gate_cli(tmp_path, "--from", str(tmp_path / "regressed"), "--baseline",
                    str(baseline))
    assert done.returncode == 1
    assert "FAIL: py3.12: regression: passed in the baseline" in done.stdout
    assert "reproduce: compatmatrix run --cell py3.12" in done.stdout


def test_a_passed_cell_now_unavailable_is_a_note_not_a_regression() -> None:
    baseline = report(cell("x", "passed"))
    current = report(cell("x", "unavailable", stage="build"))
    result = evaluate(Gate(), current, baseline, TODAY)
    assert result.ok
    assert any("no longer verified" in v.message for v in result.notes)


def test_a_suite_whose_tests_all_skipped_keeps_a_required_cell_from_passing(
        tmp_path: Path) -> None:
    make_package(tmp_path / "pkg")
    (tmp_path / "matrix.yaml").write_text(
        "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n  python: ['3.11']\n"
        "suites:\n  unit: {paths: [t]}\n  later: {paths: [l]}\n  gpu: {paths: [g], requires: "
        "{gpu: h100}}\ngate:\n  required: [{python: '3.11'}]\n")
    write_run(tmp_path / "run", {"py3.11": "passed"})
    path = tmp_path / "run" / "results" / "py3.11.json"
    record = json.loads(path.read_text())
    (tmp_path / "run" / "junit" / "py3.11" / "later.xml").write_text(
        JUNIT.format(cell="py3.11"))
    record["suites"]["later"] = {**record["suites"]["unit"], "name": "later"}
    gpu = {"name": "gpu", "status": "not_run", "collected": 0, "passed": 0, "failed": 0,
           "errors": 0, "skipped": 0, "reason": "needs GPU kind h100; no NVIDIA GPU"}
    record["suites"]["gpu"] = gpu
    path.write_text(json.dumps(record))
    done = gate_cli(tmp_path, "--from", str(tmp_path / "run"))
    assert done.returncode == 0, done.stdout  # a GPU suite without its GPU: expected
    record["suites"]["later"] = {**gpu, "name": "later",
                                 "reason": "all 2 tests skipped: needs vllm"}
    path.write_text(json.dumps(record))
    done = gate_cli(tmp_path, "--from", str(tmp_path / "run"))
    assert done.returncode == 1, done.stdout
    assert ("FAIL: py3.11: required cell is passed, but its test evidence does not show it: "
            "later: not run: all 2 tests skipped: needs vllm") in done.stdout


def test_a_cell_without_a_wheel_of_the_release_fails_the_gate_required_or_not() -> None:
    lacking = cell("py3.12", "failed", python="3.12", stage="select")
    result = evaluate(Gate(), report(cell("a", "passed"), lacking), None, TODAY)
    assert [f.cell for f in result.failures] == ["py3.12"]
    assert "the release has no wheel for this cell: failed here" in result.failures[0].line()
    required = evaluate(Gate(required=((("python", "3.12"),),)), report(lacking), None, TODAY)
    assert len(required.failures) == 1  # once, not twice
