"""Test what ships: a wheel built outside compatmatrix, and a published release, end to end.

tests/projects/pure_ranged is copied into a temporary folder; its wheel is built there with
`uv build` (as a release job would) into a folder outside the project, and compatmatrix runs
from the project's root with `run --wheels DIR`, then with `run --requirement` against a
folder index that holds the same wheel. Nothing is built by compatmatrix: no build log, no
build duration, no build environment; the record names the file and its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compatmatrix.host.indexes import pip_config_find_links
from compatmatrix.host.uv import uv_command
from tests.localindex import make_wheel
from tests.test_projects import copy_project, describe, require_python_and_torch

pytestmark = pytest.mark.slow

CELL = "py3.11-torch2.13.0-cpu"
VLLM_CELL = "py3.11-torch2.13.0-cpu-extras-vllm"
WHEEL = "shapecheck-0.5.2-py3-none-any.whl"


@dataclass(frozen=True)
class Done:
    returncode: int
    output: str
    records: dict[str, dict[str, Any]]


def compatmatrix(root: Path, *args: str, env: Mapping[str, str] | None = None) -> Done:
    done = subprocess.run([sys.executable, "-m", "compatmatrix", *args], cwd=root,
                          env=dict(env or os.environ), capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL)
    results = root / ".compatmatrix" / "results"
    records = {p.stem: json.loads(p.read_text(encoding="utf-8"))
               for p in sorted(results.glob("*.json"))} if results.is_dir() else {}
    return Done(done.returncode, done.stdout + done.stderr, records)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def uv_build(project: Path, out: Path) -> Path:
    """The release job: the project's wheel, built without compatmatrix."""
    env = dict(os.environ)
    subprocess.run([*uv_command(env), "build", "--wheel", "--out-dir", str(out), str(project),
                    *(arg for link in pip_config_find_links(env)
                      for arg in ("--find-links", link))],
                   check=True, capture_output=True, timeout=300, env=env)
    return out / WHEEL


@dataclass(frozen=True)
class Given:
    root: Path
    wheels: Path
    first: Done
    rerun: Done


@pytest.fixture(scope="module")
def given(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Given]:
    require_python_and_torch()
    base = tmp_path_factory.mktemp("given")
    root = copy_project("pure_ranged", base, git=False)
    wheels = base / "wheels"
    uv_build(root, wheels)
    first = compatmatrix(root, "run", "-j", "2", "--wheels", str(wheels))
    rerun = compatmatrix(root, "run", "-j", "2", "--wheels", str(wheels))
    yield Given(root, wheels, first, rerun)


def test_the_given_wheel_is_what_the_cell_tests(given: Given) -> None:
    record = given.first.records[CELL]
    assert record["status"] == "passed", describe(record) + given.first.output
    assert record["artifact"] == {"file": WHEEL, "sha256": sha256(given.wheels / WHEEL),
                                  "origin": "given"}
    assert Path(record["wheel"]) == (given.wheels / WHEEL).resolve()
    assert record["suites"]["tests"]["passed"] > 0
    module = Path(record["identity"]["facts"]["module_file"]).resolve()
    assert (given.root / ".compatmatrix" / "envs" / CELL).resolve() in module.parents
    # the wheel's own METADATA is what the cell declared and resolved
    assert ["torch<3.0.0,>=2.4.0", ""] in record["declared"]
    # decided from the given wheel's metadata: that wheel is the cell's input too
    incompatible = given.first.records[VLLM_CELL]
    assert incompatible["status"] == "incompatible"
    assert incompatible["artifact"] == record["artifact"]


def test_nothing_is_built(given: Given) -> None:
    work = given.root / ".compatmatrix"
    for record in given.first.records.values():
        assert "build" not in record["durations"] and "metadata" not in record["durations"]
        assert "build" not in record["logs"] and "metadata" not in record["logs"]
    assert not (work / "wheels").exists() and not (work / "build").exists()
    assert not (work / "metadata").exists()
    assert not any(work.glob("logs/*/build.log"))
    assert not list(given.root.glob("dist"))  # nor a wheel built into the project


def test_an_unchanged_rerun_reuses_the_record(given: Given) -> None:
    assert given.rerun.returncode == 0, given.rerun.output
    assert all(r["reused"] for r in given.rerun.records.values())


def test_the_report_names_the_wheel_and_its_sha256(given: Given) -> None:
    out = given.root / "reports"
    done = compatmatrix(given.root, "report")
    assert done.returncode == 0, done.output
    markdown = (out / "compatibility.md").read_text(encoding="utf-8")
    digest = sha256(given.wheels / WHEEL)
    assert f"| {CELL} | `{WHEEL}` | `{digest[:12]}` | given |" in markdown
    cells = {c["id"]: c for c in json.loads(
        (out / "compatibility.json").read_text(encoding="utf-8"))["cells"]}
    assert cells[CELL]["artifact"]["sha256"] == digest
    assert f"{WHEEL} (sha256 {digest[:12]}, given)" in (
        out / "compatibility.html").read_text(encoding="utf-8")
    for name in ("compatibility.md", "compatibility.json", "compatibility.html"):
        assert str(given.root.parent) not in (out / name).read_text(encoding="utf-8")


def test_a_replaced_wheel_runs_the_cell_again(given: Given, tmp_path: Path) -> None:
    root = copy_project("pure_ranged", tmp_path, git=False)
    shutil.copytree(given.root / ".compatmatrix", root / ".compatmatrix", symlinks=True)
    (root / "shapecheck" / "extra.py").write_text("X = 1\n", encoding="utf-8")
    wheels = uv_build(root, tmp_path / "wheels").parent
    assert sha256(wheels / WHEEL) != sha256(given.wheels / WHEEL)
    done = compatmatrix(root, "run", "-j", "2", "--wheels", str(wheels), "--cell", CELL)
    record = done.records[CELL]
    assert not record["reused"] and record["status"] == "passed", describe(record)
    assert record["artifact"]["sha256"] == sha256(wheels / WHEEL)


def test_a_folder_without_a_wheel_for_the_cell_fails_it_at_select_and_the_gate(
        given: Given, tmp_path: Path) -> None:
    root = copy_project("pure_ranged", tmp_path, git=False)
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "shapecheck", "0.5.1", ["torch>=2.4,<2.13", "packaging"])
    done = compatmatrix(root, "run", "-j", "2", "--wheels", str(wheels))
    assert done.returncode == 1, done.output
    for cell in (CELL, VLLM_CELL):
        record = done.records[cell]
        assert (record["status"], record["stage"]) == ("failed", "select"), describe(record)
        assert record["reason"].startswith("no wheel in ")
        assert record["reason"].endswith(
            "for cp311 linux x86_64 (cpu) whose requirements admit torch 2.13.0: "
            "shapecheck-0.5.1-py3-none-any.whl requires torch<2.13,>=2.4")
        assert record["artifact"] is None and record["durations"] == {}
    gate = compatmatrix(root, "gate")
    assert gate.returncode == 1, gate.output
    assert f"{CELL}: the release has no wheel for this cell: no wheel in" in gate.output


def test_a_published_release_is_fetched_and_tested_without_its_source(
        given: Given, tmp_path: Path) -> None:
    # the release on an index (a folder), and a checkout that holds only the tests and the
    # matrix: no source of the package
    index = tmp_path / "index"
    index.mkdir()
    shutil.copy2(given.wheels / WHEEL, index / WHEEL)
    root = tmp_path / "downstream"
    shutil.copytree(given.root / "tests", root / "tests")
    (root / "matrix.yaml").write_text(
        (given.root / "matrix.yaml").read_text(encoding="utf-8").replace(
            "project: {path: ., import: shapecheck}", "project: {import: shapecheck, "
            "requirement: \"shapecheck==0.5.2\"}"), encoding="utf-8")
    env = {**os.environ, "PIP_FIND_LINKS": " ".join([*pip_config_find_links(os.environ),
                                                      str(index)])}
    done = compatmatrix(root, "run", "-j", "2", env=env)
    record = done.records[CELL]
    assert record["status"] == "passed", describe(record) + done.output
    assert record["artifact"] == {"file": WHEEL, "sha256": sha256(given.wheels / WHEEL),
                                  "origin": "published"}
    assert record["resolved"]["shapecheck"] == "0.5.2"
    assert "build" not in record["durations"] and "select" in record["durations"]
    assert not (root / ".compatmatrix" / "wheels").exists()
    # the same release named on the command line instead
    again = compatmatrix(root, "run", "-j", "2", "--requirement", "shapecheck==0.5.2",
                         "--cell", CELL, env=env)
    assert again.records[CELL]["status"] == "passed", again.output
    missing = compatmatrix(root, "run", "-j", "2", "--requirement", "shapecheck==0.5.3",
                           "--cell", CELL, env=env)
    record = missing.records[CELL]
    assert record["status"] in ("incompatible", "unavailable"), describe(record)
    assert "shapecheck==0.5.3" in record["reason"] + " ".join(record["details"])
