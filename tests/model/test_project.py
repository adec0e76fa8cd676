"""What a project declares, wherever it declares it: pyproject.toml, setup.py, setup.cfg."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from compatmatrix.errors import Location, SpecError
from compatmatrix.host.uv import Sources, uv_command
from compatmatrix.model.project import (
    LEGACY_BACKEND,
    ProjectMeta,
    marker_environment,
    metadata_requirements,
    parse_metadata,
    read_project,
)
from compatmatrix.model.workdir import WorkDir
from compatmatrix.run.projectfiles import digest_files, source_files
from compatmatrix.stages.build import MetadataRequest, prepare_metadata

ENV = marker_environment("3.11.7")


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def test_a_static_project_table_is_read_as_it_is(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": """
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "sage-like"
        version = "0.3"
        requires-python = ">=3.9"
        dependencies = ["torch>=2.4.0,<3.0.0", "packaging"]
        [project.optional-dependencies]
        vLLM = ["vllm>=0.10.1; python_version >= '3.9'"]
        """})
    project = read_project(tmp_path)
    assert project.build_system.backend == "hatchling.build"
    meta = project.meta
    assert meta is not None and meta.origin == "pyproject.toml"
    assert (meta.name, meta.version, meta.requires_python) == ("sage-like", "0.3", ">=3.9")
    assert meta.extras == ("vllm",)
    assert meta.requirements((), ENV) == ["torch>=2.4.0,<3.0.0", "packaging"]
    assert meta.requirements(("vllm",), ENV) == ["torch>=2.4.0,<3.0.0", "packaging",
                                                  "vllm>=0.10.1"]


@pytest.mark.parametrize(("files", "why"), [
    ({"setup.py": "from setuptools import setup\nsetup()\n"}, "no pyproject.toml"),
    ({"pyproject.toml": "[build-system]\nrequires = ['setuptools', 'torch']\n",
      "setup.py": "from setuptools import setup\nsetup()\n"}, "no [project] table"),
    ({"pyproject.toml": "[project]\nname = 'k'\nversion = '1'\ndynamic = ['dependencies']\n"},
     "declares dependencies dynamic"),
    ({"setup.cfg": "[metadata]\nname = k\n"}, "no pyproject.toml"),
])
def test_metadata_elsewhere_is_left_to_the_build_backend(tmp_path: Path, files: dict[str, str],
                                                         why: str) -> None:
    project = read_project(write(tmp_path, files))
    assert project.meta is None
    assert why in project.why_dynamic


def test_setup_py_without_build_system_uses_the_legacy_backend(tmp_path: Path) -> None:
    project = read_project(write(tmp_path, {"setup.py": "from setuptools import setup\n"}))
    assert project.build_system.backend == LEGACY_BACKEND
    assert project.build_requires == ("setuptools>=40.8.0",)


@pytest.mark.parametrize(("files", "message", "line"), [
    ({}, "holds neither pyproject.toml nor setup.py", 7),
    ({"pyproject.toml": "[project]\nname = 'x'\nversion = \n"}, "invalid TOML", 3),
    ({"pyproject.toml": "[project]\nversion = '1'\n"}, "[project] has no name", 1),
    ({"pyproject.toml": "[build-system]\nrequires = ['setuptools']\n"},
     "no [project] table and there is no setup.py", 1),
    ({"pyproject.toml": "[project]\nname = 'x'\ndependencies = ['torch>=>2']\n"},
     "is not a valid requirement", 1),
])
def test_setup_mistakes_are_located_errors(tmp_path: Path, files: dict[str, str], message: str,
                                           line: int) -> None:
    at = Location(tmp_path / "matrix.yaml", 7, 3)
    with pytest.raises(SpecError) as info:
        read_project(write(tmp_path, files), at=at)
    assert message in str(info.value)
    assert info.value.location.line == line
    assert info.value.exit_code == 2


def test_core_metadata_with_extras_and_markers() -> None:
    meta = parse_metadata(textwrap.dedent("""\
        Metadata-Version: 2.1
        Name: torchext
        Version: 1.0
        Requires-Python: >=3.9
        Requires-Dist: torch<2.14,>=2.13
        Requires-Dist: numpy; python_version < "3.10"
        Provides-Extra: serve
        Requires-Dist: vllm==0.30.0; extra == "serve"
        Requires-Dist: uvloop; (sys_platform == "linux") and extra == "serve"
        Requires-Dist: old; python_version < "3.9" and extra == "serve"

        A description.
        """), "the build backend (setuptools)")
    assert meta.extras == ("serve",)
    assert meta.requirements((), ENV) == ["torch<2.14,>=2.13", 'numpy; python_version < "3.10"']
    assert meta.requirements(("serve",), ENV)[2:] == ["vllm==0.30.0", "uvloop"]


def test_metadata_round_trips_through_json() -> None:
    meta = ProjectMeta("k", "1", ("torch",), ("x",), ">=3.9", "pyproject.toml")
    assert ProjectMeta.from_json(meta.to_json()) == meta


def test_requirements_of_an_extra_that_does_not_apply_are_dropped() -> None:
    reqs = ['a; extra == "one"', 'b; extra == "two"', "c"]
    assert metadata_requirements(reqs, ("two",), ENV) == ["b", "c"]
    assert metadata_requirements(reqs, (), ENV) == ["c"]


# -- the PEP 517 hook, for real (a setup.py-only project) -----------------------------------

SETUP_PY_ONLY = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        """,
    "setup.py": """
        from setuptools import setup
        open("setup-ran-here", "w").close()  # where the hook ran: never the project itself
        setup(name="flatpkg", version="2.1", packages=["flatpkg"], python_requires=">=3.9",
              install_requires=["packaging>=20"],
              extras_require={"fast": ["orjson"]})
        """,
    "flatpkg/__init__.py": "",
}


@pytest.mark.slow
def test_metadata_in_setup_py_comes_from_the_build_backend(tmp_path: Path) -> None:
    project = write(tmp_path / "proj", SETUP_PY_ONLY)
    files = tuple(source_files(project))
    static = read_project(project)
    work = WorkDir(tmp_path / "work")
    request = MetadataRequest(
        build_key="cp311-none", project=project, files=files,
        source_digest=digest_files(project, files), interpreter=Path(sys.executable),
        build_system=static.build_system, torch_requirement=None, sources=Sources(None, ()))
    uv = uv_command(os.environ)
    log = tmp_path / "metadata.log"
    result = prepare_metadata(request, workdir=work, uv=uv, env=os.environ, log=log,
                              timeout=300)
    assert result.meta is not None, (result.reason, result.details, log.read_text())
    assert (result.meta.name, result.meta.version) == ("flatpkg", "2.1")
    assert result.meta.requirements(("fast",), ENV) == ["packaging>=20", "orjson"]
    assert result.meta.origin == "the build backend (setuptools.build_meta)"
    assert not (project / "setup-ran-here").exists()
    assert not list(project.glob("*.egg-info"))
    again = prepare_metadata(request, workdir=work, uv=uv, env=os.environ, log=log,
                             timeout=300)
    assert again.cached and again.meta == result.meta


@pytest.mark.slow
def test_a_failing_setup_py_is_a_reason_not_a_traceback(tmp_path: Path) -> None:
    project = write(tmp_path / "proj", {**SETUP_PY_ONLY, "setup.py": "raise SystemExit('no')\n"})
    files = tuple(source_files(project))
    request = MetadataRequest(
        build_key="cp311-none", project=project, files=files,
        source_digest=digest_files(project, files), interpreter=Path(sys.executable),
        build_system=read_project(project).build_system, torch_requirement=None,
        sources=Sources(None, ()))
    result = prepare_metadata(request, workdir=WorkDir(tmp_path / "work"),
                              uv=uv_command(os.environ), env=os.environ, log=tmp_path / "log",
                              timeout=300)
    assert result.meta is None
    assert "could not prepare the package's metadata" in result.reason
    assert any("no" in line for line in result.details)
