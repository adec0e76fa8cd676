from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from compatmatrix.errors import SpecError, UsageError
from compatmatrix.model.spec import (
    NONE,
    load_matrix,
    package_requirement,
    with_release,
    with_wheels,
)
from tests.conftest import MINIMAL, WriteMatrix

FULL = """
version: 1
project: {path: pkg, import: pkg, abi3: ">=2.6", build_torch_attr: pkg.__torch__}
axes:
  python: ["3.10", 3.11]
  torch: ["2.9.0", "2.13.0", ">=2.9,<2.10", "2.13.*"]
  cuda: [cpu, cu130]
  extras: [none, dev, [test, dev], "a+b"]
  vllm: [none, "0.30.0"]
  transformers: [~, "4.50.0"]
exclude:
  - {torch: "<2.10", cuda: cu130}
include:
  - {python: "3.12", torch: "2.13.0", cuda: cu130}
indexes:
  cpu: https://download.pytorch.org/whl/cpu
  cu130: pypi
  find_links: [pip-config, "$HOME/wheels"]
suites:
  import: {paths: [tests/import]}
  unit: {paths: [tests/unit], workers: auto, args: [-x], timeout: 600}
  gpu: {paths: tests/gpu, requires: {gpu: H100}}
gate:
  required: [{python: "3.11", torch: "2.13.0", cuda: cpu}]
  fail_on_new: true
  quarantine:
    - {test: "tests/unit/test_x.py::test_y", reason: flaky, expires: 2027-01-01}
ci:
  runners:
    h100: {github: [self-hosted, h100], buildkite: h100}
  timeout_minutes: 30
interpreters: {"3.12": "$HOME/py312/bin/python3.12"}
timeouts: {build: 1200, suite: 900}
"""


def test_full_matrix_parses_into_frozen_values(write_matrix: WriteMatrix) -> None:
    matrix = load_matrix(write_matrix(FULL))
    assert [a.name for a in matrix.axes] == ["python", "torch", "cuda", "extras", "vllm",
                                             "transformers"]
    assert matrix.axis("transformers").values == (NONE, "4.50.0")
    assert matrix.axis("python").values == ("3.10", "3.11")  # 3.11 unquoted stays "3.11"
    assert matrix.axis("torch").values == ("2.9.0", "2.13.0", ">=2.9,<2.10", "==2.13.*")
    assert matrix.axis("extras").values == (NONE, "dev", "dev+test", "a+b")
    assert matrix.axis("vllm").kind == "package"
    assert matrix.exclude == ((("torch", "<2.10"), ("cuda", "cu130")),)
    assert matrix.indexes.url_for("cu130") == "pypi"
    assert matrix.indexes.find_links == ("pip-config", "$HOME/wheels")
    unit = matrix.suites[1]
    assert (unit.workers, unit.args, unit.timeout) == ("auto", ("-x",), 600)
    assert matrix.suites[2].gpu == "h100" and matrix.suites[2].paths == ("tests/gpu",)
    assert matrix.gate.fail_on_new and not matrix.gate.fail_on_incompatible
    assert matrix.gate.quarantine[0].expires == dt.date(2027, 1, 1)
    assert dict(matrix.ci.runners)["h100"].buildkite == "h100"
    assert matrix.ci.timeout_minutes == 30
    assert dict(matrix.timeouts) == {"build": 1200, "suite": 900}
    with pytest.raises(AttributeError):
        matrix.axes = ()  # type: ignore[misc]


def test_package_requirement() -> None:
    assert package_requirement("torch", "2.13.0") == "torch==2.13.0"
    assert package_requirement("torch", "<2.10") == "torch<2.10"
    assert package_requirement("vllm", NONE) is None


BAD = [
    ("unknown key", "version: 1\nproject: {path: pkg, import: pkg}\naxes: {python: ['3.11']}\n"
     "exlude: []\n", 4, "did you mean 'exclude'"),
    ("wrong type", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n  python: '3.11'\n",
     4, "must be a list"),
    ("empty axis", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n  python: ['3.11']\n"
     "  torch: []\n", 5, "must not be empty"),
    ("duplicate value", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\n  torch: ['2.13.0', '2.13']\n", 5, "duplicate value"),
    ("bad version", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\n  torch: ['two.thirteen']\n", 5, "is not a version or specifier"),
    ("bad specifier", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\n  torch: ['>=2.x']\n", 5, "not a valid PEP 440 specifier"),
    ("unknown axis in exclude", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\n  torch: ['2.13.0']\nexclude:\n  - {toch: '<2.10'}\n", 7,
     "did you mean 'torch'"),
    ("unknown axis in include", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\ninclude:\n  - {python: '3.12', vlm: '0.1'}\n", 6, "not in axes"),
    ("yaml syntax", "version: 1\nproject: {path: pkg, import: pkg\naxes:\n  python: ['3.11']\n",
     3, "YAML syntax error"),
    ("bad cuda variant", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\n  cuda: [cuda12.8]\n", 5, "did you mean 'cu128'"),
    ("missing project folder", "version: 1\nproject: {path: nowhere, import: pkg}\naxes:\n"
     "  python: ['3.11']\n", 2, "is not a folder"),
    ("bad python", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n  python: [3.1O]\n",
     4, "not a version like"),
    ("bad suite key", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\nsuites:\n  unit: {path: [t]}\n", 6, "did you mean 'paths'"),
    ("duplicate key", "version: 1\nversion: 1\n", 2, "duplicate key"),
    ("unknown gpu kind", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\nsuites:\n  gpu: {paths: [t], requires: {gpu: h10O}}\n", 6,
     "did you mean 'h100'"),
    ("missing key", "version: 1\nproject: {path: pkg, import: pkg}\n", 1, "needs the key 'axes'"),
    ("bad resolution", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\n  resolution: [highest, lowest_direct]\n", 5,
     "did you mean 'lowest-direct'"),
    ("declared_ranges not a bool", "version: 1\nproject: {path: pkg, import: pkg}\naxes:\n"
     "  python: ['3.11']\ngate: {declared_ranges: maybe}\n", 5, "declared_ranges"),
    ("bad torch_abi", "version: 1\nproject:\n  path: pkg\n  import: pkg\n"
     "  torch_abi: Stable\naxes:\n  python: ['3.11']\n", 5, "did you mean 'stable'"),
    ("stable_build_torch without stable", "version: 1\nproject:\n  path: pkg\n"
     "  import: pkg\n  stable_build_torch: '2.10.0'\naxes:\n  python: ['3.11']\n", 5,
     "add 'torch_abi: stable'"),
    ("stable_build_torch not a release", "version: 1\nproject:\n  path: pkg\n  import: pkg\n"
     "  torch_abi: stable\n  stable_build_torch: '>=2.10'\naxes:\n  python: ['3.11']\n", 6,
     "is not a torch release"),
]


@pytest.mark.parametrize(("text", "line", "needle"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_matrix_names_file_line_and_fix(write_matrix: WriteMatrix, text: str, line: int,
                                            needle: str) -> None:
    path = write_matrix(text)
    with pytest.raises(SpecError) as info:
        load_matrix(path)
    assert info.value.exit_code == 2
    assert info.value.location.line == line
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_include_must_name_python(write_matrix: WriteMatrix) -> None:
    path = write_matrix(MINIMAL + "include:\n  - {}\n")
    with pytest.raises(SpecError, match="empty include entry"):
        load_matrix(path)


def test_a_matrix_without_a_project_is_a_pins_table(write_matrix: WriteMatrix) -> None:
    path = write_matrix("version: 1\naxes:\n  python: ['3.12']\n  torch: ['2.13.0']\n"
                        "  vllm: ['0.30.0']\n")
    matrix = load_matrix(path)
    assert matrix.project is None
    with pytest.raises(UsageError, match="only `compatmatrix run --until resolve`") as info:
        matrix.package  # noqa: B018 - the property raises
    assert str(path) in str(info.value) and info.value.exit_code == 2


def test_resolution_axis_and_declared_ranges_gate(write_matrix: WriteMatrix) -> None:
    matrix = load_matrix(write_matrix(MINIMAL + "  resolution: [highest, lowest-direct]\n"
                                      "gate: {declared_ranges: true}\n"))
    axis = next(a for a in matrix.axes if a.name == "resolution")
    assert axis.kind == "resolution" and axis.values == ("highest", "lowest-direct")
    assert matrix.gate.declared_ranges is True


WHEELS = """
version: 1
project: {import: pkg, wheels: [dist/*.whl, "wheelhouse/pkg-*.whl"]}
axes:
  python: ["3.11"]
"""


def test_wheels_and_a_release_need_no_source(write_matrix: WriteMatrix) -> None:
    project = load_matrix(write_matrix(WHEELS)).package
    assert project.path is None and project.source is None
    assert project.wheels == ("dist/*.whl", "wheelhouse/pkg-*.whl")
    line = WHEELS.splitlines()[2]
    assert [(at.line, at.column) for at in project.wheels_at] == [
        (2, line.index("dist/") + 1), (2, line.index('"wheelhouse') + 1)]
    assert project.mode == "given"
    release = load_matrix(write_matrix(
        MINIMAL.replace("{path: pkg,", '{requirement: "compat-kernels==1.0.2",'))).package
    assert release.requirement == "compat-kernels==1.0.2" and release.mode == "published"
    assert release.source is None
    # a source tree beside given wheels stays what source-based checks read
    both = load_matrix(write_matrix(MINIMAL.replace("{path: pkg,",
                                                    "{path: pkg, wheels: [dist/*.whl],")))
    assert both.package.mode == "given" and both.package.source is not None


@pytest.mark.parametrize(("project", "at", "words"), [
    ("{import: pkg}", "{import", "project needs 'path' (the source to build), 'wheels'"),
    ("{import: pkg, wheels: []}", "[]", "project.wheels"),
    ("{import: pkg, wheels: [dist/]}", "dist/", "does not name wheel files"),
    ("{import: pkg, wheels: [dist/*.whl, dist/*.whl]}", "dist/*.whl]", "duplicate glob"),
    ('{import: pkg, wheels: [a.whl], requirement: "p==1"}', '"p==1"',
     "project.requirement and project.wheels both"),
    ('{import: pkg, requirement: "p>=1"}', '"p', "must pin one version with '=='"),
    ('{import: pkg, requirement: "p==1.*"}', '"p', "must pin one version"),
    ('{import: pkg, requirement: "p[x]==1"}', '"p', "without a URL, extras or markers"),
    ('{import: pkg, requirement: "not a requirement"}', '"not', "is not a requirement"),
])
def test_bad_wheels_and_requirements_name_the_place(
        write_matrix: WriteMatrix, project: str, at: str, words: str) -> None:
    text = MINIMAL.replace("{path: pkg, import: pkg}", project)
    with pytest.raises(SpecError) as info:
        load_matrix(write_matrix(text))
    line = f"project: {project}"
    assert (info.value.location.line, info.value.location.column) == (2, line.index(at) + 1)
    assert words in str(info.value)


def test_run_options_override_the_matrix_and_check_their_input(
        write_matrix: WriteMatrix, tmp_path: Path) -> None:
    matrix = load_matrix(write_matrix(MINIMAL))
    (tmp_path / "dist").mkdir()
    given = with_wheels(matrix, tmp_path / "dist")
    assert given.package.wheels == (str(tmp_path / "dist" / "*.whl"),)
    assert given.package.mode == "given" and given.package.source == tmp_path / "pkg"
    with pytest.raises(UsageError, match=r"--wheels .*nope does not exist"):
        with_wheels(matrix, tmp_path / "nope")
    with pytest.raises(UsageError, match="is not a folder"):
        with_wheels(matrix, write_matrix(MINIMAL))
    published = with_release(matrix, "pkg==1.0")
    assert published.package.mode == "published" and published.package.source is None
    with pytest.raises(UsageError, match=r"--requirement 'pkg>1' must pin one version"):
        with_release(matrix, "pkg>1")
    table = load_matrix(write_matrix("version: 1\naxes:\n  python: ['3.11']\n"))
    assert with_release(table, "compat-kernels==1.0").package.import_name == "compat_kernels"
