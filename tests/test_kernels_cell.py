"""This repository's own cell, py3.11 + the CPU torch 2.13.0, end to end, both entry points.

It builds kernels/ for real against the CPU torch in pip's find-links folder (no CUDA
download), then checks the kernels' suites: import and unit pass, the GPU suite is skipped
(never passed) on a machine without an H100-class GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compatmatrix.model.junit import read_junit

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CELL = "py3.11-torch2.13.0-cpu"


def check_record(workdir: Path) -> dict[str, object]:
    record = json.loads((workdir / "results" / f"{CELL}.json").read_text())
    assert record["status"] == "passed", (record["stage"], record["reason"], record["details"])
    suites = record["suites"]
    assert suites["import"]["status"] == "passed" and suites["import"]["passed"] > 0
    assert suites["unit"]["status"] == "passed" and suites["unit"]["passed"] > 0
    assert suites["unit"]["failed"] == suites["unit"]["errors"] == 0
    assert record["built_with_torch"] == record["running_torch"] == "2.13.0+cpu"
    assert record["audit"]["tags"] == ["cp39-abi3-linux_x86_64"]
    return record


def test_cell_through_compatmatrix_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "compatmatrix", "run", "--cell", CELL, "--workdir",
         str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr
    record = check_record(tmp_path)
    gpu = record["suites"]["gpu"]  # type: ignore[index]
    assert gpu["status"] == "not_run" and "h100" in gpu["reason"]
    # Run the GPU suite itself in the cell's venv: its tests skip, none passes.
    junit = tmp_path / "gpu-direct.xml"
    venv_python = tmp_path / "envs" / CELL / "bin" / "python"
    subprocess.run([str(venv_python), "-m", "pytest", "kernels/tests/gpu", "-p",
                    "no:cacheprovider", f"--junitxml={junit}"], cwd=ROOT, timeout=600,
                   capture_output=True, env={**os.environ, "PYTHONNOUSERSITE": "1"})
    cases = read_junit(junit)
    assert cases and all(case.outcome == "skipped" for case in cases)


def test_cell_through_its_nox_session(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "nox", "-l"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert f"- {CELL} " in listed.stdout
    done = subprocess.run([sys.executable, "-m", "nox", "-s", CELL], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "COMPATMATRIX_WORKDIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    check_record(tmp_path)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"{CELL}.json"]
    # the matrix session, narrowed by --select, finds nothing changed and reuses the record
    again = subprocess.run([sys.executable, "-m", "nox", "-s", "matrix", "--", "--select",
                            "python=3.11", "--select", "cuda=cpu"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "COMPATMATRIX_WORKDIR": str(tmp_path),
                                "COMPATMATRIX_REPORTS": str(tmp_path / "reports")})
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "reports" / "compatibility.md").is_file()
    assert "1 cells: 1 passed (1 reused)" in again.stdout + again.stderr
    assert json.loads((tmp_path / "results" / f"{CELL}.json").read_text())["reused"]
