from __future__ import annotations

import itertools
import json
import random
import re

from compatmatrix.model.plan import build_key, cell_id, matches, plan_cells, stable_build_torch
from compatmatrix.model.spec import NONE, Matrix, load_matrix
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


def _naive_plan(matrix: Matrix) -> list[tuple[tuple[str, str], ...]]:
    """The semantics, written the slow way: every combination against every entry."""
    names = [axis.name for axis in matrix.axes]
    planned = []
    for combo in itertools.product(*(axis.values for axis in matrix.axes)):
        values = dict(zip(names, combo, strict=True))
        if not any(matches(dict(entry), values) for entry in matrix.exclude):
            planned.append(tuple(zip(names, combo, strict=True)))
    for entry in matrix.include:
        given = dict(entry)
        axes = tuple((name, given.get(name, NONE)) for name in names)
        if axes not in planned:
            planned.append(axes)
    return planned


def test_many_excludes_plan_as_the_semantics_say(write_matrix: WriteMatrix) -> None:
    # every kind of entry: exact values, specifiers (torch and python), globs over variants,
    # none, an entry matching nothing, and specifier values of an axis
    rng = random.Random(16)
    pythons = ["3.9", "3.10", "3.11", "3.12", "3.13"]
    torches = ["2.5.1", "2.6.0", "2.9.0", "2.10.0rc1", "2.13.0", ">=2.9,<2.10", "2.13.*"]
    cudas = ["cpu", "cu126", "cu128", "cu130"]
    vllms = ["none", "0.10.1", "0.30.0"]
    patterns = {"python": [*pythons, ">=3.11", "<3.10", "!=3.12"],
                "torch": [*torches, "<2.10", ">=2.10", "==2.13.*", "!=2.9.0", "9.9.9"],
                "cuda": [*cudas, "cu12*", "cu1[23]?", "*"],
                "vllm": [*vllms, "0.30.0"]}
    lines = []
    for _ in range(120):
        axes = rng.sample(sorted(patterns), rng.randint(1, 3))
        lines.append("  - {" + ", ".join(f'{a}: "{rng.choice(patterns[a])}"' for a in axes)
                     + "}\n")
    text = (
        "version: 1\n"
        'project: {path: pkg, import: pkg, abi3: ">=2.6"}\n'
        "axes:\n"
        f"  python: {json.dumps(pythons)}\n"
        f"  torch: {json.dumps(torches)}\n"
        f"  cuda: {json.dumps(cudas)}\n"
        f"  vllm: {json.dumps(vllms)}\n"
        "exclude:\n" + "".join(dict.fromkeys(lines)) +
        "include:\n"
        '  - {python: "3.12", torch: "2.13.0", cuda: cu130, vllm: "0.30.0"}\n'
        '  - {python: "3.14", torch: "2.13.0", cuda: cu130}\n'
    )
    matrix = load_matrix(write_matrix(text))
    cells = plan_cells(matrix)
    assert [c.axes for c in cells] == _naive_plan(matrix)
    assert 0 < len(cells) < 5 * 7 * 4 * 3  # some excluded, some kept
    assert [c.id for c in cells] == [cell_id(c.axes) for c in cells]
    assert [c.build_key for c in cells] == [build_key(matrix, dict(c.axes)) for c in cells]


def test_no_exclude_entry_matches_plans_every_combination(write_matrix: WriteMatrix) -> None:
    matrix = load_matrix(write_matrix("""
        version: 1
        project: {path: pkg, import: pkg}
        axes:
          python: ["3.10", "3.11"]
          torch: ["2.9.0", "2.13.0"]
        exclude:
          - {torch: "3.0.0"}
          - {torch: ">=3"}
        """))
    assert [c.id for c in plan_cells(matrix)] == [
        "py3.10-torch2.9.0", "py3.10-torch2.13.0", "py3.11-torch2.9.0", "py3.11-torch2.13.0"]


STABLE = """
version: 1
project: {path: pkg, import: pkg, abi3: true, torch_abi: stable}
axes:
  python: ["3.11", "3.12"]
  torch: ["2.13.0", "2.11.0", "2.12.0"]
  cuda: [cpu, cu128, cu130]
  vllm: [none, "0.30.0"]
"""


def test_stable_abi_build_key_leaves_torch_out_and_keeps_the_cuda_major(
        write_matrix: WriteMatrix) -> None:
    cells = plan_cells(load_matrix(write_matrix(STABLE)))
    keys = {c.build_key for c in cells}
    # one wheel per CUDA major, whatever the Python (abi3) and the torch
    assert keys == {"abi3-torchstable-cpu", "abi3-torchstable-cu12", "abi3-torchstable-cu13"}


def test_stable_abi_builds_against_the_lowest_torch_or_the_one_named(
        write_matrix: WriteMatrix) -> None:
    matrix = load_matrix(write_matrix(STABLE))
    assert stable_build_torch(matrix, ["2.13.0", "2.12.0"]) == "2.12.0"
    assert stable_build_torch(matrix, []) == "2.11.0"  # the whole torch axis
    named = load_matrix(write_matrix(STABLE.replace(
        "torch_abi: stable}", "torch_abi: stable, stable_build_torch: '2.10.0'}")))
    assert stable_build_torch(named, ["2.13.0"]) == "2.10.0"
    assert {c.build_key for c in plan_cells(named)} == {
        "abi3-torchstable-cpu", "abi3-torchstable-cu12", "abi3-torchstable-cu13"}


def test_stable_abi_without_abi3_keeps_one_key_per_python(write_matrix: WriteMatrix) -> None:
    matrix = load_matrix(write_matrix(STABLE.replace("abi3: true, ", "")))
    assert {c.build_key for c in plan_cells(matrix) if c.value("cuda") == "cpu"} == {
        "cp311-torchstable-cpu", "cp312-torchstable-cpu"}
