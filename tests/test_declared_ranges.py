"""Declared vs measured, end to end, from the projects' own roots (issue 14).

- tests/projects/declared_range: a pure package (flit) whose `packaging>=22.0` admits a
  version its code cannot use (packaging.metadata.Metadata is 23.2's): the report names the
  failing version and suggests a range, the gate fails on it; lowest-direct tests the
  declared bound with the newest test requirements that install beside it, and a bound
  whose lowest version has no wheel (numpy 1.21.0 on Python 3.12) is unavailable, named,
  never swapped for another version.
- tests/projects/pins_vllm_torch: no project at all, a vLLM x torch pins table from the
  packages' real metadata by `nox -s matrix -- --until resolve`, nothing built.

Both resolve against PyPI (metadata only, and small pure wheels).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compatmatrix.host.interpreters import InterpreterFinder

pytestmark = pytest.mark.slow

PROJECTS = Path(__file__).resolve().parent / "projects"
TIMEOUT = 900


def copy(name: str, dest: Path) -> Path:
    root = dest / name
    shutil.copytree(PROJECTS / name, root, ignore=shutil.ignore_patterns(
        "__pycache__", ".compatmatrix", "reports", ".nox"))
    return root


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compatmatrix", *args], cwd=root,
                          env=dict(os.environ), capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)


def records(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(folder.glob("*.json"))}


def need_pythons(*versions: str) -> None:
    finder = InterpreterFinder(os.environ)
    for version in versions:
        found = finder.find(version)
        if found.path is None:
            pytest.skip(f"no Python {version}: {found.problem}")


LOWEST = "py3.11-packagingge22.0-lowest-direct"
NO_WHEEL = "py3.12-packagingge22.0-extras-arrays-lowest-direct"


def test_a_range_wider_than_what_works(tmp_path: Path) -> None:
    need_pythons("3.11", "3.12")
    root = copy("declared_range", tmp_path)
    run = cli(root, "run", "-j", "2")
    output = run.stdout + run.stderr
    assert run.returncode == 1, output  # cells failed: the run says so
    found = records(root / ".compatmatrix" / "results")
    assert {cell: r["status"] for cell, r in found.items()} == {
        "py3.11-packaging22.0": "failed", "py3.11-packaging23.2": "passed",
        "py3.11-packaging24.2": "passed", LOWEST: "failed", NO_WHEEL: "unavailable"}
    # the failure is the package's, and says what broke
    assert found["py3.11-packaging22.0"]["reason"] == (
        "metacheck does not import: ModuleNotFoundError: No module named 'packaging.metadata'")
    # lowest-direct: the declared bound itself, with the newest test requirements that
    # install beside it (not pytest's newest, which needs a newer packaging)
    lowest = found[LOWEST]["resolved"]
    assert lowest["packaging"] == "22.0"
    assert lowest["pytest"] == found["py3.11-packaging22.0"]["resolved"]["pytest"]
    # numpy 1.21.0 (the extra's bound) has no wheel for 3.12: named, never substituted
    no_wheel = found[NO_WHEEL]
    assert no_wheel["stage"] == "resolve"
    assert no_wheel["reason"] == ("numpy 1.21.0, the lowest numpy>=1.21 admits, has no wheel "
                                  "here; the lowest with one is 1.26.0")
    assert not (root / ".compatmatrix" / "envs" / NO_WHEEL).exists()  # nothing installed
    assert "py3.11-packagingge22.0-lowest-direct" in output

    report = cli(root, "report")
    assert report.returncode == 0, report.stdout + report.stderr
    data = json.loads((root / "reports" / "compatibility.json").read_text(encoding="utf-8"))
    assert data["declared"] == [{
        "package": "packaging", "declared": ">=22.0", "extra": None,
        "passed": {"23.2": ["py3.11-packaging23.2"], "24.2": ["py3.11-packaging24.2"]},
        "failed": {"22.0": ["py3.11-packaging22.0"]},
        "verdict": "admits-failing",
        "findings": ["admits-failing: packaging 22.0 is inside >=22.0 and fails "
                     "(py3.11-packaging22.0)"],
        "suggest": ">=23.2,<=24.2"}]
    markdown = (root / "reports" / "compatibility.md").read_text(encoding="utf-8")
    assert ("| packaging | `>=22.0` | 23.2, 24.2 | 22.0 | admits-failing | `>=23.2,<=24.2` |"
            in markdown)
    assert "Declared vs measured" in (root / "reports" / "compatibility.html").read_text(
        encoding="utf-8")

    gate = cli(root, "gate")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert ("packaging: the declared range >=22.0 admits packaging 22.0, which fails in "
            "py3.11-packaging22.0; measured to work: >=23.2,<=24.2") in gate.stdout
    assert "reproduce: compatmatrix run --cell py3.11-packaging22.0" in gate.stdout

    # unchanged: nothing runs again but the unavailable cell (what was missing may be there
    # now), and the other records are the same
    again = cli(root, "run", "-j", "2")
    assert "(4 reused)" in again.stdout, again.stdout
    rerun = records(root / ".compatmatrix" / "results")
    for cell, record in found.items():
        if cell != NO_WHEEL:
            assert rerun[cell] == {**record, "reused": True}
    assert rerun[NO_WHEEL]["reason"] == no_wheel["reason"]


PINS = {  # (torch, vllm) -> status, as the packages' metadata says on Python 3.12
    ("2.7.1", "0.10.1.1"): "resolvable", ("2.8.0", "0.11.0"): "resolvable",
    ("2.13.0", "0.30.0"): "resolvable",
}


def test_a_pins_table_from_real_metadata_by_nox(tmp_path: Path) -> None:
    need_pythons("3.12")
    root = copy("pins_vllm_torch", tmp_path)
    done = subprocess.run([sys.executable, "-m", "nox", "-s", "matrix", "--", "--until",
                           "resolve"], cwd=root, env=dict(os.environ), capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    work = root / ".compatmatrix"
    found = records(work / "pins")
    assert len(found) == 9, output
    for record in found.values():
        axes = record["axes"]
        expected = PINS.get((axes["torch"], axes["vllm"]), "incompatible")
        assert record["status"] == expected, (record["cell"], record["reason"])
        if expected == "resolvable":
            assert record["resolved"]["torch"] == axes["torch"]
            assert record["resolved"]["vllm"] == axes["vllm"]
    # nothing built, installed or tested; no compatibility report, no results
    assert not (work / "results").exists() and not (work / "build").exists()
    assert not (work / "envs").exists()
    reports = root / "reports"
    assert sorted(p.name for p in reports.iterdir()) == ["pins.json", "pins.md"]
    table = (reports / "pins.md").read_text(encoding="utf-8")
    assert "9 cells: 6 incompatible, 3 resolvable." in table
    assert "| torch \\\\ vllm | vllm 0.10.1.1 | vllm 0.11.0 | vllm 0.30.0 |" in table
    assert "| 2.7.1 | yes | no | no |" in table and "| 2.13.0 | no | no | yes |" in table
    pins = json.loads((reports / "pins.json").read_text(encoding="utf-8"))
    why = {c["id"]: c["reason"] for c in pins["cells"]}
    # uv's own reason for each pair that does not install together
    assert "vllm==0.10.1.1 depends on torch==2.7.1" in why["py3.12-torch2.13.0-vllm0.10.1.1"]

    # a full run has nothing to build: the matrix names no project
    full = cli(root, "run")
    assert full.returncode == 2
    assert "names no project" in full.stderr and "Traceback" not in full.stderr
