"""Resolving a cell: extras against package axes, uv's verdicts, the wheel against the lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from compatmatrix.host.uv import Sources, involves_missing
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.project import ProjectMeta, marker_environment
from compatmatrix.model.spec import load_matrix
from compatmatrix.stages.resolve import (
    _failure,
    axis_conflict,
    cell_requirements,
    unwanted_pins,
    wheel_requirement_problems,
)
from tests.conftest import MINIMAL, WriteMatrix

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
