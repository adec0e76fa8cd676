"""The identity stage's judgements: versions compared as versions, imports from the venv."""

from __future__ import annotations

from pathlib import Path

import pytest

from compatmatrix.host.paths import import_outside
from compatmatrix.stages.identity import _version_problem, same_torch


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
