"""The cell pipeline for real: planted failures land at the right stage with a reason.

These build small wheels and create venvs with uv; each runs in a few seconds to a minute.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compatmatrix.model.record import CellRecord, Status, read_record
from compatmatrix.model.spec import load_matrix
from compatmatrix.run.scheduler import make_context, run_cells
from tests.planted import make_project

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
    # the audit never hides test evidence: the wheel installs, so the suites ran too
    assert bad.identity is not None and bad.suites["checks"].status == "passed"
    assert bad.suites["checks"].passed > 0


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
    assert bad.suites["checks"].status == "failed"


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
    from compatmatrix.host.indexes import pip_config_find_links

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
    matrix = Path(__file__).resolve().parents[1] / "projects" / "torchext" / "matrix.yaml"
    record = run_matrix(matrix, tmp_path / "work")["py3.11-torch2.13.0-cpu"]
    assert_good(record)
    assert record.audit is not None and record.audit.tags == ("cp311-cp311-linux_x86_64",)
    assert record.suites["checks"].passed == 2


def test_a_conflict_of_pins_is_incompatible_even_with_the_variant_index_unreachable(
        tmp_path: Path) -> None:
    from compatmatrix.host.indexes import pip_config_find_links

    if not any(Path(d).glob("torch-2.13.0+cpu-cp311-*.whl")
               for d in pip_config_find_links(os.environ)):
        pytest.skip("no CPU torch 2.13.0 wheel in pip's find-links folders")
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11"]
          torch: ["2.13.0"]
          cuda: [cpu]
          vllm: ["0.10.1.1"]
        indexes: {cpu: "http://127.0.0.1:9/simple", find_links: [pip-config]}
        suites:
          checks: {paths: [proj/checks]}
        """)
    record = run_matrix(matrix, tmp_path / "work")["py3.11-torch2.13.0-cpu-vllm0.10.1.1"]
    # uv's derivation is made of the cell's pins and vLLM's own requirement: a proof, which
    # the unreachable CPU index does not weaken
    assert (record.status, record.stage) == (Status.INCOMPATIBLE, "resolve"), record.details
    assert "vllm==0.10.1.1 depends on torch==2.7.1" in "\n".join(record.details)
    assert record.durations["resolve"] < 60


PURE_PROJECT = {
    "proj/pyproject.toml": """
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "shadowed"
        version = "1.0"
        [tool.setuptools]
        packages = ["shadowed"]
        """,
    "proj/shadowed/__init__.py": "VALUE = 1\n",
    "proj/checks/test_value.py": "import shadowed\n\ndef test_value():\n"
                                 "    assert shadowed.VALUE == 1\n",
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def test_tests_that_import_the_source_tree_fail_naming_both_paths(tmp_path: Path) -> None:
    # a conftest that puts the source folder first (a common habit): the tests would pass
    # against the sources, not the wheel, and the cell would prove nothing about what users
    # install
    write_tree(tmp_path, {**PURE_PROJECT,
                          "proj/checks/conftest.py": """
                              import os, sys
                              sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
                              """,
                          "matrix.yaml": """
                              version: 1
                              project: {path: proj, import: shadowed}
                              axes:
                                python: ["3.11"]
                              suites:
                                checks: {paths: [proj/checks]}
                              """})
    record = run_matrix(tmp_path / "matrix.yaml", tmp_path / "work")["py3.11"]
    assert (record.status, record.stage) == (Status.FAILED, "suite:checks")
    venv = tmp_path / "work" / "envs" / "py3.11"
    assert str(tmp_path / "proj" / "shadowed" / "__init__.py") in record.reason
    assert str(venv) in record.reason
    assert record.identity is not None
    assert record.identity.facts["module_file"].startswith(str(venv))


def test_run_from_the_project_root_imports_the_wheel(tmp_path: Path) -> None:
    write_tree(tmp_path, {name.removeprefix("proj/"): text
                          for name, text in PURE_PROJECT.items()})
    write_tree(tmp_path, {"matrix.yaml": """
        version: 1
        project: {path: ., import: shadowed}
        axes:
          python: ["3.11"]
        suites:
          checks: {paths: [checks]}
        """})
    done = subprocess.run([sys.executable, "-m", "compatmatrix", "run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    record = read_record(tmp_path / ".compatmatrix" / "results" / "py3.11.json")
    assert record is not None and record.status is Status.PASSED
    venv = tmp_path / ".compatmatrix" / "envs" / "py3.11"
    assert record.suites["checks"].imported_from == (
        str(venv / "lib" / "python3.11" / "site-packages" / "shadowed" / "__init__.py"),)
    # the reproduce command works from anywhere
    command = shlex.split(record.reproduce)
    assert command[:2] == ["compatmatrix", "run"]
    again = subprocess.run([sys.executable, "-m", "compatmatrix", *command[1:]], cwd="/",
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 reused" in again.stdout


def test_a_cell_in_which_no_test_ran_is_not_passed(tmp_path: Path) -> None:
    write_tree(tmp_path, {**PURE_PROJECT,
                          "proj/skips/test_later.py": """
                              import pytest

                              def test_later():
                                  pytest.skip("needs vllm")
                              """,
                          "matrix.yaml": """
                              version: 1
                              project: {path: proj, import: shadowed}
                              axes:
                                python: ["3.11"]
                              suites:
                                later: {paths: [proj/skips]}
                              """})
    record = run_matrix(tmp_path / "matrix.yaml", tmp_path / "work")["py3.11"]
    assert (record.status, record.stage) == (Status.UNAVAILABLE, "suite:later")
    assert record.reason == "no test ran: later: all 1 test skipped: needs vllm"
    assert record.suites["later"].status == "not_run"


def test_a_test_edit_reuses_the_wheel_the_venv_and_identity(tmp_path: Path) -> None:
    matrix = make_project(tmp_path, "none", """
        axes:
          python: ["3.11"]
        suites:
          checks: {paths: [proj/checks]}
        """)
    first = run_matrix(matrix, tmp_path / "work")["py3.11"]
    assert_good(first)
    assert not first.setup_reused and {"install", "identity"} <= set(first.durations)

    test_file = tmp_path / "proj" / "checks" / "test_planted.py"
    test_file.write_text(test_file.read_text() + "\n\ndef test_added():\n    pass\n")
    edited = run_matrix(matrix, tmp_path / "work")["py3.11"]
    assert_good(edited)
    assert edited.setup_reused and not edited.reused
    assert not {"build", "audit", "install", "identity"} & set(edited.durations)
    assert edited.suites["checks"].passed == first.suites["checks"].passed + 1
    assert (edited.wheel, edited.identity, edited.audit) == (first.wheel, first.identity,
                                                              first.audit)
    assert edited.logs["install"] == first.logs["install"]
    assert run_matrix(matrix, tmp_path / "work")["py3.11"].reused  # then nothing changed

    # a venv changed since (a test installed something) is made again
    site = next((tmp_path / "work" / "envs" / "py3.11").glob("lib/python*/site-packages"))
    (site / "stray-1.0.dist-info").mkdir()
    test_file.write_text(test_file.read_text() + "\n# edited again\n")
    remade = run_matrix(matrix, tmp_path / "work")["py3.11"]
    assert_good(remade)
    assert not remade.setup_reused and {"install", "identity"} <= set(remade.durations)
    assert not (site / "stray-1.0.dist-info").exists()

    # and a source edit rebuilds
    ext = tmp_path / "proj" / "planted" / "_ext.c"
    ext.write_text(ext.read_text() + "\n/* edited */\n")
    rebuilt = run_matrix(matrix, tmp_path / "work")["py3.11"]
    assert_good(rebuilt)
    assert not rebuilt.setup_reused and not rebuilt.wheel_reused
