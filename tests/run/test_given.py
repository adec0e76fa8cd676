"""Given wheels, before any cell runs: the globs must find wheels, and each cell fits at most
one of them (fast: nothing is installed)."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from compatmatrix.errors import UsageError
from compatmatrix.model.spec import load_matrix, with_wheels
from compatmatrix.run.scheduler import choose_wheels, make_context
from tests.localindex import make_wheel

MATRIX = """version: 1
project: {import: pkg, wheels: [dist/*.whl]}
axes:
  python: ["3.11", "3.12"]
  torch: ["2.12.0", "2.13.0"]
  cuda: [cpu]
suites:
  unit: {paths: [tests]}
"""


def write(tmp_path: Path, text: str = MATRIX) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_glob_that_finds_no_wheel_is_a_usage_error_at_its_place(tmp_path: Path) -> None:
    matrix = load_matrix(write(tmp_path))
    with pytest.raises(UsageError) as info:
        make_context(matrix, tmp_path / "work", os.environ)
    assert str(info.value).startswith(f"{tmp_path / 'matrix.yaml'}:2:33: project.wheels "
                                      "'dist/*.whl' matches no wheel file (*.whl)")


def test_each_cell_gets_its_wheel_or_the_reason_it_has_none(tmp_path: Path) -> None:
    make_wheel(tmp_path / "dist", "pkg", "1.0", ["torch>=2.13,<2.14"])
    ctx = make_context(load_matrix(write(tmp_path)), tmp_path / "work", os.environ)
    chosen = choose_wheels(ctx, ctx.cells)
    assert sorted(chosen) == sorted(c.id for c in ctx.cells)
    for cell_id, selection in chosen.items():
        if "torch2.13.0" in cell_id:
            assert selection.wheel is not None
            assert selection.wheel.file == "pkg-1.0-py3-none-any.whl"
        else:
            assert selection.wheel is None
            assert selection.reason.startswith("no wheel in dist/ for cp3")
            assert selection.reason.endswith("whose requirements admit torch 2.12.0: "
                                             "pkg-1.0-py3-none-any.whl requires "
                                             "torch<2.14,>=2.13")
    # nothing was built or planned to be: no build folder in the work directory
    assert not (tmp_path / "work" / "wheels").exists()


@pytest.mark.skipif(not sysconfig.get_platform().startswith("linux-x86_64"),
                    reason="manylinux x86_64 tags")
def test_two_wheels_for_one_cell_stop_the_run_naming_them(tmp_path: Path) -> None:
    folder = tmp_path / "wheels"
    make_wheel(folder, "pkg", "1.0", ["torch>=2.12"])
    pure = folder / "pkg-1.0-py3-none-any.whl"
    pure.rename(folder / "pkg-1.0-cp39-abi3-manylinux_2_28_x86_64.whl")
    make_wheel(folder, "pkg", "1.0", ["torch>=2.12"])
    matrix = with_wheels(load_matrix(write(tmp_path, MATRIX.replace(
        "{import: pkg, wheels: [dist/*.whl]}", "{import: pkg, requirement: pkg==1.0}"))),
        folder)
    ctx = make_context(matrix, tmp_path / "work", os.environ)
    with pytest.raises(UsageError) as info:
        choose_wheels(ctx, ctx.cells)
    text = str(info.value)
    assert text.startswith("more than one wheel in wheels/ fits a cell")
    assert ("  py3.11-torch2.12.0-cpu: pkg-1.0-cp39-abi3-manylinux_2_28_x86_64.whl, "
            "pkg-1.0-py3-none-any.whl") in text
    assert text.count("\n  py3") == 4  # every cell, sorted
