"""The build input: the project's files, never what a run (or a build) wrote next to them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from compatmatrix.model.workdir import REPORT_FILES, WorkDir
from compatmatrix.run.projectfiles import digest_files, source_files

PROJECT = {
    "setup.py": "from setuptools import setup\nsetup()\n",
    "flat/__init__.py": "",
    "flat/build/__init__.py": "",  # a package folder named build, below the top: source
    "csrc/op.cpp": "int x;\n",
    "tests/test_op.py": "def test(): pass\n",
}
WRITTEN_BY_RUNS = {
    ".compatmatrix/results/c.json": "{}",
    "work/results/c.json": "{}",
    "reports/compatibility.json": "{}",
    "reports/junit.xml": "<x/>",
    "build/lib/flat/__init__.py": "",
    "dist/flat-1.0.whl": "",
    "flat.egg-info/PKG-INFO": "",
    "flat/__pycache__/x.cpython-311.pyc": "",
    ".nox/tests/bin/python": "",
    ".tox/py/bin/python": "",
    ".hypothesis/examples/x": "",
    ".pytest_cache/v/x": "",
    "flat/_C.cpython-311-x86_64-linux-gnu.so": "",
}


def make(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def as_git_checkout(folder: Path) -> None:
    """A checkout that ignores nothing (no .gitignore), with everything committed."""
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "all"], check=True)


def excluded(project: Path) -> list[Path]:
    return [project / ".compatmatrix", project / "work",
            *(project / "reports" / name for name in REPORT_FILES), project / "tests"]


@pytest.mark.parametrize("layout", ["plain folder", "git checkout ignoring nothing"])
def test_work_files_and_build_outputs_are_never_build_input(tmp_path: Path, layout: str) -> None:
    if layout.startswith("git") and shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = make(tmp_path, PROJECT)
    if layout.startswith("git"):
        as_git_checkout(project)
    make(project, WRITTEN_BY_RUNS)  # after the commit: untracked, and nothing ignores them
    files = source_files(project, excluded(project))
    assert [str(f) for f in files] == ["csrc/op.cpp", "flat/__init__.py",
                                       "flat/build/__init__.py", "setup.py"]


def test_a_tracked_binary_is_vendored_source(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = make(tmp_path, {**PROJECT, "flat/libvendored.so": "ELF"})
    as_git_checkout(project)
    assert Path("flat/libvendored.so") in source_files(project)


def test_a_digest_changes_with_content_only(tmp_path: Path) -> None:
    project = make(tmp_path, PROJECT)
    before = digest_files(project, source_files(project))
    make(tmp_path, WRITTEN_BY_RUNS)
    assert digest_files(project, source_files(project, excluded(project))) == \
        digest_files(project, source_files(project, excluded(project)))
    (project / "csrc/op.cpp").write_text("int y;\n")
    assert digest_files(project, source_files(project)) != before


def test_the_work_directory_ignores_itself(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "deep" / ".compatmatrix")
    work.ensure()
    assert (work.root / ".gitignore").read_text().splitlines()[-1] == "*"
    (work.root / ".gitignore").write_text("kept\n")
    work.ensure()
    assert (work.root / ".gitignore").read_text() == "kept\n"
