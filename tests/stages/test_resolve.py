"""Resolving a cell: extras against package axes, uv's verdicts, the wheel against the lock."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from compatmatrix.host.uv import Sources, involves_missing, uv_command
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.project import ProjectMeta, marker_environment
from compatmatrix.model.record import Status
from compatmatrix.model.spec import load_matrix
from compatmatrix.stages.resolve import (
    _failure,
    axis_conflict,
    cell_requirements,
    highest_pins,
    resolve_cell,
    unwanted_pins,
    wheel_requirement_problems,
)
from tests.conftest import MINIMAL, WriteMatrix
from tests.localindex import make_sdist, make_wheel

ENV = marker_environment("3.11.7")
SAGE = ProjectMeta(
    "sage-like", "0.3",
    ("torch>=2.4.0,<3.0.0", "packaging", 'vllm>=0.10.1; extra == "vllm"',
     'uvloop; sys_platform == "win32" and extra == "vllm"'),
    ("vllm",), ">=3.9", "pyproject.toml")


def cells(write_matrix: WriteMatrix, axes: str) -> dict[str, object]:
    matrix = load_matrix(write_matrix(MINIMAL + axes))
    return {"matrix": matrix, **{c.id: c for c in plan_cells(matrix)}}


def test_an_extra_requiring_a_package_the_cell_leaves_out_is_incompatible(
        write_matrix: WriteMatrix) -> None:
    found = cells(write_matrix, "  torch: [\"2.13.0\"]\n  extras: [none, vllm]\n"
                                "  vllm: [none, \"0.9.2\", \"0.30.0\", \">=0.10\"]\n")
    matrix = found["matrix"]

    def conflict(cell_id: str) -> str | None:
        return axis_conflict(matrix, found[cell_id], SAGE, ENV)  # type: ignore[arg-type]

    assert conflict("py3.11-torch2.13.0-extras-vllm") == (
        "extra 'vllm' requires vllm>=0.10.1, the cell says vllm: none")
    assert conflict("py3.11-torch2.13.0-extras-vllm-vllm0.9.2") == (
        "extra 'vllm' requires vllm>=0.10.1, the cell says vllm 0.9.2")
    assert conflict("py3.11-torch2.13.0-extras-vllm-vllm0.30.0") is None
    assert conflict("py3.11-torch2.13.0-extras-vllm-vllmge0.10") is None  # a range: uv decides
    assert conflict("py3.11-torch2.13.0") is None  # the extra is not in play


def test_the_package_requiring_what_the_cell_leaves_out_is_incompatible(
        write_matrix: WriteMatrix) -> None:
    found = cells(write_matrix, "  torch: [none, \"2.3.1\"]\n")
    matrix = found["matrix"]
    assert axis_conflict(matrix, found["py3.11"], SAGE, ENV) == (  # type: ignore[arg-type]
        "sage-like requires torch<3.0.0,>=2.4.0, the cell says torch: none")
    assert axis_conflict(matrix, found["py3.11-torch2.3.1"], SAGE, ENV) == (  # type: ignore
        "sage-like requires torch<3.0.0,>=2.4.0, the cell says torch 2.3.1")


def test_a_marker_that_does_not_hold_here_is_no_conflict(write_matrix: WriteMatrix) -> None:
    found = cells(write_matrix, "  torch: [\"2.13.0\"]\n  extras: [vllm]\n"
                                "  vllm: [\"0.30.0\"]\n  uvloop: [none]\n")
    cell = found["py3.11-torch2.13.0-extras-vllm-vllm0.30.0"]
    assert axis_conflict(found["matrix"], cell, SAGE, ENV) is None  # type: ignore[arg-type]


def test_requirements_put_the_extras_in_play_and_pin_every_axis(
        write_matrix: WriteMatrix) -> None:
    found = cells(write_matrix, "  torch: [\"2.13.0\"]\n  cuda: [cpu]\n  extras: [vllm]\n"
                                "  vllm: [\"0.30.0\"]\n")
    cell = found["py3.11-torch2.13.0-cpu-extras-vllm-vllm0.30.0"]
    reqs = cell_requirements(found["matrix"], cell,  # type: ignore[arg-type]
                             SAGE.requirements(("vllm",), ENV), "https://idx/cpu")
    # the extra's win32-only requirement does not apply on this machine's platform
    assert reqs[:5] == ["torch>=2.4.0,<3.0.0", "packaging", "vllm>=0.10.1",
                        "torch==2.13.0+cpu", "vllm==0.30.0"]


def test_a_package_the_cell_leaves_out_that_comes_in_anyway(write_matrix: WriteMatrix) -> None:
    found = cells(write_matrix, "  vllm: [none]\n")
    assert unwanted_pins(found["matrix"], found["py3.11"],  # type: ignore[arg-type]
                         {"vllm": "0.32.0", "torch": "2.9.0"}) == (
        "the requirements bring in vllm 0.32.0 (through another package), but the cell says "
        "vllm: none")
    assert unwanted_pins(found["matrix"], found["py3.11"], {"torch": "2.9.0"}) is None  # type: ignore[arg-type]


# uv's words (0.13): a contradiction between requirements, and a version missing from what
# uv could see. Only the second may be an index's absence.
CONFLICT = """error: No solution found when resolving dependencies
  cause: Because vllm==0.10.1.1 depends on torch==2.7.1 and you require vllm==0.10.1.1, we can conclude that you require torch==2.7.1.
         And because you require torch==2.13.0+cpu, we can conclude that your requirements are unsatisfiable.
"""  # noqa: E501
MISSING = """error: No solution found when resolving dependencies
  cause: Because there is no version of torch==2.13.0+cpu and you require torch==2.13.0+cpu, we can conclude that your requirements are unsatisfiable.
"""  # noqa: E501
OLDER_UV = """  \u00d7 No solution found when resolving dependencies:
  ╰─▶ Because only torch<=2.9.0 is available and you require torch==2.13.0, we can conclude
      that your requirements are unsatisfiable.
"""
SKIPPED = Sources(None, ("/wheels",), "index https://download.pytorch.org/whl/cpu is not "
                                      "reachable (timed out)")


def test_a_conflict_of_pins_is_incompatible_even_with_the_index_unreachable() -> None:
    result = _failure(CONFLICT, [], SKIPPED, 1.0)
    assert result.status == "incompatible"
    assert "vllm==0.10.1.1 depends on torch==2.7.1" in result.explanation


@pytest.mark.parametrize("output", [MISSING, OLDER_UV])
def test_a_missing_version_is_unavailable_only_when_an_index_was_skipped(output: str) -> None:
    assert involves_missing(output)
    assert _failure(output, [], SKIPPED, 1.0).status == "unavailable"
    assert _failure(output, [], Sources(None, ()), 1.0).status == "incompatible"
    assert not involves_missing(CONFLICT)


def test_wheel_requirements_are_checked_against_the_lock() -> None:
    pins = {"torch": "2.13.0+cpu", "packaging": "25.0"}
    assert wheel_requirement_problems(["torch<2.14,>=2.13", "packaging"], pins, ENV) == []
    assert wheel_requirement_problems(["torch<2.13", "numpy", 'x; python_version < "3"'],
                                      pins, ENV) == [
        "it requires torch<2.13, but torch 2.13.0+cpu was resolved",
        "it requires numpy, which the resolved pins do not include"]
    assert wheel_requirement_problems(["torch"], {}, ENV, skip=("torch",)) == []


def test_matrix_path_helpers_stay_relative(tmp_path: Path) -> None:
    from compatmatrix.model.record import reproduce_command

    matrix = tmp_path / "proj" / "matrix.yaml"
    assert reproduce_command(matrix, "c") == f"compatmatrix run --matrix {matrix} --cell c"
    assert reproduce_command(matrix, "c", tmp_path / "proj") == "compatmatrix run --cell c"
    assert reproduce_command(matrix, "c", tmp_path) == (
        "compatmatrix run --matrix proj/matrix.yaml --cell c")


# --- lowest resolutions, against a folder index (no network) -----------------------------


@pytest.fixture
def folder_index(tmp_path: Path) -> tuple[Sources, dict[str, str], Path]:
    """cmx-low: 1.0 is an sdist only, 1.1 and 2.0 wheels; cmx-tool 1.0 and 3.0 (3.0 needs
    cmx-low>=2); cmx-plain 1.0 and 1.5 wheels."""
    wheels = tmp_path / "index"
    make_sdist(wheels, "cmx-low", "1.0")
    make_wheel(wheels, "cmx-low", "1.1")
    make_wheel(wheels, "cmx-low", "2.0")
    make_wheel(wheels, "cmx-tool", "1.0")
    make_wheel(wheels, "cmx-tool", "3.0", ["cmx-plain>=1.5"])
    make_wheel(wheels, "cmx-plain", "1.0")
    make_wheel(wheels, "cmx-plain", "1.5")
    env = {**os.environ, "UV_NO_INDEX": "1", "UV_CACHE_DIR": str(tmp_path / "cache"),
           "UV_PYTHON_DOWNLOADS": "never"}
    return Sources(None, (str(wheels),)), env, tmp_path


def python_here() -> Path:
    return Path(sys.executable)


def test_a_lowest_version_without_a_wheel_is_unavailable_and_named(
        folder_index: tuple[Sources, dict[str, str], Path]) -> None:
    sources, env, tmp = folder_index
    result = resolve_cell(["cmx-low>=1.0"], uv=uv_command(env), interpreter=python_here(),
                          sources=sources, lock=tmp / "lock.txt", log=tmp / "log",
                          env=env, timeout=120, resolution="lowest-direct")
    assert result.status is Status.UNAVAILABLE
    assert result.reason == ("cmx-low 1.0, the lowest cmx-low>=1.0 admits, has no wheel here; "
                             "the lowest with one is 1.1")
    assert "never substitutes another version silently" in result.explanation
    assert not (tmp / "lock.txt").exists()  # nothing to install from
    # the newest resolution is untouched: 2.0 has a wheel
    newest = resolve_cell(["cmx-low>=1.0"], uv=uv_command(env), interpreter=python_here(),
                          sources=sources, lock=tmp / "lock.txt", log=tmp / "log", env=env,
                          timeout=120)
    assert newest.status is None and newest.pins == {"cmx-low": "2.0"}


def test_lowest_direct_moves_the_project_and_not_its_test_requirements(
        folder_index: tuple[Sources, dict[str, str], Path]) -> None:
    sources, env, tmp = folder_index
    kwargs: dict[str, Any] = {"uv": uv_command(env), "interpreter": python_here(),
                              "sources": sources, "log": tmp / "log", "env": env,
                              "timeout": 120}
    # cmx-tool 3.0 needs cmx-plain>=1.5: pinning it alone to its newest would raise the
    # project's own bound; the newest that installs beside cmx-plain 1.0 is 1.0
    tests = highest_pins(["cmx-tool"], ["cmx-plain>=1.0"], resolution="lowest-direct",
                         constraints=tmp / "c.txt", **kwargs)
    assert tests == ["cmx-tool==1.0"]
    result = resolve_cell(["cmx-plain>=1.0", *tests], lock=tmp / "lock.txt",
                          resolution="lowest-direct", **kwargs)
    assert result.status is None
    assert result.pins == {"cmx-plain": "1.0", "cmx-tool": "1.0"}
    # where nothing holds the test requirement back, it stays at its newest
    assert highest_pins(["cmx-tool"], ["cmx-low>=1.1"], resolution="lowest-direct",
                        constraints=tmp / "c.txt", **kwargs) == ["cmx-tool==3.0"]


FAKE_UV = """#!/bin/sh
# a uv whose cache holds cmx-cached only: offline, anything else is "not in the cache"
echo "$@" >> "$0.calls"
case "$*" in
  *--offline*) if grep -q cmx-missing "$3"; then
      echo "error: No solution found when resolving dependencies" >&2
      echo "  cause: Because cmx-missing was not found in the cache and you require" >&2
      echo "hint: Packages were unavailable because the network was disabled." >&2
      exit 1; fi ;;
esac
sed 's/>=.*$/==1.0/' "$3"
"""


@pytest.mark.parametrize(("requirement", "calls"), [("cmx-cached>=1", 1),
                                                    ("cmx-missing>=1", 2)])
def test_a_resolve_only_run_asks_its_snapshot_offline_first(tmp_path: Path, requirement: str,
                                                            calls: int) -> None:
    uv = tmp_path / "uv"
    uv.write_text(FAKE_UV)
    uv.chmod(0o755)
    result = resolve_cell([requirement], uv=(str(uv),), interpreter=Path(sys.executable),
                          sources=Sources(None, ()), lock=tmp_path / "lock.txt",
                          log=tmp_path / "log", env=dict(os.environ), timeout=60,
                          snapshot=True)
    assert result.status is None and result.pins == {requirement.split(">")[0]: "1.0"}
    argvs = (tmp_path / "uv.calls").read_text().splitlines()
    assert len(argvs) == calls  # the index only for what the snapshot lacks
    assert "--offline" in argvs[0]
    assert all("--offline" not in argv for argv in argvs[1:])
