"""The matrix run: parallel, incremental, resumable, selectable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compatmatrix.errors import UsageError
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.record import CellRecord, Status, read_record
from compatmatrix.model.spec import load_matrix
from compatmatrix.run.scheduler import make_context, run_cells, select_cells
from tests.planted import make_project

SHARED_KEY = """
axes:
  python: ["3.11", "3.12"]
  pytest-timeout: [none, "2.3.1"]
suites:
  checks: {paths: [proj/checks], workers: 2}
"""


def run(matrix: Path, workdir: Path, **kwargs: object) -> dict[str, CellRecord]:
    ctx = make_context(load_matrix(matrix), workdir, os.environ, jobs=2,
                       force=bool(kwargs.pop("force", False)))
    return {r.cell: r for r in run_cells(ctx, ctx.cells, **kwargs)}  # type: ignore[arg-type]


def built(records: dict[str, CellRecord]) -> list[str]:
    """The cells whose run built a wheel (not reused from the cache, not a reused record)."""
    return sorted(c for c, r in records.items() if not r.reused and not r.wheel_reused)


@pytest.mark.slow
def test_rerun_edit_test_edit_source(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", SHARED_KEY)
    work = tmp_path / "work"
    first = run(matrix, work)
    assert all(r.status is Status.PASSED for r in first.values()), first
    # one build per build key, the other cell of the key reused the wheel
    assert len(built(first)) == 2
    assert {first[c].build_key for c in built(first)} == {"cp311", "cp312"}

    junit = work / "junit" / "py3.11" / "checks.xml"
    stamp = junit.stat().st_mtime_ns
    second = run(matrix, work)
    assert all(r.reused for r in second.values())
    assert junit.stat().st_mtime_ns == stamp  # no suite ran again
    assert all(read_record(work / "results" / f"{c}.json").reused for c in second)

    test_file = tmp_path / "proj" / "checks" / "test_planted.py"
    test_file.write_text(test_file.read_text() + "\n# edited\n")
    third = run(matrix, work)
    assert not any(r.reused for r in third.values())  # suites ran again...
    assert all(r.wheel_reused for r in third.values())  # ...on the wheels already built
    assert junit.stat().st_mtime_ns != stamp

    source = tmp_path / "proj" / "planted" / "_ext.c"
    source.write_text(source.read_text() + "\n/* edited */\n")
    fourth = run(matrix, work)
    assert all(r.status is Status.PASSED for r in fourth.values())
    assert len(built(fourth)) == 2  # each build key rebuilt exactly once
    assert len({r.wheel for r in fourth.values()}) == 2

    forced = run(matrix, work, force=True)
    assert not any(r.reused for r in forced.values())


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_interrupted_run_keeps_finished_records_and_resumes(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11", "3.12"]
        suites:
          checks: {paths: [proj/checks]}
        """)
    work = tmp_path / "work"
    proc = subprocess.Popen(
        [sys.executable, "-m", "compatmatrix", "run", "--matrix", str(matrix), "--workdir",
         str(work), "--jobs", "1"], env={**os.environ, "PLANTED_HANG": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # as a terminal's Ctrl-C finds it, even where these tests run in the background
        # (a shell starts background jobs with SIGINT ignored, and Python then keeps it so)
        preexec_fn=_default_sigint)
    hanging = work / "logs" / "py3.12" / "suite-checks.log"
    deadline = time.monotonic() + 300
    while not (hanging.exists() and (work / "results" / "py3.11.json").exists()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(3)  # inside the hanging test
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "1 of 2 cells have a record" in output
    assert read_record(work / "results" / "py3.11.json").status is Status.PASSED
    assert not (work / "results" / "py3.12.json").exists()
    assert not list((work / "results").glob(".*"))  # no half-written record

    resumed = run(matrix, work)
    assert resumed["py3.11"].reused and not resumed["py3.12"].reused
    assert resumed["py3.12"].status is Status.PASSED


@pytest.mark.slow
def test_fail_fast_starts_no_new_cell(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "build-error", """
        axes:
          python: ["3.12", "3.11"]
        suites:
          checks: {paths: [proj/checks]}
        """)
    ctx = make_context(load_matrix(matrix), tmp_path / "work", os.environ, jobs=1)
    records = run_cells(ctx, ctx.cells, fail_fast=True)
    assert [(r.cell, r.status) for r in records] == [("py3.12", Status.FAILED)]


def test_select_by_id_glob_and_axis_value(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11", "3.12"]
          torch: ["2.9.0", "2.13.0"]
          vllm: [none, "0.30.0"]
        """)
    cells = plan_cells(load_matrix(matrix))
    ids = [c.id for c in select_cells(cells, selects=["torch=2.13.*"])]
    assert ids == ["py3.11-torch2.13.0", "py3.11-torch2.13.0-vllm0.30.0",
                   "py3.12-torch2.13.0", "py3.12-torch2.13.0-vllm0.30.0"]
    ids = [c.id for c in select_cells(cells, ["py3.12-*"], ["vllm=none"])]
    assert ids == ["py3.12-torch2.9.0", "py3.12-torch2.13.0"]
    with pytest.raises(UsageError, match="did you mean 'torch'"):
        select_cells(cells, selects=["toch=2"])
    with pytest.raises(UsageError, match="no cell matches"):
        select_cells(cells, ["py3.9-*"])
