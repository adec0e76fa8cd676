"""The inputs digest: what makes a rerun reuse a record, and what makes it run again."""

from __future__ import annotations

from pathlib import Path

from compatmatrix.model.spec import load_matrix
from compatmatrix.run.inputs import CellInputs, ProjectDigests, cell_inputs
from tests.conftest import make_package

MATRIX = """version: 1
project: {path: pkg, import: pkg}
axes:
  python: ["3.11"]
suites:
  unit: {paths: [pkg/tests]}
"""


def inputs(root: Path, **changes: object) -> CellInputs:
    matrix = load_matrix(root / "matrix.yaml")
    options: dict[str, object] = {"axes": {"python": "3.11"}, "build_key": "cp311",
                                  "interpreter": "/py", "pins": {"numpy": "2.2.6"},
                                  "gpus": ()}
    options.update(changes)
    return cell_inputs(matrix, ProjectDigests(matrix, (root / "work",)), **options)  # type: ignore[arg-type]


def digest(root: Path, **changes: object) -> str:
    return inputs(root, **changes).all


def project(tmp_path: Path) -> Path:
    make_package(tmp_path / "pkg")
    (tmp_path / "pkg" / "pkg").mkdir()
    (tmp_path / "pkg" / "pkg" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "tests").mkdir()
    (tmp_path / "pkg" / "tests" / "test_x.py").write_text("def test(): pass\n")
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    return tmp_path


def test_the_same_inputs_give_the_same_digest(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert digest(root) == digest(root)
    (root / "work").mkdir()
    (root / "work" / "record.json").write_text("{}")  # what a run wrote: not an input
    assert digest(root) == digest(root)


def test_sources_tests_lock_and_interpreter_each_change_the_digest(tmp_path: Path) -> None:
    root = project(tmp_path)
    before = digest(root)
    assert digest(root, pins={"numpy": "2.3.0"}) != before
    assert digest(root, interpreter="/other/py") != before
    (root / "pkg" / "tests" / "test_x.py").write_text("def test(): assert True\n")
    after_test = digest(root)
    assert after_test != before
    (root / "pkg" / "pkg" / "__init__.py").write_text("X = 2\n")
    assert digest(root) != after_test


def test_the_source_list_is_computed_once_per_run(tmp_path: Path) -> None:
    root = project(tmp_path)
    matrix = load_matrix(root / "matrix.yaml")
    digests = ProjectDigests(matrix)
    first = digests.files()
    (root / "pkg" / "pkg" / "late.py").write_text("")  # written mid-run: the list holds
    assert digests.files() == first and Path("pkg/late.py") not in first
    assert Path("tests/test_x.py") not in first  # test folders are no build input


def test_a_resolve_only_record_never_stands_in_for_a_full_run(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert digest(root, mode="resolve") != digest(root)
    assert digest(root, mode="resolve") == digest(root, mode="resolve")


def test_tests_and_suite_settings_leave_the_setup_digest_alone(tmp_path: Path) -> None:
    root = project(tmp_path)
    before = inputs(root)
    (root / "pkg" / "tests" / "test_x.py").write_text("def test(): assert True\n")
    (root / "matrix.yaml").write_text(MATRIX.replace("{paths: [pkg/tests]}",
                                                     "{paths: [pkg/tests], args: [-x]}"))
    edited = inputs(root)
    assert edited.all != before.all and edited.setup == before.setup
    # what the wheel, the venv or the audit depend on changes it
    assert inputs(root, pins={"numpy": "2.3.0"}).setup != before.setup
    assert inputs(root, gpus=(("H100", "9.0"),)).setup != before.setup
    (root / "matrix.yaml").write_text(MATRIX.replace("{paths: [pkg/tests]}",
                                                     "{paths: [pkg/tests], requires: {gpu: h100}}"))
    assert inputs(root).setup != before.setup  # the audit judges GPU code for it
    (root / "pkg" / "pkg" / "__init__.py").write_text("X = 2\n")
    assert inputs(root).setup != before.setup


def test_the_tested_wheels_sha256_is_an_input_where_it_lies_is_not(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = inputs(root, artifact="a" * 64)
    assert inputs(root, artifact="a" * 64) == first
    replaced = inputs(root, artifact="b" * 64)
    assert replaced.all != first.all and replaced.setup != first.setup
    moved = root / "matrix.yaml"
    moved.write_text(MATRIX.replace("{path: pkg,", "{path: pkg, wheels: [elsewhere/*.whl],"))
    assert inputs(root, artifact="a" * 64).all == first.all
