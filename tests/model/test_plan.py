from __future__ import annotations

import re

from compatmatrix.model.plan import cell_id, matches, plan_cells
from compatmatrix.model.spec import NONE, load_matrix
from tests.conftest import WriteMatrix

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")

MATRIX = """
version: 1
project: {path: pkg, import: pkg, abi3: ">=2.6"}
axes:
  python: ["3.10", "3.11"]
  torch: ["2.5.1", "2.9.0", "2.13.0"]
  cuda: [cpu, cu128, cu130]
  vllm: [none, "0.30.0"]
exclude:
  - {torch: "<2.10", cuda: cu130}
  - {torch: ">=2.10", cuda: "cu12*"}
  - {vllm: "0.30.0", torch: "!=2.13.0"}
include:
  - {python: "3.12", torch: "2.13.0", cuda: cu130, vllm: "0.30.0"}
  - {python: "3.11", torch: "2.9.0", cuda: cu130}
  - {python: "3.10", torch: "2.13.0", cuda: cpu}
"""


def test_product_minus_exclude_plus_include(write_matrix: WriteMatrix) -> None:
    cells = plan_cells(load_matrix(write_matrix(MATRIX)))
    ids = [cell.id for cell in cells]
    assert ids == [
        "py3.10-torch2.5.1-cpu", "py3.10-torch2.5.1-cu128",
        "py3.10-torch2.9.0-cpu", "py3.10-torch2.9.0-cu128",
        "py3.10-torch2.13.0-cpu", "py3.10-torch2.13.0-cpu-vllm0.30.0",
        "py3.10-torch2.13.0-cu130", "py3.10-torch2.13.0-cu130-vllm0.30.0",
        "py3.11-torch2.5.1-cpu", "py3.11-torch2.5.1-cu128",
        "py3.11-torch2.9.0-cpu", "py3.11-torch2.9.0-cu128",
        "py3.11-torch2.13.0-cpu", "py3.11-torch2.13.0-cpu-vllm0.30.0",
        "py3.11-torch2.13.0-cu130", "py3.11-torch2.13.0-cu130-vllm0.30.0",
        # includes: a new value, then an excluded combination brought back; the third
        # include is already planned and adds nothing
        "py3.12-torch2.13.0-cu130-vllm0.30.0",
        "py3.11-torch2.9.0-cu130",
    ]
    assert len(set(ids)) == len(ids)
    assert all(SAFE.match(i) for i in ids)


def test_build_key_ignores_vllm_and_uses_abi3_where_torch_allows(
        write_matrix: WriteMatrix) -> None:
    cells = {c.id: c for c in plan_cells(load_matrix(write_matrix(MATRIX)))}
    assert cells["py3.10-torch2.5.1-cpu"].build_key == "cp310-torch2.5.1-cpu"
    assert cells["py3.11-torch2.5.1-cpu"].build_key == "cp311-torch2.5.1-cpu"
    assert (cells["py3.10-torch2.13.0-cpu"].build_key
            == cells["py3.11-torch2.13.0-cpu-vllm0.30.0"].build_key
            == "abi3-torch2.13.0-cpu")


def test_specifier_values_get_safe_unique_ids(write_matrix: WriteMatrix) -> None:
    cells = plan_cells(load_matrix(write_matrix("""
        version: 1
        project: {path: pkg, import: pkg}
        axes:
          python: ["3.11"]
          torch: [">=2.9,<2.10", "2.13.*", "~=2.9.0"]
          extras: [none, [dev, test]]
        """)))
    ids = [c.id for c in cells]
    assert ids[0] == "py3.11-torchge2.9_lt2.10"
    assert "py3.11-torcheq2.13.x-extras-dev.test" in ids
    assert "py3.11-torchcompat2.9.0" in ids
    assert all(SAFE.match(i) for i in ids) and len(set(ids)) == len(ids)


def test_colliding_ids_are_made_unique(write_matrix: WriteMatrix) -> None:
    cells = plan_cells(load_matrix(write_matrix("""
        version: 1
        project: {path: pkg, import: pkg}
        axes:
          python: ["3.11"]
          torch: ["<2.10", "<2.10.0"]
        """)))
    ids = [c.id for c in cells]
    assert len(set(ids)) == 2 and all(i.startswith("py3.11-torchlt2.10") for i in ids)


def test_matches_specifiers_globs_and_none() -> None:
    assert matches({"torch": "<2.10"}, {"torch": "2.9.0"})
    assert not matches({"torch": "<2.10"}, {"torch": "2.13.0"})
    assert not matches({"torch": "<2.10"}, {"torch": NONE})
    assert matches({"cuda": "cu12*"}, {"cuda": "cu128"})
    assert matches({"python": ">=3.12"}, {"python": "3.13"})
    assert matches({"vllm": NONE}, {})


def test_cell_id_leaves_out_none() -> None:
    assert cell_id([("python", "3.11"), ("torch", "2.13.0"), ("cuda", "cpu"),
                    ("vllm", NONE)]) == "py3.11-torch2.13.0-cpu"


def test_planning_ten_thousand_cells(write_matrix: WriteMatrix) -> None:
    versions = ", ".join(f'"2.{i}.0"' for i in range(30))
    matrix = load_matrix(write_matrix(f"""
        version: 1
        project: {{path: pkg, import: pkg, abi3: ">=2.6"}}
        axes:
          python: ["3.9", "3.10", "3.11", "3.12", "3.13"]
          torch: [{versions}]
          cuda: [cpu, cu126, cu128, cu129, cu130]
          vllm: [none, "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0"]
          transformers: [none, "4.50.0"]
        exclude:
          - {{torch: "<2.10", cuda: cu130}}
        """))
    cells = plan_cells(matrix)  # its speed is measured in bench/plan.py, not here
    assert len(cells) >= 10_000
    assert len({c.id for c in cells}) == len(cells)


def test_a_lowest_resolution_shows_in_the_id_and_the_default_does_not(
        write_matrix: WriteMatrix) -> None:
    matrix = load_matrix(write_matrix("""
        version: 1
        project: {path: pkg, import: pkg}
        axes:
          python: ["3.12"]
          torch: ["2.13.0"]
          resolution: [highest, lowest-direct, lowest]
        include:
          - {python: "3.11", torch: "2.13.0"}
        """))
    cells = {cell.id: cell for cell in plan_cells(matrix)}
    assert list(cells) == ["py3.12-torch2.13.0", "py3.12-torch2.13.0-lowest-direct",
                           "py3.12-torch2.13.0-lowest", "py3.11-torch2.13.0"]
    # an include that names no resolution gets the default; the wheel is the same
    assert cells["py3.11-torch2.13.0"].value("resolution") == "highest"
    assert len({c.build_key for c in cells.values() if c.python == "3.12"}) == 1
