"""The tox plugin, through a real tox 4 run as a person runs it, on tiny projects in tmp_path.

tox finds the plugin through compatmatrix's ``tox`` entry point, so compatmatrix must be
installed (``pip install -e .[test]``, as ``nox -s tests`` does). Most tests use cells whose
interpreter is missing on purpose: they end ``unavailable`` within a second, which is enough
to see what tox runs and with which arguments. The tests that build and install a cell are
marked slow.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from compatmatrix.init.render import render_tox_keys, render_tox_toml
from tests.tox.conftest import require_tox

require_tox(plugin=True)

OWN = ["compat-matrix", "compat-report", "compat-gate", "compat-ci"]
PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "1.0"

[tool.setuptools]
packages = ["tinypkg"]
"""
# two cells whose interpreters are missing: unavailable at once, nothing built
UNAVAILABLE = """\
version: 1
project: {path: ., import: tinypkg}
axes:
  python: ["3.11", "3.12"]
interpreters: {"3.11": "/nonexistent/python3.11", "3.12": "/nonexistent/python3.12"}
suites:
  tests: {paths: [tests]}
"""
LINT_TOML = """
[env.lint]
skip_install = true
commands = [["python", "-c", "print('lint')"]]
"""
# [testenv] is the project's: compatmatrix's environments inherit nothing from it
LINT_INI = """
[testenv]
commands_pre = python -c "raise SystemExit(3)"

[testenv:lint]
skip_install = true
commands_pre =
commands = python -c "print('lint')"
"""
CONFIGS = {
    "tox.toml": {"tox.toml": 'env_list = ["lint"]\ncompatmatrix_matrix = "matrix.yaml"\n'
                             + LINT_TOML},
    "tox.ini": {"tox.ini": "[tox]\nenv_list = lint\ncompatmatrix_matrix = matrix.yaml\n"
                          + LINT_INI},
    "[tool.tox]": {"pyproject.toml": PYPROJECT + '\n[tool.tox]\nenv_list = ["lint"]\n'
                   'compatmatrix_matrix = "matrix.yaml"\n'
                   + LINT_TOML.replace("[env.lint]", "[tool.tox.env.lint]")},
    # the pointer in [tool.compatmatrix], the matrix in a subfolder
    "[tool.compatmatrix] + tox.ini": {
        "pyproject.toml": PYPROJECT + '\n[tool.compatmatrix]\nmatrix = "ci/matrix.yaml"\n',
        "tox.ini": "[tox]\nenv_list = lint\n" + LINT_INI,
        "matrix.yaml": None,
        "ci/matrix.yaml": UNAVAILABLE.replace("path: .", "path: .."),
    },
}


def make_project(root: Path, files: dict[str, str | None], matrix: str = UNAVAILABLE,
                 test: str = "assert tinypkg.VALUE == 1") -> Path:
    base: dict[str, str | None] = {
        "pyproject.toml": PYPROJECT,
        "matrix.yaml": matrix,
        "tinypkg/__init__.py": "VALUE = 1\n",
        "tests/test_value.py": f"import tinypkg\n\n\ndef test_value():\n    {test}\n",
    }
    for name, text in {**base, **files}.items():
        if text is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
    return root


def environ() -> dict[str, str]:
    """This environment, without what would point tox or compatmatrix elsewhere."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("TOX_", "COMPATMATRIX_", "PYTEST_"))} | {"NO_COLOR": "1"}


def tox(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tox", *args], cwd=root, env=environ(),
                          capture_output=True, text=True, timeout=timeout)


def compatmatrix(root: Path, *args: str, timeout: float = 600,
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compatmatrix", *args], cwd=root,
                          env=environ(), capture_output=True, text=True, timeout=timeout)


def record(root: Path, cell: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (root / ".compatmatrix" / "results" / f"{cell}.json").read_text(encoding="utf-8"))
    return data


def commands_run(root: Path, env: str) -> list[str]:
    """The command lines tox ran in ``env``, from its logs."""
    logs = sorted((root / ".tox" / env / "log").glob("*.log"))
    return [line[len("cmd: "):] for log in logs
            for line in log.read_text(encoding="utf-8").splitlines()
            if line.startswith("cmd: ")]


# -- listing -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
def test_tox_lists_the_cells_beside_the_projects_own(tmp_path: Path, config: str) -> None:
    root = make_project(tmp_path, CONFIGS[config])
    done = tox(root, "-l")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["lint", "py3.11", "py3.12", *OWN]
    # `tox l` says which run by default: not the cells
    done = tox(root, "l")
    default, additional = done.stdout.split("additional environments:")
    assert "lint" in default and "py3.11" not in default
    assert "py3.11        -> compatmatrix cell py3.11: python 3.11" in additional


def test_without_a_matrix_the_plugin_defines_nothing(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"tox.toml": 'env_list = ["lint"]\n' + LINT_TOML})
    done = tox(root, "-a")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lint"]


def test_a_name_the_project_uses_stays_the_projects(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"tox.ini": "[tox]\nenv_list = py3.11\n"
                                              "compatmatrix_matrix = matrix.yaml\n"
                                              + LINT_INI.replace("lint", "py3.11")
                                              + "\n[testenv:compat-ci]\ndescription = mine\n"})
    done = tox(root, "l")
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert "py3.11 is an environment of tox.ini already, so it is not the cell's" in said
    assert "compat-ci is an environment of tox.ini already, so it is not compatmatrix's" in said
    listed = [line.split()[0] for line in done.stdout.splitlines() if " -> " in line]
    assert listed == ["py3.11", "compat-ci", "py3.12", *OWN[:-1]]  # the project's first
    assert "py3.11 " in done.stdout and "compatmatrix cell py3.11" not in done.stdout
    assert "compat-ci     -> mine" in done.stdout
    shown = tox(root, "config", "-e", "compat-matrix", "-k", "depends")
    assert "depends = py3.12\n" in shown.stdout


@pytest.mark.parametrize("config", ["tox.toml", "tox.ini"])
def test_what_init_writes_or_prints_gives_tox_the_cells(tmp_path: Path, config: str) -> None:
    """compatmatrix init's tox.toml, and its lines added to a tox.ini: their requires are
    met here (no provisioning), and tox lists the cells."""
    requirement = f"compatmatrix=={importlib.metadata.version('compatmatrix')}"
    text = (render_tox_toml(requirement, "matrix.yaml") if config == "tox.toml" else
            "[tox]\n" + render_tox_keys("ini", requirement, "matrix.yaml"))
    root = make_project(tmp_path, {config: text})
    done = tox(root, "-l")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["py3.11", "py3.12", *OWN]
    assert not (root / ".tox" / ".tox").exists()  # nothing provisioned


# -- mistakes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("matrix", "tox_toml", "place", "words"), [
    (UNAVAILABLE.replace("paths:", "pathz:"), 'compatmatrix_matrix = "matrix.yaml"\n',
     "matrix.yaml:7:", "did you mean 'paths'?"),
    ("version: 1\nproject: [\n", 'compatmatrix_matrix = "matrix.yaml"\n', "matrix.yaml:", ""),
    (UNAVAILABLE, 'compatmatrix_matrix = "nope.yaml"\n', "nope.yaml:1:1:",
     "matrix file not found"),
])
def test_a_bad_matrix_is_reported_as_compatmatrix_reports_it(
        tmp_path: Path, matrix: str, tox_toml: str, place: str, words: str) -> None:
    root = make_project(tmp_path, {"tox.toml": tox_toml}, matrix=matrix)
    for args in (["-l"], ["-e", "py3.11"]):
        done = tox(root, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        assert "HandledError" not in done.stdout + done.stderr
        assert done.stderr.startswith(f"compatmatrix: {root / place.split(':')[0]}:"), \
            done.stderr
        assert f"{place}" in done.stderr and "error:" in done.stderr and words in done.stderr
    # exactly what compatmatrix itself says
    direct = compatmatrix(root, "plan", "--matrix", str(root / place.split(":")[0]))
    assert direct.returncode == 2 and direct.stderr == tox(root, "-l").stderr


# -- running -----------------------------------------------------------------------------


def test_a_cell_runs_what_compatmatrix_run_cell_runs(tmp_path: Path) -> None:
    root = make_project(tmp_path, CONFIGS["tox.toml"])
    done = tox(root, "-e", "py3.11")
    assert done.returncode == 0, done.stdout + done.stderr
    by_tox = record(root, "py3.11")
    assert by_tox["status"] == "unavailable" and "/nonexistent/python3.11" in by_tox["reason"]
    assert commands_run(root, "py3.11") == [
        f"{sys.executable} -m compatmatrix run --matrix {root / 'matrix.yaml'} --cell py3.11 "
        f"-j {os.cpu_count()}"]
    assert not (root / "matrix.yaml.json").exists()
    # tox made no virtual environment and built no package
    assert {p.name for p in (root / ".tox" / "py3.11").iterdir()} <= {"log", "tmp",
                                                                      ".tox-info.json"}
    assert not (root / ".tox" / ".pkg").exists()
    direct = compatmatrix(root, "run", "--cell", "py3.11", "--force")
    assert direct.returncode == done.returncode
    assert record(root, "py3.11")["status"] == by_tox["status"]
    assert record(root, "py3.11")["reason"] == by_tox["reason"]


def test_tox_p_shares_the_cores_and_forwards_posargs(tmp_path: Path) -> None:
    """Beside the project's own environment, which runs as it always did."""
    root = make_project(tmp_path, CONFIGS["tox.ini"])
    done = tox(root, "p", "-p", "2", "-e", "lint,py3.11,py3.12", "--", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lint: OK" in done.stdout
    share = max(1, (os.cpu_count() or 1) // 2)
    for cell in ("py3.11", "py3.12"):
        assert commands_run(root, cell) == [
            f"{sys.executable} -m compatmatrix run --matrix {root / 'matrix.yaml'} --cell "
            f"{cell} -j {share} -q"]
        assert record(root, cell)["status"] == "unavailable"


def test_the_label_runs_every_cell(tmp_path: Path) -> None:
    root = make_project(tmp_path, CONFIGS["[tool.tox]"])
    done = tox(root, "-m", "compat-cells")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "py3.11: OK" in done.stdout and "py3.12: OK" in done.stdout
    assert "compat-matrix" not in done.stdout


def test_compatmatrix_own_environments_with_posargs_and_exit_codes(tmp_path: Path) -> None:
    root = make_project(tmp_path, CONFIGS["tox.toml"])
    stale = tox(root, "-e", "compat-ci", "--", "--check")
    assert stale.returncode == 1 and "stale: .github/workflows/compat-matrix.yml" in (
        stale.stdout + stale.stderr)
    assert not (root / ".github").exists()
    assert tox(root, "-e", "compat-ci").returncode == 0
    assert (root / ".github" / "workflows" / "compat-matrix.yml").is_file()
    assert tox(root, "-e", "compat-ci", "--", "--check").returncode == 0
    # the whole matrix, then the report; the gate judges it
    done = tox(root, "-e", "compat-matrix")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((root / "reports" / "compatibility.json").read_text(encoding="utf-8"))
    assert {cell["id"]: cell["status"] for cell in report["cells"]} == {
        "py3.11": "unavailable", "py3.12": "unavailable"}
    out = tmp_path / "elsewhere"
    assert tox(root, "-e", "compat-report", "--", "--out", str(out)).returncode == 0
    assert (out / "compatibility.md").is_file()
    assert tox(root, "-e", "compat-gate").returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(("test", "status", "code"), [
    ("assert tinypkg.VALUE == 1", "passed", 0),
    ("assert tinypkg.VALUE == 2", "failed", 1),
])
def test_a_real_cell_has_the_verdict_of_compatmatrix_run(tmp_path: Path, test: str,
                                                        status: str, code: int) -> None:
    """One pure-Python cell, built, installed and tested by tox -e <cell> and by compatmatrix
    run --cell: the same verdict and exit code (the interpreter: the one running the tests)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    matrix = textwrap.dedent(f"""\
        version: 1
        project: {{path: ., import: tinypkg}}
        axes:
          python: ["{version}"]
        interpreters: {{"{version}": "{sys.executable}"}}
        suites:
          tests: {{paths: [tests]}}
        """)
    cell = f"py{version}"
    root = make_project(tmp_path, {"tox.ini": "[tox]\nenv_list = lint\n"
                                              "compatmatrix_matrix = matrix.yaml\n" + LINT_INI},
                        matrix=matrix, test=test)
    assert tox(root, "-l").stdout.split() == ["lint", cell, *OWN]
    done = tox(root, "-e", cell, timeout=900)
    assert done.returncode == code, done.stdout + done.stderr
    by_tox = record(root, cell)
    assert by_tox["status"] == status, by_tox
    assert not by_tox["reused"]
    direct = compatmatrix(root, "run", "--cell", cell, "--force")
    by_cli = record(root, cell)
    assert (direct.returncode, by_cli["status"], by_cli["stage"]) == (
        code, by_tox["status"], by_tox["stage"])
    # an unchanged rerun through tox reuses the record, as compatmatrix run does
    again = tox(root, "-e", cell, timeout=900)
    assert again.returncode == code and record(root, cell)["reused"]
