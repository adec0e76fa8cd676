"""What each tox environment runs, and the share of the cores it gets (no tox needed)."""

from __future__ import annotations

import pytest

from compatmatrix.model.plan import plan_cells
from compatmatrix.model.spec import load_matrix
from compatmatrix.tox.envs import CELLS_LABEL, cpu_share, env_specs
from tests.conftest import MINIMAL, WriteMatrix


def test_one_environment_per_cell_then_compatmatrix_own(write_matrix: WriteMatrix) -> None:
    path = write_matrix(MINIMAL.replace('["3.11"]', '["3.11", "3.12"]\n  vllm: [none, "0.30.0"]'))
    cells = plan_cells(load_matrix(path))
    specs = {spec.name: spec for spec in env_specs(path, cells)}
    ids = ["py3.11", "py3.11-vllm0.30.0", "py3.12", "py3.12-vllm0.30.0"]
    assert list(specs) == [*ids, "compat-matrix", "compat-report", "compat-gate", "compat-ci"]
    cell = specs["py3.12-vllm0.30.0"]
    assert cell.description == "compatmatrix cell py3.12-vllm0.30.0: python 3.12, vllm 0.30.0"
    assert cell.labels == (CELLS_LABEL,)
    assert cell.commands("/py", 4, ["--force"]) == [
        ["/py", "-m", "compatmatrix", "run", "--matrix", str(path), "--cell",
         "py3.12-vllm0.30.0", "-j", "4", "--force"]]
    # the whole matrix as `nox -s matrix` runs it; posargs go to its first command
    assert specs["compat-matrix"].commands("/py", 2, ["--select", "vllm=none"]) == [
        ["/py", "-m", "compatmatrix", "run", "--matrix", str(path), "--exit-zero", "-j", "2",
         "--select", "vllm=none"],
        ["/py", "-m", "compatmatrix", "report", "--matrix", str(path)]]
    assert specs["compat-matrix"].depends == tuple(ids)
    assert specs["compat-gate"].depends == (*ids, "compat-matrix")
    assert specs["compat-ci"].commands("/py", 8, ["--check"]) == [
        ["/py", "-m", "compatmatrix", "ci", "--matrix", str(path), "--check"]]  # no -j
    assert specs["compat-report"].commands("/py", 8) == [
        ["/py", "-m", "compatmatrix", "report", "--matrix", str(path)]]


def test_names_the_project_already_uses_are_left_out(write_matrix: WriteMatrix) -> None:
    path = write_matrix(MINIMAL.replace('["3.11"]', '["3.11", "3.12"]'))
    specs = env_specs(path, plan_cells(load_matrix(path)), leave_out={"py3.11", "lint"})
    assert [spec.name for spec in specs] == ["py3.12", "compat-matrix", "compat-report",
                                             "compat-gate", "compat-ci"]
    assert specs[1].depends == ("py3.12",)


@pytest.mark.parametrize(("cpus", "parallel", "selected", "share"), [
    (16, 0, 5, 16),      # tox run: one environment at a time gets every core
    (16, 16, 1, 16),     # tox p of one environment
    (16, 16, 4, 4),      # tox p -p auto: four cells share the machine
    (16, 2, 4, 8),       # tox p -p 2: two at a time
    (16, None, 5, 3),    # tox p -p all
    (2, None, 8, 1),     # never less than one core
    (1, 4, 4, 1),
])
def test_cpu_share(cpus: int, parallel: int | None, selected: int, share: int) -> None:
    assert cpu_share(cpus, parallel, selected) == share

