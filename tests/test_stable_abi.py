"""The torch stable ABI on real binaries: tests/projects/stable_ext built against torch 2.13
(CPU) is classified torch-stable with the minimum torch its shims need, while a torch
extension on the unstable C++ API that declares a torch range still fails the audit.

The builds run once per test run (about 10 s each on 2 cores; the unstable one only for the
tests marked slow), shared by the xdist workers, in one build venv holding the CPU torch from
pip's find-links folder; the audit runs torch-abi-audit in its uv tool
environment (skipped when uv cannot provide it here, since the point is its verdict). The
multi-torch end to end run of matrix-stable.yaml is in test_stable_abi_matrix (slow).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from compatmatrix.binary.torchabi import STABLE, TOOL, UNSTABLE, AbiTool, library_verdicts
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.indexes import pip_config_find_links
from compatmatrix.host.interpreters import InterpreterFinder
from compatmatrix.host.uv import uv_command
from compatmatrix.model.outcomes import AuditReport
from compatmatrix.stages.audit import audit_wheel

PROJECTS = Path(__file__).resolve().parent / "projects"


def _find_links() -> list[str]:
    links = pip_config_find_links(os.environ)
    if not any(Path(d).glob("torch-2.13.0+cpu-cp311-*.whl") for d in links):
        pytest.skip("no CPU torch 2.13.0 wheel for cp311 in pip's find-links folders")
    return links


@pytest.fixture(scope="module")
def tool() -> AbiTool:
    abi_tool = AbiTool(uv_command(os.environ), dict(os.environ), timeout=180)
    probe = _cmd.run([*abi_tool.uv, "tool", "run", "--python", ">=3.11", "--from", TOOL,
                      "torch-abi-audit", "--version"], env=abi_tool.env, timeout=180)
    if not probe.ok:
        pytest.skip(f"uv cannot provide {TOOL} here: {probe.output.strip()[-200:]}")
    return abi_tool


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder all xdist workers of this run share: one build venv and one build of each
    wheel per run, whichever worker gets there first (under :func:`locked`)."""
    folder = tmp_path_factory.getbasetemp().parent / "stable-abi"
    folder.mkdir(exist_ok=True)
    return folder


@contextmanager
def locked(shared: Path) -> Iterator[None]:
    with (shared / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def build_env(shared: Path) -> Path:
    """A venv with the CPU torch 2.13.0 and setuptools, from uv's cache and find-links."""
    if shutil.which("c++") is None:
        pytest.skip("needs a C++ compiler")
    interpreter = InterpreterFinder(os.environ).find("3.11")
    if interpreter.path is None:
        pytest.skip(f"no Python 3.11: {interpreter.problem}")
    with locked(shared):
        return _build_env(shared / "env", interpreter.path)


def _build_env(venv: Path, interpreter: Path) -> Path:
    uv = uv_command(os.environ)
    if (venv / "done").is_file():
        return venv
    links = [arg for link in _find_links() for arg in ("--find-links", link)]
    for argv in ([*uv, "venv", "--quiet", "--clear", "--python", str(interpreter), str(venv)],
                 [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin/python"),
                  "torch==2.13.0+cpu", "setuptools>=77", "wheel", *links]):
        result = _cmd.run(argv, env=os.environ, timeout=600)
        if not result.ok:
            pytest.skip(f"cannot make the build venv: {result.output.strip()[-300:]}")
    (venv / "done").write_text("", encoding="utf-8")
    return venv


def build(project: Path, venv: Path, out: Path) -> Path:
    built = sorted((out / "dist").glob("*.whl"))
    if built:
        return built[0]  # another worker of this run built it
    shutil.rmtree(out, ignore_errors=True)
    src = out / "src"
    shutil.copytree(project, src, ignore=shutil.ignore_patterns(
        "__pycache__", ".compatmatrix", "build", "dist", "*.egg-info"))
    result = _cmd.run([*uv_command(os.environ), "build", "--wheel", "--no-build-isolation",
                       "--python", str(venv / "bin/python"), "--out-dir", str(out / "dist"),
                       str(src)], env={**os.environ, "MAX_JOBS": "2"}, timeout=900)
    assert result.ok, result.output[-3000:]
    return next((out / "dist").glob("*.whl"))


def torch_lib(venv: Path) -> Path:
    return next(venv.glob("lib/python3.*/site-packages/torch/lib"))


@pytest.fixture(scope="module")
def stable_wheel(build_env: Path, shared: Path) -> Path:
    with locked(shared):
        return build(PROJECTS / "stable_ext", build_env, shared / "stable")


@pytest.fixture(scope="module")
def unstable_wheel(build_env: Path, shared: Path) -> Path:
    """tests/projects/torchext (at::Tensor, TORCH_LIBRARY), declaring a range of torch."""
    with locked(shared):
        return _unstable_wheel(build_env, shared / "unstable")


def _unstable_wheel(build_env: Path, out: Path) -> Path:
    if sorted((out / "built" / "dist").glob("*.whl")):
        return build(out, build_env, out / "built")
    shutil.rmtree(out, ignore_errors=True)
    project = out / "torchext"
    shutil.copytree(PROJECTS / "torchext", project)
    setup = project / "setup.py"
    setup.write_text(setup.read_text(encoding="utf-8").replace(
        'install_requires=[f"torch>={major}.{minor},<{major}.{minor + 1}"]',
        'install_requires=["torch>=2.10"]'), encoding="utf-8")
    assert 'install_requires=["torch>=2.10"]' in setup.read_text(encoding="utf-8")
    return build(project, build_env, out / "built")


def audit(wheel: Path, venv: Path, tool: AbiTool | None, torch_abi: str = "unstable",
          ) -> AuditReport:
    return audit_wheel(wheel, python="3.11", pythons=["3.11"], torch_version="2.13.0+cpu",
                       torch_lib_dirs=[torch_lib(venv)], compiled_sources=True,
                       torch_abi=torch_abi, abi_tool=tool)


def test_stable_extension_is_classified_stable_with_its_minimum_torch(
        stable_wheel: Path, build_env: Path, tool: AbiTool) -> None:
    report = audit(stable_wheel, build_env, tool, torch_abi="stable")
    assert report.torch_abi_source == "torch-abi-audit 0.3.0"
    [library] = report.torch_abi
    assert (library.member, library.torch) == ("stable_ext/_C.abi3.so", STABLE)
    # its shims came with torch 2.10 (torch_call_dispatcher, torch_library_impl, ...), the
    # TORCH_TARGET_VERSION the project builds for, though it was built against 2.13
    assert library.min_torch == "2.10.0" and report.min_torch == "2.10.0"
    assert "torch_library_impl" in library.pinned_by
    assert library.cpython_checked and library.cpython_violations == ()
    # torch>=2.10, no upper bound: right for stable-ABI code
    assert report.torch_requirement == "torch>=2.10"
    assert report.findings == (), report.findings


def test_stable_wheel_declaring_too_low_a_torch_fails_naming_the_shim(
        stable_wheel: Path, build_env: Path, tool: AbiTool, tmp_path: Path) -> None:
    lowered = rewrite_requirement(stable_wheel, tmp_path, "torch>=2.9")
    report = audit(lowered, build_env, tool, torch_abi="stable")
    [error] = report.errors
    assert error.message.startswith("torch>=2.9 admits torch 2.9, below the torch the wheel needs")
    assert "stable_ext/_C.abi3.so uses torch's stable ABI, and its shims need torch " \
           "2.10.0 (torch_call_dispatcher" in error.message
    assert error.message.endswith("require torch>=2.10 (no upper bound is needed)")


def test_stable_wheel_without_a_torch_requirement_is_told_its_lower_bound(
        stable_wheel: Path, build_env: Path, tool: AbiTool, tmp_path: Path) -> None:
    report = audit(rewrite_requirement(stable_wheel, tmp_path, None), build_env, tool)
    [error] = report.errors
    assert error.message.startswith("the wheel does not require torch, so it admits every "
                                    "torch, also those before 2.10.0")
    assert error.message.endswith("require torch>=2.10")


def test_without_the_tool_the_verdict_is_compatmatrix_own_and_says_what_it_lacks(
        stable_wheel: Path, build_env: Path) -> None:
    broken = AbiTool(("false",), dict(os.environ), timeout=30)
    report = audit(stable_wheel, build_env, broken, torch_abi="stable")
    [library] = report.torch_abi
    assert library.torch == STABLE and library.min_torch == "2.9.0"
    assert report.torch_abi_source == "compatmatrix (ELF dynamic symbols)"
    assert report.ok  # nothing wrong was found, but what was not checked is said:
    said = [f"{f.severity}: {f.message}" for f in report.findings]
    assert any(s.startswith("warning: the minimum torch of the stable-ABI libraries is not "
                            "known (torch-abi-audit (torch-abi-audit==0.3.0) could not be had")
               for s in said), said
    assert any(s.startswith("note: stable_ext/_C.abi3.so's use of the CPython limited API "
                            "was not checked") for s in said), said


@pytest.mark.slow
def test_unstable_extension_declaring_a_range_still_fails(
        unstable_wheel: Path, build_env: Path, tool: AbiTool) -> None:
    report = audit(unstable_wheel, build_env, tool)
    [library] = report.torch_abi
    assert library.torch == UNSTABLE and library.min_torch is None
    assert any("at::" in s or "c10::" in s for s in library.unstable), library.unstable
    assert [f.message for f in report.errors] == [
        "torch>=2.10 admits torch 2.14.0, 2.12.0, but the extension was built against torch "
        "2.13.0+cpu and fails to load under another minor: require torch>=2.13,<2.14"]


@pytest.mark.slow
def test_unstable_extension_in_a_project_that_claims_stable_is_named(
        unstable_wheel: Path, build_env: Path, tool: AbiTool) -> None:
    report = audit(unstable_wheel, build_env, tool, torch_abi="stable")
    claim = [f for f in report.errors if "project.torch_abi is stable" in f.message]
    assert [f.file for f in claim] == ["tinyext/_C.cpython-311-x86_64-linux-gnu.so"]
    assert claim[0].message.startswith(
        "tinyext/_C.cpython-311-x86_64-linux-gnu.so uses torch's unstable C++ API (")


@pytest.mark.slow
def test_own_reading_agrees_with_the_tool_on_both(stable_wheel: Path, unstable_wheel: Path,
                                                  tool: AbiTool) -> None:
    for wheel in (stable_wheel, unstable_wheel):
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.endswith(".so")]
            theirs = library_verdicts(archive, members, tool)
            ours = library_verdicts(archive, members, None)
        assert [lib.torch for lib in ours.libraries] == [lib.torch for lib in theirs.libraries]


def rewrite_requirement(wheel: Path, folder: Path, requirement: str | None) -> Path:
    """The same wheel with another torch requirement (or none) in its METADATA."""
    out = folder / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith(".dist-info/METADATA"):
                lines = [line for line in data.decode().split("\n")
                         if not line.startswith("Requires-Dist: torch")]
                if requirement:
                    lines.insert(3, f"Requires-Dist: {requirement}")
                data = "\n".join(lines).encode()
            target.writestr(item, data)
    return out


@pytest.mark.slow
def test_a_given_stable_wheel_is_tested_without_a_build(stable_wheel: Path, tool: AbiTool,
                                                         tmp_path: Path) -> None:
    """The stable wheel built elsewhere, given to a run: audited against the cell's running
    torch (the check a built stable wheel gets at identity is not repeated, and once raised
    AttributeError for a wheel that was not built here), installed and tested, not built."""
    root = tmp_path / "stable_ext"
    shutil.copytree(PROJECTS / "stable_ext", root,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    shutil.copy2(stable_wheel, wheels / stable_wheel.name)
    done = subprocess.run([sys.executable, "-m", "compatmatrix", "run", "--wheels", str(wheels)],
                          cwd=root, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    records = [json.loads(p.read_text()) for p in (root / ".compatmatrix" / "results").glob(
        "*.json")]
    assert len(records) == 1, done.stdout + done.stderr
    record = records[0]
    assert record["status"] == "passed", (done.stdout + done.stderr)[-3000:]
    assert record["artifact"]["origin"] == "given"
    assert record["audit"]["torch_abi"]["verdict"] == STABLE
    assert "build" not in record["durations"]
    assert record["suites"]["unit"]["passed"] > 0
