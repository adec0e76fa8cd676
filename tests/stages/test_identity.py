"""The identity stage's judgements: versions compared as versions, imports from the venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compatmatrix.host.paths import import_outside
from compatmatrix.model.outcomes import IdentityResult
from compatmatrix.stages.identity import _version_problem, check_identity, same_torch


@pytest.mark.parametrize(("built", "running", "same"), [
    ("2.13.0", "2.13.0+cu130", True),      # the lock's version and torch.__version__
    ("2.13.0+cu130", "2.13.0", True),
    ("2.13.0+cpu", "2.13.0+cpu", True),
    ("2.13", "2.13.0", True),
    ("2.13.0+cpu", "2.13.0+cu130", False),  # another build of the release
    ("2.13.0", "2.13.1", False),
    ("2.9.0", "2.13.0", False),
])
def test_torch_versions_are_compared_as_versions(built: str, running: str, same: bool) -> None:
    assert same_torch(built, running) is same


def test_package_axes_compare_releases_not_strings() -> None:
    assert _version_problem("vllm", "0.30.0", "0.30.0+cu130") is None
    assert _version_problem("torch", "2.13", "2.13.0") is None
    assert _version_problem("vllm", "0.30.0", "0.31.0") == "vllm is 0.31.0, the cell says 0.30.0"


def test_an_import_from_outside_the_venv_is_named_with_both_paths(tmp_path: Path) -> None:
    venv = tmp_path / "work" / "envs" / "py3.11"
    inside = venv / "lib/python3.11/site-packages/tinyext/__init__.py"
    assert import_outside("tinyext", str(inside), venv) is None
    source = tmp_path / "tinyext" / "__init__.py"
    problem = import_outside("tinyext", str(source), venv)
    assert problem is not None
    assert str(source) in problem and str(venv) in problem
    assert import_outside("tinyext", None, venv) is None


# -- in a real venv, with a stand-in torch that counts its imports -----------------------------

_TORCH_INIT = """\
import os
with open(os.environ["TORCH_IMPORTS"], "a") as f:
    f.write("imported\\n")
{body}
from torch import version
__version__ = version.__version__
"""
_TORCH_VERSION = "__version__ = '2.13.0+cu130'\ncuda: 'Optional[str]' = '13.0'\nhip = None\n"


def identity_venv(tmp_path: Path, torch_body: str = "") -> tuple[Path, Path]:
    """A venv holding a stand-in torch (its imports counted in ``imports.txt``) and ``pkg``,
    an extension package that imports it and says which torch it was built with."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "uv", "venv", "-q", "--python", sys.executable,
                    str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                "print(sysconfig.get_path('purelib'))"], check=True,
                               capture_output=True, text=True).stdout.strip())
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text(_TORCH_INIT.format(body=torch_body))
    (site / "torch" / "version.py").write_text(_TORCH_VERSION)
    (site / "torch-2.13.0.dist-info").mkdir()
    (site / "torch-2.13.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n")
    (site / "pkg").mkdir()
    (site / "pkg" / "__init__.py").write_text("import torch\nBUILT = '2.13.0'\n")
    (tmp_path / "cwd").mkdir()
    return venv, tmp_path / "imports.txt"


def identity_in(venv: Path, tmp_path: Path, cuda: str = "cu130") -> IdentityResult:
    return check_identity(venv / "bin" / "python",
                          cell_axes={"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                                     "torch": "2.13.0", "cuda": cuda},
                          package_axes=["torch"], import_name="pkg",
                          build_torch_attr="pkg.BUILT", wheel_torch="2.13.0",
                          log=tmp_path / "identity.log", timeout=60, venv=venv,
                          cwd=tmp_path / "cwd")


@pytest.mark.slow
def test_torch_is_imported_once_only_by_the_import_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv, imports = identity_venv(tmp_path)
    monkeypatch.setenv("TORCH_IMPORTS", str(imports))
    result = identity_in(venv, tmp_path)
    assert result.ok, (result.mismatches, result.import_error)
    assert imports.read_text() == "imported\n"  # the facts were read from torch's files
    assert result.running_torch == "2.13.0+cu130" and result.built_with_torch == "2.13.0"
    assert result.facts["torch_cuda"] == "13.0" and result.facts["torch_hip"] is None
    assert result.facts["torch_path"] == str(next(venv.glob("lib/python*/site-packages/torch")))
    wrong = identity_in(venv, tmp_path, cuda="cpu")  # the variant is still judged
    assert wrong.mismatches == ("torch is a CUDA 13.0 build, the cell says cpu",)


@pytest.mark.slow
def test_a_torch_that_does_not_import_is_named(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    venv, imports = identity_venv(tmp_path, torch_body="raise ImportError('libtorch_cpu.so')")
    monkeypatch.setenv("TORCH_IMPORTS", str(imports))
    result = identity_in(venv, tmp_path)
    assert not result.ok
    assert "torch does not import: ImportError: libtorch_cpu.so" in result.mismatches
    assert "libtorch_cpu.so" in result.import_error  # and so the extension does not either


@pytest.mark.slow
def test_a_torch_import_that_crashes_leaves_the_facts(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    venv, imports = identity_venv(tmp_path, torch_body="import os; os.abort()")
    monkeypatch.setenv("TORCH_IMPORTS", str(imports))
    result = identity_in(venv, tmp_path)
    assert not result.ok and "crashed (SIGABRT)" in result.import_error
    assert result.running_torch == "2.13.0+cu130"  # read from its files, before the crash
    assert result.facts["python"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")


@pytest.mark.slow
def test_a_stable_abi_wheel_may_run_under_another_torch_than_it_was_built_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv, imports = identity_venv(tmp_path)
    monkeypatch.setenv("TORCH_IMPORTS", str(imports))

    def identity(stable_abi: bool) -> IdentityResult:
        return check_identity(
            venv / "bin" / "python",
            cell_axes={"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                       "torch": "2.13.0", "cuda": "cu130"},
            package_axes=["torch"], import_name="pkg", build_torch_attr=None,
            wheel_torch="2.11.0", log=tmp_path / "identity.log", timeout=60, venv=venv,
            cwd=tmp_path / "cwd", stable_abi=stable_abi)

    unstable = identity(stable_abi=False)
    assert unstable.mismatches == (
        "the extension was built against torch 2.11.0 but torch 2.13.0+cu130 is running",)
    stable = identity(stable_abi=True)  # both torches recorded, the difference accepted
    assert stable.ok, stable.mismatches
    assert (stable.built_with_torch, stable.running_torch) == ("2.11.0", "2.13.0+cu130")
    assert stable.facts["torch_abi"] == "stable"
