"""compatmatrix init: projects in tmp_path, an index of tiny fake torch wheels, fake Pythons.

Nothing here reaches the network: uv is pointed at a find-links folder (``--no-index``), the
interpreter finder answers from a table, and the installed torch is given.
"""

from __future__ import annotations

import ast
import importlib.metadata
import io
import json
import re
import sys
import textwrap
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from compatmatrix.cli import main
from compatmatrix.host.interpreters import InterpreterFinder
from compatmatrix.init import TorchIndex, run_init
from compatmatrix.init.inspect import ProjectFileError, inspect_project
from compatmatrix.init.install import InstallRequirement, install_requirement
from compatmatrix.init.versions import ask_torch
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.spec import Matrix, load_matrix, parse_matrix

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

INSTALL = InstallRequirement("compatmatrix==0.1.0")
CUDA13 = 'nvidia-cuda-runtime==13.0.96; platform_system == "Linux"'
# (version, wheel tag, requirements): 2.7.0 exists for Python 3.13 only, like a release that
# dropped older Pythons; 2.6.0 is a CUDA 13.0 build, as its runtime requirement says
TORCH_WHEELS = (("2.4.1", "py3", ()), ("2.5.1", "py3", ()), ("2.6.0", "py3", (CUDA13,)),
                ("2.7.0", "cp313", ()), ("3.0.0", "py3", ()))


def _wheel(folder: Path, name: str, version: str, tag: str = "py3",
           requires: Iterable[str] = ()) -> None:
    dist = f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"{dist}-{tag}-none-any.whl", "w") as wheel:
        wheel.writestr(f"{dist}.dist-info/METADATA", metadata)
        wheel.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                       f"Root-Is-Purelib: true\nTag: {tag}-none-any\n")
        wheel.writestr(f"{dist}.dist-info/RECORD", "")


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    for version, tag, requires in TORCH_WHEELS:
        _wheel(folder, "torch", version, tag, requires)
    _wheel(folder, "nvidia-cuda-runtime", "13.0.96")
    return folder


@pytest.fixture
def index(wheels: Path, tmp_path: Path) -> TorchIndex:
    # a private uv cache: answers come from the fake wheels only
    return TorchIndex(("--no-index", "--find-links", str(wheels), "--cache-dir",
                       str(tmp_path / "uv-cache")))


def finder(*versions: str) -> InterpreterFinder:
    """Pythons ``versions`` (X.Y) are installed, nothing else (no PATH, pyenv or uv)."""
    table = {f"/fake/python{v}": f"{v}.4" for v in versions}
    return InterpreterFinder({"PATH": ""}, {v: f"/fake/python{v}" for v in versions},
                             probe=lambda path: table.get(str(path)))


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def init(root: Path, index: TorchIndex, pythons: Iterable[str],
         torch_here: str | None = None, uv: tuple[str, ...] | None = None,
         tox: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    code = run_init(root, env={"PATH": ""}, finder=finder(*pythons), index=index, uv=uv,
                    torch_here=lambda: torch_here, install=INSTALL, out=out, tox=tox)
    return code, out.getvalue()


def planned(root: Path) -> tuple[Matrix, list[str]]:
    matrix = load_matrix(root / "matrix.yaml")
    return matrix, [cell.id for cell in plan_cells(matrix)]


def axes(matrix: Matrix) -> dict[str, tuple[str, ...]]:
    return {axis.name: axis.values for axis in matrix.axes}


# -- projects ----------------------------------------------------------------------------


def test_setup_py_flat_project_with_cuda_sources(tmp_path: Path, index: TorchIndex) -> None:
    root = write(tmp_path, {
        "setup.py": """
            from setuptools import setup
            from torch.utils.cpp_extension import BuildExtension, CUDAExtension

            setup(
                name="flatext",
                version="1.0",
                python_requires=">=3.10",
                install_requires=["torch>=2.4,<3"],
                packages=["flatext"],
                ext_modules=[CUDAExtension("flatext._C", ["csrc/kernel.cu"])],
                cmdclass={"build_ext": BuildExtension},
            )
            """,
        "flatext/__init__.py": "",
        "csrc/kernel.cu": "// kernel\n",
        "csrc/kernel.cuh": "// header\n",
        "tests/test_ops.py": "def test_x(): pass\n",
        "tests/cuda/reference.cu": "// a test's CUDA file: not the package's\n",
        "build/temp/generated.cu": "// a build's output\n",
    })
    code, out = init(root, index, ["3.9", "3.11", "3.12"], torch_here="2.5.1+cpu")
    assert code == 0, out
    matrix, cells = planned(root)
    assert matrix.project.import_name == "flatext"
    assert axes(matrix) == {"python": ("3.11", "3.12"), "torch": ("2.5.1", "2.6.0"),
                            "cuda": ("cpu", "cu124", "cu130")}
    # 2.6.0's runtime requirement says CUDA 13.0; 2.5.1 says nothing: compatmatrix's table
    assert dict(matrix.indexes.variants) == {"cpu": "https://download.pytorch.org/whl/cpu",
                                             "cu124": "pypi", "cu130": "pypi"}
    assert matrix.exclude == ((("torch", "2.5.1"), ("cuda", "cu130")),
                              (("torch", "2.6.0"), ("cuda", "cu124")))
    assert matrix.indexes.find_links == ("pip-config",)
    assert [(s.name, s.paths, s.workers) for s in matrix.suites] == [("tests", ("tests",),
                                                                      "auto")]
    assert len(cells) == 2 * 2 * 2 and "py3.12-torch2.6.0-cu130" in cells
    text = (root / "matrix.yaml").read_text()
    assert "csrc/kernel.cu, csrc/kernel.cuh" in text  # tests/ and build/ left out
    assert "reference.cu" not in text and "generated.cu" not in text
    assert "nvidia-cuda-runtime==13.0.96" in text
    assert "2.5.1 is installed here (2.5.1+cpu)" in text
    assert "requires-python >=3.10 (setup.py)" in text
    assert (root / "noxfile.py").is_file()
    assert "wrote matrix.yaml: 8 cells" in out and "wrote noxfile.py" in out


def test_pyproject_src_layout(tmp_path: Path, index: TorchIndex) -> None:
    root = write(tmp_path, {
        "pyproject.toml": """
            [build-system]
            requires = ["setuptools>=64", "torch>=2.4"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "My.Pkg"
            version = "0.1"
            requires-python = ">=3.11"
            dependencies = ["torch>=2.5,<2.7", "numpy"]
            """,
        "src/helpers/__init__.py": "",
        "src/my_pkg/__init__.py": "",
        "tests/test_a.py": "",
        "tests/test_b.py": "",
        "tests/kernels/reference.cu": "",
        "checks/test_c.py": "",
        "checks/sub/d_test.py": "",
        "checks/sub/test_e.py": "",
        "docs/test_docs.py": "",
        ".venv/pyvenv.cfg": "",
        ".venv/lib/test_venv.py": "",
    })
    code, out = init(root, index, ["3.10", "3.11", "3.12"])
    assert code == 0, out
    matrix, cells = planned(root)
    assert matrix.project.import_name == "my_pkg"  # the one matching the name, not helpers
    assert axes(matrix) == {"python": ("3.11", "3.12"), "torch": ("2.6.0",), "cuda": ("cpu",)}
    # tests/ first; checks/ has more test modules: it gets the xdist workers
    assert [(s.name, s.paths, s.workers) for s in matrix.suites] == [
        ("tests", ("tests",), "1"), ("checks", ("checks",), "auto")]
    assert cells == ["py3.11-torch2.6.0-cpu", "py3.12-torch2.6.0-cpu"]
    text = (root / "matrix.yaml").read_text()
    assert "torch>=2.5,<2.7 (pyproject.toml [project] dependencies)" in text
    assert "no CUDA sources" in text
    assert "src/my_pkg/__init__.py" in text
    assert all(len(line) <= 100 for line in text.splitlines())


def test_setup_cfg_project(tmp_path: Path, index: TorchIndex) -> None:
    root = write(tmp_path, {
        "pyproject.toml": """
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"
            """,
        "setup.cfg": """
            [metadata]
            name = cfgpkg
            version = 1.0

            [options]
            package_dir =
                =src
            packages = find:
            python_requires = >=3.9
            install_requires =
                numpy
                torch>=2.4,<2.6  # not 2.6 yet

            [options.packages.find]
            where = src
            """,
        "src/cfgpkg/__init__.py": "",
        "test/test_cfg.py": "",
    })
    code, out = init(root, index, ["3.9", "3.12"])
    assert code == 0, out
    matrix, cells = planned(root)
    assert matrix.project.import_name == "cfgpkg"
    assert axes(matrix) == {"python": ("3.9", "3.12"), "torch": ("2.5.1",), "cuda": ("cpu",)}
    assert [s.paths for s in matrix.suites] == [("test",)]
    assert len(cells) == 2
    assert "torch>=2.4,<2.6 (setup.cfg [options] install_requires)" in \
        (root / "matrix.yaml").read_text()


PURE = {
    "pyproject.toml": """
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "shapecheck"
        version = "0.5"
        requires-python = ">=3.9"
        dependencies = ["torch>=2.4.0,<3.0.0", "packaging"]

        [project.optional-dependencies]
        vllm = ["vllm>=0.10.1"]
        """,
    "shapecheck/__init__.py": "",
    "tests/test_shapes.py": "",
}


def test_pure_python_package_with_a_vllm_extra(tmp_path: Path, index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    code, out = init(root, index, ["3.11", "3.12", "3.13"])
    assert code == 0, out
    matrix, cells = planned(root)
    # the newest release below 3.0.0 (2.7.0) has wheels for 3.13 only: 3.11 and 3.12 would be
    # cells the resolver can only refuse, so they are left out, saying what they would need
    assert axes(matrix) == {"python": ("3.13",), "torch": ("2.7.0",), "cuda": ("cpu",)}
    assert cells == ["py3.13-torch2.7.0-cpu"]
    text = (root / "matrix.yaml").read_text()
    assert "torch>=2.4.0,<3.0.0 (pyproject.toml [project] dependencies)" in text
    assert "3.11, 3.12 left out" in text and "2.6.0 for 3.11" in text
    assert re.search(r"^  # extras: \[none, vllm\] +# ", text, re.M)
    assert "cu1" not in text  # no CUDA sources: no CUDA variant


def test_installed_torch_joins_the_axis_with_excludes(tmp_path: Path,
                                                     index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    code, out = init(root, index, ["3.11", "3.12", "3.13"], torch_here="2.6.0")
    assert code == 0, out
    matrix, cells = planned(root)
    assert axes(matrix) == {"python": ("3.11", "3.12", "3.13"), "torch": ("2.6.0", "2.7.0"),
                            "cuda": ("cpu",)}
    assert matrix.exclude == ((("python", "3.11"), ("torch", "2.7.0")),
                              (("python", "3.12"), ("torch", "2.7.0")))
    assert len(cells) == 4
    assert not matrix.gate.required  # the gate is an example, commented out


def test_installed_torch_outside_the_range_is_left_out(tmp_path: Path,
                                                       index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    code, out = init(root, index, ["3.13"], torch_here="3.0.0")
    assert code == 0
    assert axes(planned(root)[0])["torch"] == ("2.7.0",)
    assert "torch 3.0.0 is installed here, but the project requires torch>=2.4.0,<3.0.0" \
        in " ".join(out.split())


def test_package_without_torch_has_no_torch_or_cuda_axes(tmp_path: Path,
                                                         index: TorchIndex) -> None:
    root = write(tmp_path, {
        "pyproject.toml": """
            [project]
            name = "plain"
            version = "1"
            dependencies = ["numpy>=2"]
            """,
        "plain.py": "",
        "tests/test_plain.py": "",
    })
    # uv is never run for a project without torch
    code, out = init(root, index, ["3.12", "3.13"], torch_here="2.6.0", uv=("/no/such/uv",))
    assert code == 0, out
    matrix, cells = planned(root)
    assert axes(matrix) == {"python": ("3.12", "3.13")}
    assert matrix.project.import_name == "plain"  # a top-level module
    assert matrix.indexes.variants == () and matrix.indexes.find_links == ("pip-config",)
    assert cells == ["py3.12", "py3.13"]
    assert "torch" not in _keys((root / "matrix.yaml").read_text())


def test_no_python_installed_takes_the_newest_admitted(tmp_path: Path,
                                                      index: TorchIndex) -> None:
    root = write(tmp_path, {
        "pyproject.toml": '[project]\nname = "p"\nrequires-python = ">=3.10,<3.13"\n',
        "p/__init__.py": "",
    })
    code, out = init(root, index, [])
    assert code == 0, out
    matrix, _ = planned(root)
    assert axes(matrix) == {"python": ("3.12",)}
    text = (root / "matrix.yaml").read_text()
    assert "not installed here" in text and "uv python install 3.12" in text
    assert "# suites:" in text  # no test folder: an example, commented out


def test_setup_py_computed_values_are_notes_not_guesses(tmp_path: Path,
                                                        index: TorchIndex) -> None:
    root = write(tmp_path, {
        "pyproject.toml": """
            [build-system]
            requires = ["setuptools", "torch>=2.4,<2.6"]
            """,
        "setup.py": """
            from setuptools import setup
            NAME = "computed"
            def requirements():
                return ["torch"]
            setup(name=NAME, python_requires=">=" + "3.9", install_requires=requirements())
            """,
        "computed/__init__.py": "",
    })
    code, out = init(root, index, ["3.12"])
    assert code == 0, out
    matrix, _ = planned(root)
    assert matrix.project.import_name == "computed"  # NAME, a module-level literal
    # install_requires is computed: torch comes from the build requirements
    assert axes(matrix)["torch"] == ("2.5.1",)
    text = (root / "matrix.yaml").read_text()
    assert "# note: setup.py:5: install_requires=requirements() is computed" in text
    assert "# note: setup.py:5: python_requires=" in text
    assert "pyproject.toml [build-system] requires" in text


def test_unreachable_index_falls_back_to_the_declared_range(tmp_path: Path,
                                                            index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    code, out = init(root, index, ["3.12"], uv=("/no/such/uv",))
    assert code == 0, out
    matrix, cells = planned(root)
    assert axes(matrix)["torch"] == (">=2.4.0,<3.0.0",)
    assert "could not be asked (cannot run /no/such/uv" in " ".join(
        line.lstrip("# ") for line in (root / "matrix.yaml").read_text().splitlines())
    assert len(cells) == 1


def test_dynamic_dependencies_from_a_requirements_file(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "pyproject.toml": """
            [project]
            name = "dyn"
            dynamic = ["dependencies"]

            [tool.setuptools.dynamic]
            dependencies = {file = ["requirements.txt"]}
            """,
        "requirements.txt": """
            -r more.txt
            --extra-index-url https://example.org/simple
            https://example.org/wheels/helper-1.0-py3-none-any.whl
            torch>=2.4; sys_platform == "darwin"
            torch>=2.5,<2.9; sys_platform == "linux"  # the Linux range
            numpy
            """,
        "dyn/__init__.py": "",
    })
    facts = inspect_project(root)
    assert facts.torch is not None
    assert facts.torch.specifier == ">=2.5,<2.9"  # the requirement that applies on Linux
    assert facts.torch.source == "requirements.txt (pyproject.toml dynamic)"
    assert (facts.import_name, facts.import_source) == ("dyn", "dyn/__init__.py")


def test_torch_only_in_an_extra(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "setup.py": """
            from setuptools import setup
            setup(name="opt", install_requires=["numpy"],
                  extras_require={"torch": ["torch>=2.6"]}, py_modules=["opt"])
            """,
        "opt.py": "",
    })
    facts = inspect_project(root)
    assert facts.torch is not None and facts.torch.specifier == ">=2.6"
    assert facts.torch.source == "setup.py extra 'torch'"
    assert facts.extras == ("torch",)
    assert (facts.import_name, facts.import_source) == ("opt", "opt.py")


def test_a_cache_miss_is_no_answer(tmp_path: Path) -> None:
    """Questions after the first are answered from uv's cache (--offline); one it cannot
    answer says so as "unsatisfiable", which must not read as "no torch for this Python"."""
    uv = tmp_path / "uv"
    uv.write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$*" in
          *--offline*) echo "error: No solution found when resolving dependencies" >&2
                       echo "  cause: Because torch was not found in the cache and you require \
        torch>=2, we can conclude that your requirements are unsatisfiable." >&2
                       echo "hint: Packages were unavailable because the network was \
        disabled." >&2
                       exit 1;;
          *) echo "torch==2.7.0";;
        esac
        """))
    uv.chmod(0o755)
    answers = ask_torch(">=2", ["3.11", "3.13"], ["2.6.0"], uv=(str(uv),), index=TorchIndex(),
                        env={"PATH": "/usr/bin:/bin"})
    assert (answers.newest, answers.python, answers.problem) == ("2.7.0", "3.13", "")
    assert answers.unknown == {"3.11"}
    assert answers.available("3.11", "2.7.0") and answers.available("3.11", "2.6.0")


# -- never overwriting -------------------------------------------------------------------


def test_existing_matrix_is_not_overwritten(tmp_path: Path, index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    mine = b"version: 1\n# my own matrix\n"
    (root / "matrix.yaml").write_bytes(mine)
    code, out = init(root, index, ["3.13"])
    assert code == 0  # noxfile.py was written
    assert (root / "matrix.yaml").read_bytes() == mine
    assert "matrix.yaml exists: not overwritten" in out
    assert "\n    version: 1                      # the format of this file\n" in out
    assert "\n    axes:" in out and '    torch: ["2.7.0"]' in out
    assert "wrote noxfile.py" in out

    nox_before = (root / "noxfile.py").read_bytes()
    code, out = init(root, index, ["3.13"])  # nothing left that init may write
    assert code == 1
    assert "noxfile.py exists and already registers compatmatrix's sessions" in out
    assert (root / "matrix.yaml").read_bytes() == mine
    assert (root / "noxfile.py").read_bytes() == nox_before


def test_existing_noxfile_without_sessions_is_kept(tmp_path: Path, index: TorchIndex) -> None:
    root = write(tmp_path, {**PURE, "noxfile.py": "import nox\n"})
    code, out = init(root, index, ["3.13"])
    assert code == 0
    assert (root / "noxfile.py").read_text() == "import nox\n"
    assert "noxfile.py exists: does not register compatmatrix's sessions" in out
    assert '    cm.register_cell_sessions("matrix.yaml")' in out


def test_rerun_with_identical_files_has_nothing_to_write(tmp_path: Path,
                                                         index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    assert init(root, index, ["3.13"])[0] == 0
    code, out = init(root, index, ["3.13"])
    assert code == 0
    assert "matrix.yaml exists and already matches" in out


# -- errors ------------------------------------------------------------------------------


def test_invalid_pyproject_exits_2_with_line_and_column(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"pyproject.toml": '[project]\nname = "x"\nversion = 1.0.0\n'})
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^compatmatrix: pyproject\.toml:3:\d+: error: invalid TOML: ", err), err
    assert "Traceback" not in err
    assert not (tmp_path / "matrix.yaml").exists()


def test_folder_that_is_not_a_project_exits_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a Python project: it has no pyproject.toml, setup.py or setup.cfg" in err
    assert "hint: run 'compatmatrix init' in the root folder" in err


def test_project_the_parser_refuses_writes_nothing(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A pyproject.toml without [project] and no setup.py cannot be built: plan would refuse
    the matrix, so init writes none and says why (exit 2)."""
    write(tmp_path, {"pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n',
                     "pkg/__init__.py": ""})
    assert main(["init", "--path", str(tmp_path)]) == 2
    assert "pyproject.toml:1:1: error:" in capsys.readouterr().err
    assert not (tmp_path / "matrix.yaml").exists() and not (tmp_path / "noxfile.py").exists()


def test_poetry_metadata_is_named_not_read(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": """
        [build-system]
        requires = ["poetry-core"]
        build-backend = "poetry.core.masonry.api"

        [tool.poetry]
        name = "poet"

        [tool.poetry.dependencies]
        torch = "^2.4"
        """, "poet/__init__.py": ""})
    facts = inspect_project(tmp_path)
    assert facts.torch is None and facts.import_name == "poet"
    assert any("[tool.poetry]" in note for note in facts.notes)


@pytest.mark.parametrize(("name", "text", "where"), [
    ("setup.py", "setup(name='x',\n", "setup.py:1:"),
    ("setup.cfg", "[metadata\nname = x\n", "setup.cfg:1:"),
    ("pyproject.toml", '[project]\nname = "x"\nrequires-python = "=>3.9"\n',
     "pyproject.toml:3:"),
    ("pyproject.toml", '[project]\nname = "x"\ndependencies = ["torch>="]\n',
     "pyproject.toml:3:"),
])
def test_broken_project_files_name_the_place(tmp_path: Path, name: str, text: str,
                                             where: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ProjectFileError) as caught:
        inspect_project(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / where)), caught.value
    assert caught.value.exit_code == 2


# -- the generated files -----------------------------------------------------------------


def _uncomment_gate(text: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# gate:"))
    for i in range(start, start + 3):
        lines[i] = lines[i][2:]
    return "\n".join(lines) + "\n"


def _keys(text: str) -> set[str]:
    return {m[1] for m in re.finditer(r"^\s*([a-z_]+):", text, re.M)}


def test_gate_example_parses_once_uncommented(tmp_path: Path, index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    init(root, index, ["3.11", "3.12", "3.13"], torch_here="2.6.0")
    matrix = parse_matrix(_uncomment_gate((root / "matrix.yaml").read_text()),
                          root / "matrix.yaml")
    assert matrix.gate.required == ((("python", "3.13"), ("torch", "2.7.0"), ("cuda", "cpu")),)


def test_ci_install_line(tmp_path: Path, index: TorchIndex) -> None:
    """The pipelines install compatmatrix from where this one came from, as the noxfile."""
    root = write(tmp_path, PURE)
    init(root, index, ["3.13"])
    text = (root / "matrix.yaml").read_text()
    assert re.search("^" + re.escape('ci: {install: "compatmatrix==0.1.0"}'), text, re.M)
    matrix, _ = planned(root)
    assert matrix.ci.install == "compatmatrix==0.1.0"


def test_noxfile_has_a_pep723_block_and_registers_the_sessions(tmp_path: Path,
                                                               index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    init(root, index, ["3.13"])
    text = (root / "noxfile.py").read_text()
    block = re.search(r"(?m)^# /// script$\s(?P<content>(^#(| .*)$\s)+)^# ///$", text)
    assert block is not None  # PEP 723's reference regular expression
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in block["content"].splitlines(keepends=True))
    assert tomllib.loads(content)["dependencies"] == ["nox>=2025.2.9", "compatmatrix==0.1.0"]
    code = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert code == ["import compatmatrix.noxsupport as cm",
                    'cm.register_cell_sessions("matrix.yaml")']
    ast.parse(text)


# -- tox ---------------------------------------------------------------------------------

TOX_REQUIRES = '["tox>=4.29", "compatmatrix[tox]==0.1.0"]'


def test_a_project_without_tox_gets_no_tox_file_unless_asked(tmp_path: Path,
                                                             index: TorchIndex) -> None:
    root = write(tmp_path, PURE)
    code, out = init(root, index, ["3.13"])
    assert code == 0 and not (root / "tox.toml").exists()
    assert "tox l" not in out and "tox.toml" not in out

    code, out = init(root, index, ["3.13"], tox=True)
    assert code == 0
    assert "wrote tox.toml" in out and "  tox l " in out and "  tox -e compat-matrix " in out
    text = (root / "tox.toml").read_text()
    assert tomllib.loads(text) == {"requires": ["tox>=4.29", "compatmatrix[tox]==0.1.0"],
                                   "compatmatrix_matrix": "matrix.yaml"}
    assert all(len(line) <= 100 for line in text.splitlines())
    code, out = init(root, index, ["3.13"], tox=True)
    assert code == 0 and "tox.toml already points tox at the matrix" in out


@pytest.mark.parametrize(("extra", "says"), [
    ({"pyproject.toml": PURE["pyproject.toml"]
      + '\n[dependency-groups]\ndev = ["tox>=4", "ruff"]\n'},
     "pyproject.toml [dependency-groups] dev"),
    ({"requirements-dev.txt": "pytest\ntox==4.30.0  # the test runner\n"},
     "requirements-dev.txt"),
    ({".github/workflows/ci.yml": "jobs:\n  t:\n    steps:\n      - run: python -m tox -e py\n"},
     ".github/workflows/ci.yml"),
])
def test_a_project_using_tox_without_a_configuration_gets_a_tox_toml(
        tmp_path: Path, index: TorchIndex, extra: dict[str, str], says: str) -> None:
    root = write(tmp_path, {**PURE, **extra})
    code, out = init(root, index, ["3.13"])
    assert code == 0
    assert f"wrote tox.toml (this project uses tox, says {says}, and has no tox " \
           "configuration)" in out
    assert tomllib.loads((root / "tox.toml").read_text())["compatmatrix_matrix"] == "matrix.yaml"
    assert "  tox -e compat-matrix " in out


@pytest.mark.parametrize("extra", [
    {"requirements-dev.txt": "tox-uv\npytox\n"},
    {".github/workflows/ci.yml": "jobs:\n  t:\n    steps:\n      - run: nox -s toxic\n"},
    {"pyproject.toml": PURE["pyproject.toml"] + '\n[dependency-groups]\ndev = ["tox-gh"]\n'},
])
def test_what_only_looks_like_tox_writes_no_tox_toml(tmp_path: Path, index: TorchIndex,
                                                     extra: dict[str, str]) -> None:
    root = write(tmp_path, {**PURE, **extra})
    code, out = init(root, index, ["3.13"])
    assert code == 0 and not (root / "tox.toml").exists() and "tox l" not in out


@pytest.mark.parametrize(("files", "where", "lines"), [
    ({"tox.ini": "[tox]\nenv_list = py\n"}, "tox.ini is this project's tox configuration; "
     "not edited. Add these lines to its [tox] section",
     ["requires =", "    tox>=4.29", "    compatmatrix[tox]==0.1.0",
      "compatmatrix_matrix = matrix.yaml"]),
    ({"setup.cfg": "[metadata]\nname = x\n\n[tox:tox]\nenv_list = py\n"},
     "to its [tox:tox] section", ["compatmatrix_matrix = matrix.yaml"]),
    ({"pyproject.toml": PURE["pyproject.toml"] + "\n[tool.tox]\nenv_list = ['py']\n"},
     "to its [tool.tox] section",
     [f"requires = {TOX_REQUIRES}", 'compatmatrix_matrix = "matrix.yaml"']),
    ({"pyproject.toml": PURE["pyproject.toml"] + "\n[tool.tox]\nlegacy_tox_ini = \"\"\"\n"
      "[tox]\nenv_list = py\n\"\"\"\n"},
     "to its [tox] of [tool.tox] legacy_tox_ini section", ["compatmatrix_matrix = matrix.yaml"]),
    ({"tox.toml": 'env_list = ["py"]\n'}, "tox.toml is this project's tox configuration; not "
     "edited. Add these lines at its top, before any table",
     [f"requires = {TOX_REQUIRES}", 'compatmatrix_matrix = "matrix.yaml"']),
])
def test_a_projects_tox_configuration_is_never_edited(
        tmp_path: Path, index: TorchIndex, files: dict[str, str], where: str,
        lines: list[str]) -> None:
    root = write(tmp_path, {**PURE, **files})
    before = {name: (root / name).read_bytes() for name in files}
    code, out = init(root, index, ["3.13"], tox=True)
    assert code == 0, out  # matrix.yaml and noxfile.py written
    assert {name: (root / name).read_bytes() for name in files} == before
    assert where in out
    for line in lines:
        assert f"\n    {line}\n" in out, out
    if "tox.toml" not in files:  # tox reads the other file first: a tox.toml would be ignored
        assert not (root / "tox.toml").exists()
        name = next(iter(files))
        assert f"(a tox.toml beside it would not be read: tox reads {name} first)" in out
    assert "  tox l " in out
    # nothing left to write, only lines to add: exit 1, as for files that differ
    code, out = init(root, index, ["3.13"], tox=True)
    assert code == 1 and where in out


@pytest.mark.parametrize("files", [
    {"tox.ini": "[tox]\ncompatmatrix_matrix = ci/matrix.yaml\n"},
    {"tox.toml": 'compatmatrix_matrix = "matrix.yaml"\n'},
    {"tox.ini": "[tox]\n", "pyproject.toml": PURE["pyproject.toml"]
     + '\n[tool.compatmatrix]\nmatrix = "matrix.yaml"\n'},
])
def test_a_tox_configuration_that_names_a_matrix_already(
        tmp_path: Path, index: TorchIndex, files: dict[str, str]) -> None:
    root = write(tmp_path, {**PURE, **files})
    code, out = init(root, index, ["3.13"])
    assert code == 0
    assert f"{'tox.ini' if 'tox.ini' in files else 'tox.toml'} already points tox at the " \
           "matrix" in out
    assert "Add these lines" not in out


# -- how compatmatrix itself was installed -----------------------------------------------


def _distribution(tmp_path: Path, direct_url: dict[str, object] | None,
                  ) -> importlib.metadata.Distribution:
    info = tmp_path / "compatmatrix-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: compatmatrix\n"
                                   "Version: 0.3.1\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return importlib.metadata.PathDistribution(info)


@pytest.mark.parametrize(("direct_url", "requirement", "noted"), [
    (None, "compatmatrix==0.3.1", False),
    ({"url": "https://github.com/org/compatmatrix.git",
      "vcs_info": {"vcs": "git", "commit_id": "0123abc", "requested_revision": "main"}},
     "compatmatrix @ git+https://github.com/org/compatmatrix.git@0123abc", False),
    ({"url": "https://github.com/org/mono.git", "subdirectory": "tools/cm",
      "vcs_info": {"vcs": "git", "commit_id": "fed"}},
     "compatmatrix @ git+https://github.com/org/mono.git@fed#subdirectory=tools/cm", False),
    ({"url": "https://example.org/compatmatrix-0.3.1-py3-none-any.whl",
      "archive_info": {"hashes": {"sha256": "00"}}},
     "compatmatrix @ https://example.org/compatmatrix-0.3.1-py3-none-any.whl", False),
    ({"url": "file:///home/me/compatmatrix", "dir_info": {"editable": True}},
     "compatmatrix", True),
    ({"url": "file:///tmp/compatmatrix-0.3.1-py3-none-any.whl", "archive_info": {}},
     "compatmatrix", True),
])
def test_install_requirement(tmp_path: Path, direct_url: dict[str, object] | None,
                             requirement: str, noted: bool) -> None:
    found = install_requirement(_distribution(tmp_path, direct_url))
    assert found.requirement == requirement
    assert bool(found.note) == noted
    if noted:
        assert "CI cannot reach a local path" in found.note


# -- through the command line ------------------------------------------------------------


def test_cli_init_then_plan(tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """`compatmatrix init` as a person runs it: this machine's Pythons, the index uv is
    configured with (here: an empty local index plus the fake wheels), then `plan`."""
    (tmp_path / "empty-index").mkdir()
    monkeypatch.setenv("UV_DEFAULT_INDEX", (tmp_path / "empty-index").as_uri())
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    for name in ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    project = write(tmp_path / "project", {**PURE, "csrc/op.cu": "// a kernel\n"})
    monkeypatch.chdir(project)
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "wrote matrix.yaml" in out and "wrote noxfile.py" in out
    for command in ("compatmatrix plan", "nox -l", "nox -s matrix", "nox -s gate"):
        assert f"  {command} " in out
    assert main(["plan", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    # 2.6.0 says it is CUDA 13.0; 2.7.0 (for Python 3.13 only) says nothing: the table's
    assert cells and {cell["axes"]["cuda"] for cell in cells} <= {"cpu", "cu126", "cu130"}
    assert {cell["axes"]["torch"] for cell in cells} <= {"2.6.0", "2.7.0"}
