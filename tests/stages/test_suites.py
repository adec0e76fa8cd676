from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from compatmatrix.model import junit
from compatmatrix.model.junit import junit_key, read_junit
from compatmatrix.model.outcomes import SuiteResult, SuiteStatus
from compatmatrix.model.spec import Suite
from compatmatrix.stages import suites
from compatmatrix.stages.suites import run_suite

CELL = "py3.11-torch2.13.0-cpu"
slow = pytest.mark.slow  # runs pytest in a real venv (about a second each)


@pytest.fixture(scope="session")
def cell_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv with pytest and xdist, standing in for a cell's environment."""
    venv = tmp_path_factory.mktemp("cell") / "venv"
    uv = [sys.executable, "-m", "uv"]
    _check(subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)],
                          capture_output=True, text=True))
    python = venv / "bin" / "python"
    install = [*uv, "pip", "install", "-q", "--python", str(python), "pytest", "pytest-xdist"]
    done = subprocess.run([*install, "--offline"], capture_output=True, text=True)
    if done.returncode != 0:  # not in uv's cache yet: fetch once
        done = subprocess.run(install, capture_output=True, text=True)
    _check(done)
    return python


def _check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        pytest.fail(f"{done.args} failed:\n{done.stdout}{done.stderr}")


def clean_env() -> dict[str, str]:
    # The outer pytest (and its xdist) must not leak into the pytest under test.
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "proj"
    for name, text in {"pytest.ini": "[pytest]\n", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def run(python: Path, tmp_path: Path, files: dict[str, str], *, workers: int = 1,
        timeout: float = 60, gpu_problem: str | None = None, **suite: object) -> SuiteResult:
    spec = Suite(name="unit", paths=("tests",), workers="auto" if workers > 1 else "1",
                 **suite)  # type: ignore[arg-type]
    return run_suite(spec, python=python, cell_id=CELL, root=project(tmp_path, files),
                     junit=tmp_path / "out" / "unit.xml", log=tmp_path / "out" / "unit.log",
                     workers=workers, timeout=timeout, gpu_problem=gpu_problem,
                     env=clean_env())


# A package at the project root stands for a source tree that must not shadow the wheel.
SHADOWING = {
    "shadow/__init__.py": "",
    "tests/test_path.py": """
        import importlib.util, os, sys

        def test_installed_package_comes_first():
            assert importlib.util.find_spec("shadow") is None, sys.path
            assert "" not in sys.path and os.getcwd() not in sys.path, sys.path
    """,
}


@slow
def test_all_pass_with_xdist(cell_python: Path, tmp_path: Path) -> None:
    result = run(cell_python, tmp_path, {
        "tests/test_ok.py": """
            import pytest

            @pytest.mark.parametrize("x", ["a::b", "c[d]", 3])
            def test_ok(x):
                pass
        """,
        **SHADOWING,
    }, workers=2)
    assert (result.status, result.reason) == ("passed", ""), result
    assert (result.collected, result.passed, result.failed, result.errors) == (4, 4, 0, 0)
    assert "-n 2" in result.command and f"junit_suite_name={CELL}" in result.command
    assert result.junit is not None and read_junit(Path(result.junit))
    assert result.first_errors == ()


@slow
def test_failure_names_the_test(cell_python: Path, tmp_path: Path) -> None:
    result = run(cell_python, tmp_path, {
        "tests/test_bad.py": "def test_bad():\n    assert 1 == 2\n",
        **SHADOWING,
    })
    assert (result.status, result.reason) == ("failed", "1 failed of 2 tests")
    assert (result.collected, result.passed, result.failed) == (2, 1, 1)
    assert result.first_errors == ("tests/test_bad.py::test_bad: AssertionError: assert 1 == 2",)


@slow
def test_hang_is_killed_at_the_timeout(cell_python: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    result = run(cell_python, tmp_path, {"tests/test_hang.py": f"""
        import os, time

        def test_hang():
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(60)
    """}, workers=2, timeout=5)
    assert (result.status, result.reason) == ("failed", "timed out after 5 s")
    assert result.duration < 20
    assert result.first_errors[0] == (
        "tests/test_hang.py::test_hang: still running when the suite timed out")
    assert _gone(int(pid_file.read_text())), "the xdist worker survived the timeout"


def _gone(pid: int) -> bool:
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


@slow
def test_crashed_workers_never_pass(cell_python: Path, tmp_path: Path) -> None:
    # Every test kills its worker: more crashes than --max-worker-restart allows, so xdist
    # stops early and some collected tests never reach the JUnit file.
    result = run(cell_python, tmp_path, {"tests/test_crash.py": """
        import os, signal
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_crash(n):
            if n % 2:
                os.kill(os.getpid(), signal.SIGSEGV)
            os._exit(1)
    """}, workers=2)
    assert result.status == "failed"
    assert result.passed == 0 and result.collected == 6
    assert "collected tests did not run" in result.reason, result.reason
    assert any("crashed" in line for line in result.first_errors), result.first_errors


@slow
def test_os_exit_zero_without_xdist_is_a_failure(cell_python: Path, tmp_path: Path) -> None:
    stale = tmp_path / "out" / "unit.xml"
    junit.write_not_run_junit(stale, CELL, "unit", "left by an earlier run")
    result = run(cell_python, tmp_path, {"tests/test_exit.py": """
        import os

        def test_first():
            pass

        def test_exit():
            os._exit(0)

        def test_never():
            pass
    """})
    assert result.status == "failed"
    assert result.reason == "JUnit file missing (pytest exited 0)"
    assert (result.collected, result.passed, result.junit) == (3, 0, None)
    assert result.first_errors[0] == (
        "tests/test_exit.py::test_exit: started but never finished (the process died?)")


@slow
def test_no_tests_collected(cell_python: Path, tmp_path: Path) -> None:
    result = run(cell_python, tmp_path, {"tests/helpers.py": "X = 1\n"})
    assert (result.status, result.reason, result.collected) == (
        "failed", "no tests collected", 0)


@slow
def test_usage_error_shows_pytest_complaint(cell_python: Path, tmp_path: Path) -> None:
    result = run(cell_python, tmp_path, {"tests/test_ok.py": "def test_ok():\n    pass\n"},
                 args=("--no-such-option",))
    assert (result.status, result.reason) == (
        "failed", "pytest exited 4 (usage error); JUnit file missing")
    assert any("unrecognized arguments: --no-such-option" in line
               for line in result.first_errors), result.first_errors


@slow
def test_collection_error(cell_python: Path, tmp_path: Path) -> None:
    result = run(cell_python, tmp_path, {"tests/test_imp.py": "import not_installed_mod\n"})
    assert result.status == "failed"
    assert result.reason.startswith("pytest exited 2 (interrupted"), result.reason
    assert result.first_errors == (
        "tests.test_imp: ModuleNotFoundError: No module named 'not_installed_mod'",)


def test_gpu_problem_is_not_run_and_visible_in_junit(tmp_path: Path) -> None:
    reason = "needs GPU kind h100 (compute capability 9.x); this machine has no NVIDIA GPU"
    # No interpreter at all: pytest must not even be started.
    result = run(tmp_path / "no-python", tmp_path, {}, gpu_problem=reason, gpu="h100")
    assert (result.status, result.reason, result.collected) == ("not_run", reason, 0)
    assert result.junit is not None
    from junitparser import JUnitXml

    xml = JUnitXml.fromfile(result.junit)
    [testsuite] = list(xml)
    assert testsuite.name == CELL
    assert read_junit(Path(result.junit)) == (
        junit.JUnitCase(("compatmatrix.unit", "unit"), "skipped", reason),)
    assert reason in Path(result.log).read_text()


DUPLICATED = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="cell" tests="99" failures="0" errors="0" skipped="0">
  <testcase classname="tests.test_a" name="test_ok"/>
  <testcase classname="tests.test_a" name="test_ok"/>
  <testcase classname="tests.test_a" name="test_bad"><failure message="assert 0">
E   assert 0
tests/test_a.py:3: AssertionError</failure></testcase>
  <testcase classname="tests.test_a" name="test_bad"><error message="failed on teardown with
 &quot;RuntimeError: x&quot;">tests/test_a.py:8: RuntimeError</error></testcase>
  <testcase classname="tests.test_a" name="test_skip"><skipped message="no"/></testcase>
</testsuite></testsuites>
"""


def test_duplicated_cases_count_once_and_summaries_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j.xml"
    path.write_text(DUPLICATED, encoding="utf-8")
    cases = read_junit(path)
    assert [(c.key[1], c.outcome, c.message) for c in cases] == [
        ("test_ok", "passed", ""),
        ("test_bad", "failed", "AssertionError: assert 0"),  # the worst outcome wins
        ("test_skip", "skipped", "no"),  # a skip keeps its reason
    ]


@pytest.mark.parametrize(("text", "problem"), [
    (None, "JUnit file missing"),
    ("", "JUnit file is empty"),
    ("<testsuites><testsuite>", "JUnit file unreadable"),
    ("<html/>", "JUnit file unreadable"),
])
def test_untrustworthy_junit(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "j.xml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(junit.JUnitProblem, match=problem):
        read_junit(path)


def test_junit_key_matches_pytest_naming() -> None:
    assert junit_key("tests/unit/test_x.py::TestA::test_y[a::b-c[d]]") == (
        "tests.unit.test_x.TestA", "test_y[a::b-c[d]]")
    assert junit_key("tests/test_x.py::test_y") == ("tests.test_x", "test_y")


def test_result_round_trips_through_json() -> None:
    result = SuiteResult("unit", SuiteStatus.FAILED, "1 failed of 2 tests", 2, 1, 1, 0, 0, 1.5,
                         None, "/l.log", "pytest", ("a: b",))
    data = json.loads(json.dumps(result.to_json()))
    assert SuiteResult.from_json(data) == result


def test_plugin_writes_the_files_the_runner_reads() -> None:
    source = suites.PLUGIN_SOURCE.read_text()
    assert f'COLLECTED = "{suites._COLLECTED}"' in source
    assert f'PROGRESS = "{suites._PROGRESS}"' in source


# -- nothing that proves nothing is green ----------------------------------------------------


@slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_suite_whose_every_test_skips_is_not_run(cell_python: Path, tmp_path: Path,
                                                   workers: int) -> None:
    result = run(cell_python, tmp_path, {"tests/test_s.py": """
        import pytest

        @pytest.mark.skip(reason="needs vllm")
        def test_a(): pass

        def test_b(): pytest.skip("no GPU here")
    """}, workers=workers)
    assert (result.status, result.skipped, result.passed) == ("not_run", 2, 0)
    assert result.reason == "all 2 tests skipped: needs vllm; no GPU here"


@slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_suite_whose_every_test_is_deselected_is_not_run(cell_python: Path, tmp_path: Path,
                                                           workers: int) -> None:
    result = run(cell_python, tmp_path, {"tests/test_s.py": """
        def test_a(): pass

        def test_b(): pass
    """}, workers=workers, args=("-k", "nothing_matches"))
    assert (result.status, result.reason) == ("not_run", "all 2 tests deselected")


@slow
def test_some_skips_beside_passes_are_a_pass(cell_python: Path, tmp_path: Path) -> None:
    result = run(cell_python, tmp_path, {"tests/test_s.py": """
        import pytest

        def test_a(): pass

        def test_b(): pytest.skip("later")
    """})
    assert (result.status, result.passed, result.skipped) == ("passed", 1, 1)


@slow
def test_a_suite_path_that_does_not_exist_is_a_failure(cell_python: Path,
                                                       tmp_path: Path) -> None:
    result = run(cell_python, tmp_path, {"other/test_s.py": "def test_a(): pass\n"})
    assert result.status == "failed"
    assert "usage error" in result.reason or "no tests" in result.reason
