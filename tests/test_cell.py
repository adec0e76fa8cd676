"""The cell pipeline for real: planted failures land at the right stage with a reason.

These build small wheels and create venvs with uv; each runs in a few seconds to a minute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from compatmatrix.orchestrate import make_context, run_cells
from compatmatrix.results import CellRecord, Status, read_record
from compatmatrix.spec import load_matrix

from .planted import make_project

pytestmark = pytest.mark.slow

TWO_PYTHONS = """
axes:
  python: ["3.11", "3.12"]
suites:
  checks: {paths: [proj/checks], workers: 2}
"""


def run_matrix(matrix_path: Path, workdir: Path) -> dict[str, CellRecord]:
    ctx = make_context(load_matrix(matrix_path), workdir, os.environ, jobs=2)
    records = run_cells(ctx, ctx.cells)
    on_disk = {r.cell: read_record(ctx.workdir.record(r.cell)) for r in records}
    assert all(on_disk.values()), "every cell must leave a record"
    return {cell: rec for cell, rec in on_disk.items() if rec is not None}


def assert_good(record: CellRecord) -> None:
    assert record.status is Status.PASSED, (record.stage, record.reason, record.details)


def test_abi3_wheel_with_a_cpython_specific_extension_fails_audit(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "abi3-mismatch", TWO_PYTHONS)
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11"])
    bad = records["py3.12"]
    assert (bad.status, bad.stage) == (Status.FAILED, "audit")
    assert "cpython-312" in bad.reason and "3.11" in bad.reason, bad.reason


def test_wheel_without_a_torch_bound_fails_audit(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "torch-unbounded", """
        axes:
          python: ["3.11"]
          torch: [none, "2.13.0"]
        suites:
          checks: {paths: [proj/checks]}
        """)
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11"])
    bad = records["py3.11-torch2.13.0"]
    assert (bad.status, bad.stage) == (Status.FAILED, "audit")
    assert "torch" in bad.reason and "2.14" in " ".join(bad.details), bad.details


def test_extension_whose_import_segfaults_fails_identity(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "segfault", TWO_PYTHONS)
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11"])
    bad = records["py3.12"]
    assert (bad.status, bad.stage) == (Status.FAILED, "identity")
    assert "SIGSEGV" in "\n".join(bad.details) or "SIGSEGV" in bad.reason + str(bad.identity)
    assert "does not import" in bad.reason


def test_hanging_test_is_a_timeout_at_its_suite(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "hang", TWO_PYTHONS + "timeouts: {suite: 20}\n")
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11"])
    bad = records["py3.12"]
    assert (bad.status, bad.stage) == (Status.FAILED, "suite:checks")
    assert "timed out" in bad.reason


def test_crashed_worker_is_never_green(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "worker-crash", TWO_PYTHONS)
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11"])
    bad = records["py3.12"]
    assert (bad.status, bad.stage) == (Status.FAILED, "suite:checks")
    assert bad.suites["checks"]["status"] == "failed"


def test_unsatisfiable_pins_are_incompatible_with_uvs_reason(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11"]
          torch: ["2.13.0"]
          vllm: [none, "0.10.1.1"]
        suites:
          checks: {paths: [proj/checks]}
        """)
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11-torch2.13.0"])
    bad = records["py3.11-torch2.13.0-vllm0.10.1.1"]
    assert (bad.status, bad.stage) == (Status.INCOMPATIBLE, "resolve")
    explanation = "\n".join(bad.details)
    assert "vllm==0.10.1.1 depends on torch==2.7.1" in explanation, explanation


def test_missing_interpreter_is_unavailable_and_says_how_to_get_it(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11", "3.99"]
          extras: [none]
        suites:
          checks: {paths: [proj/checks]}
        """)
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11"])
    bad = records["py3.99"]
    assert bad.status is Status.UNAVAILABLE
    assert "pyenv install 3.99" in bad.reason


def test_cells_sharing_a_build_key_build_once(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11"]
          pytest-timeout: [none, "2.3.1"]
        suites:
          checks: {paths: [proj/checks]}
        """)
    records = run_matrix(matrix, tmp_path / "work")
    first, second = records["py3.11"], records["py3.11-pytest-timeout2.3.1"]
    assert_good(first)
    assert_good(second)
    assert first.build_key == second.build_key
    assert (first.wheel_reused, second.wheel_reused) == (False, True)
    assert first.wheel == second.wheel
    assert second.resolved["pytest-timeout"] == "2.3.1"
    data = json.loads((tmp_path / "work/results/py3.11-pytest-timeout2.3.1.json").read_text())
    assert data["schema"] == 1 and data["reproduce"].endswith("--cell py3.11-pytest-timeout2.3.1")


def test_failed_build_keeps_its_first_error_lines(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "build-error", TWO_PYTHONS)
    records = run_matrix(matrix, tmp_path / "work")
    assert_good(records["py3.11"])
    bad = records["py3.12"]
    assert (bad.status, bad.stage) == (Status.FAILED, "build")
    assert any("planted build error" in line for line in bad.details), bad.details


def simple_index(root: Path, wheel: Path) -> str:
    """A PEP 503 index folder holding one wheel, as a file:// URL."""
    project = root / wheel.name.split("-")[0].lower()
    project.mkdir(parents=True)
    (project / wheel.name).symlink_to(wheel)
    (project / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    (root / "index.html").write_text(f'<a href="{project.name}/">{project.name}</a>\n')
    return root.as_uri()


def test_variant_from_a_local_index_folder(tmp_path: Path) -> None:
    from compatmatrix.indexes import pip_config_find_links

    wheels = [w for d in pip_config_find_links(os.environ) for w in
              Path(d).glob("torch-2.13.0+cpu-cp311-*.whl")]
    if not wheels:
        pytest.skip("no CPU torch 2.13.0 wheel in pip's find-links folders")
    index = simple_index(tmp_path / "index", wheels[0])
    matrix = make_project(tmp_path, "none", f"""
        axes:
          python: ["3.11"]
          torch: ["2.13.0"]
          cuda: [cpu]
        indexes: {{cpu: "{index}"}}
        suites:
          checks: {{paths: [proj/checks]}}
        """)
    record = run_matrix(matrix, tmp_path / "work")["py3.11-torch2.13.0-cpu"]
    assert_good(record)
    assert record.resolved["torch"] == "2.13.0+cpu"


def test_unreachable_index_is_unavailable_fast(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11"]
          torch: ["2.13.0"]
          cuda: [cu999]
        indexes: {cu999: "http://127.0.0.1:9/simple"}
        suites:
          checks: {paths: [proj/checks]}
        """)
    record = run_matrix(matrix, tmp_path / "work")["py3.11-torch2.13.0-cu999"]
    assert (record.status, record.stage) == (Status.UNAVAILABLE, "resolve")
    assert "127.0.0.1:9" in "\n".join(record.details)
    assert record.durations["resolve"] < 60


def test_another_torch_extension_with_its_own_layout(tmp_path: Path) -> None:
    matrix = Path(__file__).parent / "projects" / "torchext" / "matrix.yaml"
    record = run_matrix(matrix, tmp_path / "work")["py3.11-torch2.13.0-cpu"]
    assert_good(record)
    assert record.audit is not None and record.audit["tags"] == ["cp311-cp311-linux_x86_64"]
    assert record.suites["checks"]["passed"] == 2
