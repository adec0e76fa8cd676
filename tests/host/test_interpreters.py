from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

from compatmatrix.host.interpreters import InterpreterFinder, override_variable, probe_version

quick_probe = functools.partial(probe_version, timeout=2.0)


def fake_python(path: Path, version: str, *, hang: bool = False) -> Path:
    """A real executable that answers the probe like CPython of ``version`` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "sleep 30\n" if hang else f"echo {version}\n"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def finder(env: dict[str, str], **kwargs: object) -> InterpreterFinder:
    return InterpreterFinder(env, probe=quick_probe, **kwargs)  # type: ignore[arg-type]


def test_pyenv_version_folders_newest_patch_first(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    fake_python(root / "versions/3.9.2/bin/python3.9", "3.9.2")
    fake_python(root / "versions/3.9.18/bin/python3.9", "3.9.18")
    fake_python(root / "shims/python3.9", "3.11.0")  # shims are skipped
    found = finder({"PYENV_ROOT": str(root), "PATH": str(root / "shims")}).find("3.9")
    assert found.path == root / "versions/3.9.18/bin/python3.9"
    assert (found.source, found.full_version) == ("pyenv", "3.9.18")


def test_path_comes_before_pyenv(tmp_path: Path) -> None:
    on_path = fake_python(tmp_path / "bin/python3.12", "3.12.4")
    fake_python(tmp_path / "pyenv/versions/3.12.1/bin/python3.12", "3.12.1")
    found = finder({"PATH": str(tmp_path / "bin"), "PYENV_ROOT": str(tmp_path / "pyenv")}
                   ).find("3.12")
    assert (found.path, found.source) == (on_path, "PATH")


def test_uv_managed_pythons(tmp_path: Path) -> None:
    uv = tmp_path / "uv"
    expected = fake_python(uv / "cpython-3.13.1-linux-x86_64-gnu/bin/python3.13", "3.13.1")
    found = finder({"UV_PYTHON_INSTALL_DIR": str(uv)}).find("3.13")
    assert (found.path, found.source) == (expected, "uv")


def test_environment_override_wins_and_is_checked(tmp_path: Path) -> None:
    good = fake_python(tmp_path / "custom/py", "3.10.9")
    wrong = fake_python(tmp_path / "custom/other", "3.11.1")
    env = {override_variable("3.10"): str(good), "PATH": ""}
    assert finder(env).find("3.10").path == good
    bad = finder({override_variable("3.10"): str(wrong)}).find("3.10")
    assert not bad.found and "is Python 3.11.1, not 3.10" in bad.problem


def test_matrix_override_expands_variables(tmp_path: Path) -> None:
    good = fake_python(tmp_path / "opt/python3.11", "3.11.2")
    found = finder({"OPT": str(tmp_path / "opt")}, overrides={"3.11": "$OPT/python3.11"}
                   ).find("3.11")
    assert found.path == good and found.source == "override"


def test_missing_interpreter_says_how_to_install(tmp_path: Path) -> None:
    found = finder({"PATH": "", "HOME": str(tmp_path)}).find("3.8")
    assert not found.found
    assert "pyenv install 3.8" in found.problem
    assert "uv python install 3.8" in found.problem
    assert override_variable("3.8") in found.problem


def test_hanging_interpreter_is_skipped_not_waited_for(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin/python3.9", "", hang=True)
    start = time.monotonic()
    found = InterpreterFinder({"PATH": str(tmp_path / "bin")},
                              probe=functools.partial(probe_version, timeout=0.5)).find("3.9")
    assert not found.found
    assert time.monotonic() - start < 10


def test_finds_the_running_interpreter() -> None:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    found = InterpreterFinder(env).find(version)
    assert found.found and found.full_version.startswith(version)
