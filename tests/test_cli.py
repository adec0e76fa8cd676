from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MINIMAL, WriteMatrix


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compatmatrix", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_plan_json_lists_cells_with_ids_axes_and_build_keys(write_matrix: WriteMatrix,
                                                            tmp_path: Path) -> None:
    write_matrix(MINIMAL.replace('["3.11"]', '["3.11"]\n  vllm: [none, "0.30.0"]'))
    done = run_cli("plan", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cells = json.loads(done.stdout)
    assert [c["id"] for c in cells] == ["py3.11", "py3.11-vllm0.30.0"]
    assert cells[0]["axes"] == {"python": "3.11", "vllm": None}
    assert cells[1]["build_key"] == "cp311"
    assert "interpreter" in cells[0]


def test_plan_table_shows_interpreters(write_matrix: WriteMatrix, tmp_path: Path) -> None:
    path = write_matrix(MINIMAL)
    done = run_cli("plan", "--matrix", str(path), cwd=Path("/"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["cell", "python", "build", "key", "interpreter"]
    assert lines[2].startswith("py3.11 ")
    assert "1 cells, 1 build keys" in done.stdout


@pytest.mark.parametrize("text", [
    "version: 1\nproject: {path: pkg, import: pkg}\naxes: {pyton: ['3.11']}\n",
    "version: 1\nproject: [\n",
    "version: 2\n",
])
def test_bad_matrix_exits_2_without_traceback(write_matrix: WriteMatrix, tmp_path: Path,
                                              text: str) -> None:
    write_matrix(text)
    done = run_cli("plan", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "matrix.yaml:" in done.stderr and "error:" in done.stderr


def test_missing_matrix_file_exits_2(tmp_path: Path) -> None:
    done = run_cli("plan", "--matrix", "nope.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "matrix file not found" in done.stderr


def test_the_summary_never_cuts_a_reason_so_that_its_cause_is_lost(tmp_path: Path) -> None:
    from compatmatrix.cli import summary_table
    from compatmatrix.model.record import CellRecord, Status
    from compatmatrix.model.workdir import WorkDir
    from compatmatrix.run.progress import outcome

    cause = "but the extension was built against torch 2.13.0+cpu and fails to load"
    long = "torch<3,>=2.4 admits torch 2.14.0, 2.12.0, " + cause
    records = [CellRecord("py3.11-a", {}, Status.FAILED, stage="audit", reason=long),
               CellRecord("py3.11-b", {}, Status.PASSED)]
    text = summary_table(records, WorkDir(tmp_path))
    assert f"py3.11-a: {long}" in text.splitlines()
    assert all(long not in line for line in text.splitlines()[:4])  # the table stays narrow
    assert outcome(records[0]).endswith(cause)


@pytest.mark.parametrize(("args", "words"), [
    (("--wheels", "nope"), "--wheels nope does not exist; give the folder that holds the wheels"),
    (("--wheels", "empty"), "matches no wheel file (*.whl); build the wheels first"),
    (("--requirement", "pkg>=1"), "--requirement 'pkg>=1' must pin one version with '=='"),
    (("--requirement", "pkg==="), "--requirement 'pkg===' is not a requirement"),
    (("--wheels", "empty", "--requirement", "pkg==1"),
     "argument --requirement: not allowed with argument --wheels"),
])
def test_run_with_bad_wheels_or_requirement_exits_2_saying_what_to_do(
        write_matrix: WriteMatrix, tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    write_matrix(MINIMAL)
    (tmp_path / "empty").mkdir()
    done = run_cli("run", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".compatmatrix" / "results").exists() or not any(
        (tmp_path / ".compatmatrix" / "results").iterdir())


def test_plan_says_what_a_wheels_matrix_tests(write_matrix: WriteMatrix,
                                              tmp_path: Path) -> None:
    write_matrix(MINIMAL.replace("{path: pkg,", "{wheels: [dist/*.whl],"))
    done = run_cli("plan", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no build: each cell tests the wheels of dist/*.whl" in done.stdout
    assert "1 cells, nothing built here" in done.stdout
