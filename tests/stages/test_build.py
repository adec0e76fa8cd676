"""CUDA builds: the nvcc that matches the build torch, matrix.yaml's CUDA keys, preinstalled torch.

The first part is fast and needs no CUDA: nvcc and uv are stand-in shell scripts. The last part
(``COMPATMATRIX_CUDA_TESTS=1``) runs real cells of this repository's kernels against PyPI's CUDA
torch wheels, several GB that CI must not download: opt in where uv's cache holds them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml, Skipped

from compatmatrix.errors import SpecError
from compatmatrix.host.interpreters import InterpreterFinder
from compatmatrix.host.toolchain import (
    NVCC_ENV,
    Nvcc,
    Toolchain,
    ToolchainError,
    compile_env,
    find_nvcc,
    mismatch,
    nvcc_setting,
    parse_include_dirs,
    parse_nvcc_version,
    prepare_toolchain,
    probe,
    pypi_requirements,
)
from compatmatrix.host.uv import Sources, uv_command
from compatmatrix.model.plan import plan_cells
from compatmatrix.model.project import BuildSystem
from compatmatrix.model.spec import DEFAULT_CUDA_ARCHS, PREINSTALLED, load_matrix
from compatmatrix.model.workdir import WorkDir
from compatmatrix.run.projectfiles import digest_files
from compatmatrix.stages.build import (
    BuildRequest,
    MetadataRequest,
    _build_requirements,
    _compile_env,
    _digest,
    prepare_metadata,
    read_torch_facts,
)
from compatmatrix.stages.identity import _preinstalled_problem, _version_problem
from compatmatrix.stages.install import install_cell_env
from compatmatrix.stages.resolve import cell_requirements, resolve_cell
from tests.conftest import MINIMAL, WriteMatrix

NVCC_13 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Wed_Aug_20_01:58:59_PM_PDT_2025
Cuda compilation tools, release 13.0, V13.0.88
Build cuda_13.0.r13.0/compiler.36424714_0
"""


# -- stand-ins ------------------------------------------------------------------------------


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(0o755)
    return path


def fake_nvcc(path: Path, version: str, include: Path | None = None) -> Path:
    """Answers --version like nvcc ``version`` and --dryrun with an INCLUDES line."""
    includes = f"-I{include}" if include else ""
    return write_script(path, f"""\
        case "$1" in
          --version) echo "Cuda compilation tools, release {version}, V{version}.77";;
          --dryrun) echo '#$ INCLUDES="{includes}"' >&2;;
          *) exit 3;;
        esac
        """)


def fake_uv(path: Path, calls: Path, create: Mapping[str, str]) -> list[str]:
    """A uv that records each call's arguments and, on ``pip install``, creates ``create``
    (relative path -> file content, "nvcc X.Y" for a fake nvcc) under the --python's site."""
    lines = [f'echo "$@" >> {calls}', 'if [ "$1 $2" = "pip install" ]; then',
             '  python=""; prev=""', '  for a in "$@"; do',
             '    [ "$prev" = "--python" ] && python="$a"; prev="$a"', "  done",
             '  site="$(dirname "$(dirname "$python")")/site"']
    for rel, content in create.items():
        target = f'"$site/{rel}"'
        lines.append(f'  mkdir -p "$(dirname {target})"')
        if content.startswith("nvcc "):
            version = content.split()[1]
            lines.append(f"  printf '#!/bin/sh\\necho \"release {version}, V{version}.1\"\\n'"
                         f" > {target}; chmod +x {target}")
        else:
            lines.append(f"  echo {content} > {target}")
    lines.append("fi")
    write_script(path, "\n".join(lines) + "\n")
    return [str(path)]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A build environment's site-packages with a CUDA 13 torch's nvidia-* headers."""
    root = tmp_path / "env" / "site"
    for folder in ("nvidia/cu13/include/cccl", "nvidia/cu13/lib", "nvidia/cudnn/include"):
        (root / folder).mkdir(parents=True)
    (root / "nvidia/cu13/lib/libcudart.so.13").write_bytes(b"")
    return root


def toolchain_for(tmp_path: Path, site: Path, setting: tuple[str, str], torch_cuda: str,
                  env: Mapping[str, str], uv: list[str] | None = None) -> Toolchain:
    (tmp_path / "log").touch()
    return prepare_toolchain(
        setting=setting, torch_version=f"2.x+cu{torch_cuda.replace('.', '')}",
        torch_cuda=torch_cuda, root=tmp_path / "cuda", python=tmp_path / "env" / "bin" / "python",
        site_dirs=(site,), uv=uv or ["false"], source_args=(), env=env, log=tmp_path / "log",
        timeout=60)


# -- nvcc versions, and which one a build gets ---------------------------------------------


def test_nvcc_version_is_read_from_its_banner() -> None:
    assert parse_nvcc_version(NVCC_13) == ("13.0", "13.0.88")
    assert parse_nvcc_version("Cuda compilation tools, release 12.8, V12.8.93") == (
        "12.8", "12.8.93")
    assert parse_nvcc_version("release 12.4") == ("12.4", "12.4")
    assert parse_nvcc_version("bash: nvcc: command not found") is None


def test_include_dirs_come_from_nvccs_dryrun(tmp_path: Path) -> None:
    include, cccl = tmp_path / "targets/include", tmp_path / "targets/include/cccl"
    cccl.mkdir(parents=True)
    dryrun = (f'#$ _HERE_={tmp_path}/bin\n#$ INCLUDES="-I{tmp_path}/bin/../targets/include"  \n'
              f'#$ SYSTEM_INCLUDES="-isystem" "{tmp_path}/bin/../targets/include/cccl"\n'
              f'#$ INCLUDES="-I{tmp_path}/missing"\n')
    assert parse_include_dirs(dryrun) == (include, cccl)


def test_a_major_version_mismatch_names_both_versions() -> None:
    nvcc = Nvcc(Path("/usr/local/bin/nvcc"), "13.0", "13.0.88", f"{NVCC_ENV}=/usr/local/bin/nvcc")
    problem = mismatch(nvcc, "2.9.0+cu128", "12.8")
    assert problem is not None
    assert problem.startswith("nvcc 13.0.88 (/usr/local/bin/nvcc, COMPATMATRIX_NVCC=")
    assert "torch 2.9.0+cu128 (CUDA 12.8) disagree on the CUDA major version" in problem
    assert problem.endswith("use an nvcc 12.x")
    assert mismatch(nvcc, "2.13.0+cu130", "13.0") is None
    assert mismatch(nvcc, "2.14.0+cu132", "13.2") is None  # a minor apart still links


def test_the_environment_overrides_matrix_yaml() -> None:
    assert nvcc_setting("auto", {}) == ("auto", "found on this machine")
    assert nvcc_setting("pypi", {}) == ("pypi", "project.nvcc: pypi")
    assert nvcc_setting("pypi", {NVCC_ENV: "/opt/nvcc"}) == ("/opt/nvcc",
                                                             f"{NVCC_ENV}=/opt/nvcc")


def test_pypi_packages_pinned_to_torchs_cuda_minor() -> None:
    assert pypi_requirements("13.0") == ["nvidia-cuda-nvcc==13.0.*", "nvidia-nvvm==13.0.*",
                                         "nvidia-cuda-crt==13.0.*", "nvidia-cuda-cccl==13.0.*"]
    assert pypi_requirements("12.8") == ["nvidia-cuda-nvcc-cu12==12.8.*",
                                         "nvidia-cuda-cccl-cu12==12.8.*"]
    with pytest.raises(ToolchainError) as info:
        pypi_requirements("11.8")
    assert info.value.unavailable


def test_a_matching_system_nvcc_is_used(tmp_path: Path, site: Path) -> None:
    include = tmp_path / "toolkit/include"
    include.mkdir(parents=True)
    nvcc = fake_nvcc(tmp_path / "toolkit/bin/nvcc", "13.0", include)
    env = {"PATH": f"{nvcc.parent}:/usr/bin:/bin"}
    chain = toolchain_for(tmp_path, site, ("auto", "found"), "13.0", env)
    assert chain.nvcc.path == nvcc and chain.nvcc.origin == "system"
    # nvcc.profile is read next to the program started, so bin/nvcc must exec the real one
    home = chain.cuda_home
    ran = subprocess.run([home / "bin/nvcc", "--version"], capture_output=True, text=True)
    assert "release 13.0" in ran.stdout
    assert (home / "lib64/libcudart.so").resolve() == site / "nvidia/cu13/lib/libcudart.so.13"
    assert (home / "include").resolve() == include
    assert chain.include_dirs == (
        include, site / "nvidia/cu13/include", site / "nvidia/cudnn/include",
        site / "nvidia/cu13/include/cccl")
    assert "nvcc 13.0.77" in (tmp_path / "log").read_text()


def test_a_forced_nvcc_of_another_major_fails_naming_both(tmp_path: Path, site: Path) -> None:
    nvcc = fake_nvcc(tmp_path / "bin/nvcc", "13.0")
    with pytest.raises(ToolchainError) as info:
        toolchain_for(tmp_path, site, (str(nvcc), f"{NVCC_ENV}={nvcc}"), "12.8", {})
    assert not info.value.unavailable  # a failed build: the matrix asked for it
    assert "nvcc 13.0.77" in info.value.reason and "(CUDA 12.8)" in info.value.reason


def test_a_forced_path_that_is_not_nvcc_fails(tmp_path: Path, site: Path) -> None:
    with pytest.raises(ToolchainError, match="does not run as nvcc"):
        toolchain_for(tmp_path, site, ("/bin/false", "project.nvcc: /bin/false"), "13.0", {})


def test_nvcc_from_pypi_when_the_system_has_no_match(tmp_path: Path, site: Path) -> None:
    calls = tmp_path / "calls"
    uv = fake_uv(tmp_path / "uv", calls, {"nvidia/cu13/bin/nvcc": "nvcc 13.0"})
    chain = toolchain_for(tmp_path, site, ("pypi", "project.nvcc: pypi"), "13.0", {}, uv)
    assert chain.nvcc.origin == "PyPI nvidia-cuda-nvcc==13.0.*"
    assert "nvidia-cuda-nvcc==13.0.* nvidia-nvvm==13.0.*" in calls.read_text()


def test_pypis_cuda_12_nvcc_package_without_nvcc_is_unavailable(tmp_path: Path,
                                                                site: Path) -> None:
    uv = fake_uv(tmp_path / "uv", tmp_path / "calls", {"nvidia/cuda_nvcc/bin/ptxas": "ptxas"})
    with pytest.raises(ToolchainError) as info:
        toolchain_for(tmp_path, site, ("pypi", "project.nvcc: pypi"), "12.8", {}, uv)
    assert info.value.unavailable
    assert info.value.reason.startswith("no nvcc 12.8 here: PyPI's nvidia-cuda-nvcc-cu12 "
                                        "installed, but it carries ptxas and no nvcc driver")


def test_compile_env_points_torch_at_the_toolchain(tmp_path: Path, site: Path) -> None:
    nvcc = fake_nvcc(tmp_path / "toolkit/bin/nvcc", "13.0")
    chain = toolchain_for(tmp_path, site, (str(nvcc), "forced"), "13.0", {})
    ccache = write_script(tmp_path / "tools/ccache", "exit 0\n")
    env = compile_env({"PATH": str(ccache.parent), "CC": "ccache gcc", "CUDA_PATH": "/x",
                       "CPATH": "/mine"}, chain, ("9.0", "8.0+PTX"))
    home = tmp_path / "cuda"
    assert env["CUDA_HOME"] == str(home) and "CUDA_PATH" not in env
    assert env["PATH"].split(os.pathsep)[0] == str(home / "bin")
    assert env["CPATH"].split(os.pathsep)[-1] == "/mine"
    assert env["CPATH"].split(os.pathsep)[0] == str(site / "nvidia/cu13/include")
    assert env["LIBRARY_PATH"] == str(home / "lib64")
    assert env["TORCH_CUDA_ARCH_LIST"] == "9.0;8.0+PTX"
    # torch hands $CC to nvcc as -ccbin, one program: ccache goes in front of nvcc instead
    assert env["PYTORCH_NVCC"] == str(home / "bin/nvcc-ccache") and "CC" not in env
    wrapper = (home / "bin/nvcc-ccache").read_text()
    assert f"exec {ccache} {home / 'bin/nvcc'}" in wrapper and "nvcc-ran" in wrapper


def test_ccache_masquerades_as_the_compilers(tmp_path: Path) -> None:
    """Not CXX="ccache g++": torch refuses that compiler ("ccache 0.0.0") for CUDA builds."""
    ccache = write_script(tmp_path / "tools/ccache", "exit 0\n")
    env = _compile_env({"PATH": f"{ccache.parent}:/usr/bin"}, tmp_path / "src", 2,
                       tmp_path / "masq")
    assert env["PATH"] == f"{tmp_path / 'masq'}:{ccache.parent}:/usr/bin"
    assert "CC" not in env and "CXX" not in env and env["MAX_JOBS"] == "2"
    assert {p.name: p.resolve() for p in (tmp_path / "masq").iterdir()} == {
        name: ccache for name in ("cc", "c++", "gcc", "g++")}
    assert _compile_env({"PATH": "/nowhere"}, tmp_path, 1, tmp_path / "m2") == {
        "PATH": "/nowhere", "MAX_JOBS": "1"}


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
def test_the_system_nvcc_is_probed_for_real() -> None:
    nvcc = probe(Path(str(shutil.which("nvcc"))), "system", os.environ)
    assert any((d / "cuda_runtime.h").exists() for d in nvcc.include_dirs)
    found, _ = find_nvcc(os.environ, nvcc.version)
    assert found is not None and found.version == nvcc.version


# -- matrix.yaml: project.cuda_archs, project.nvcc, torch: preinstalled --------------------


def project(extra: str) -> str:
    return MINIMAL.replace("project: {path: pkg, import: pkg}",
                           "project:\n  path: pkg\n  import: pkg\n" + textwrap.indent(extra, "  "))


def test_cuda_archs_default_to_hopper(write_matrix: WriteMatrix) -> None:
    matrix = load_matrix(write_matrix(MINIMAL))
    assert matrix.project.cuda_archs == DEFAULT_CUDA_ARCHS == ("9.0",)
    assert matrix.project.nvcc == "auto"


def test_cuda_archs_and_nvcc_are_read(write_matrix: WriteMatrix) -> None:
    text = project('cuda_archs: ["9.0", 9.0a, "8.0+PTX", 10.0]\nnvcc: /usr/local/cuda/bin/nvcc\n')
    matrix = load_matrix(write_matrix(text))
    assert matrix.project.cuda_archs == ("9.0", "9.0a", "8.0+PTX", "10.0")
    assert matrix.project.nvcc == "/usr/local/cuda/bin/nvcc"


@pytest.mark.parametrize(("extra", "needle"), [
    ('cuda_archs: ["sm_90"]', "'sm_90' is not a compute capability like '9.0'\n"
                              "  hint: did you mean '9.0'?"),
    ('cuda_archs: ["90a"]', "did you mean '9.0a'?"),
    ('cuda_archs: ["9.0+ptx"]', "did you mean '9.0+PTX'?"),
    ('cuda_archs: ["9.5"]', "'9.5' is not a known GPU architecture"),
    ('cuda_archs: ["9.0", "9.0"]', "duplicate architecture '9.0'"),
    ("cuda_archs: []", "project.cuda_archs"),
    ("nvcc: pypy", "is not 'auto', 'pypi' or a path\n  hint: did you mean 'pypi'?"),
    ("cuda_arch: ['9.0']", "did you mean 'cuda_archs'"),
])
def test_bad_cuda_settings_say_what_to_write(write_matrix: WriteMatrix, extra: str,
                                             needle: str) -> None:
    with pytest.raises(SpecError) as info:
        load_matrix(write_matrix(project(extra)))
    assert needle in str(info.value)
    assert info.value.location.line == 5


def test_torch_preinstalled_is_a_torch_axis_value(write_matrix: WriteMatrix) -> None:
    text = MINIMAL + "  torch: [preinstalled, \"2.13.0\"]\n  cuda: [cu130]\n"
    matrix = load_matrix(write_matrix(text.replace("project: {path: pkg, import: pkg}",
                                                   "project: {path: pkg, import: pkg, "
                                                   "abi3: '>=2.6'}")))
    assert matrix.axis("torch").values == (PREINSTALLED, "2.13.0")  # type: ignore[union-attr]
    cells = plan_cells(matrix)
    assert [c.id for c in cells] == ["py3.11-torchpreinstalled-cu130", "py3.11-torch2.13.0-cu130"]
    # its version is known only when building: a per-Python key, never abi3 by assumption
    assert [c.build_key for c in cells] == ["cp311-torchpreinstalled-cu130",
                                            "abi3-torch2.13.0-cu130"]


def test_preinstalled_is_for_torch_only(write_matrix: WriteMatrix) -> None:
    with pytest.raises(SpecError, match="'preinstalled' is a value for the torch axis only"):
        load_matrix(write_matrix(MINIMAL + "  vllm: [preinstalled]\n"))


def test_preinstalled_torch_is_not_resolved(write_matrix: WriteMatrix, tmp_path: Path) -> None:
    matrix = load_matrix(write_matrix(MINIMAL + "  torch: [preinstalled]\n  cuda: [cu130]\n"))
    reqs = cell_requirements(matrix, plan_cells(matrix)[0], ["numpy"], None)
    assert not any(r.startswith("torch") for r in reqs)
    calls = tmp_path / "calls"
    uv = fake_uv(tmp_path / "uv", calls, {})
    resolve_cell(reqs, uv=uv, interpreter=Path(sys.executable), sources=Sources(None, ()),
                 lock=tmp_path / "lock.txt", log=tmp_path / "log", env={}, timeout=60,
                 preinstalled=("torch",))
    assert "--no-emit-package torch" in calls.read_text()  # not even when a package needs it


def test_identity_accepts_any_interpreter_torch_but_not_one_in_the_venv() -> None:
    assert _version_problem("torch", PREINSTALLED, "2.5.0a0+nv24.10") is None
    assert _version_problem("torch", PREINSTALLED, None) == (
        "torch is not installed in the interpreter, the cell says preinstalled")
    facts = {"torch": "2.13.0", "prefix": "/w/envs/c", "torch_path": "/opt/py/site/torch"}
    assert _preinstalled_problem(facts) == []
    facts["torch_path"] = "/w/envs/c/lib/python3.11/site-packages/torch"
    assert "was installed into the cell's venv" in _preinstalled_problem(facts)[0]


def test_preinstalled_venvs_see_the_interpreter_and_install_only_the_lock(
        tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    uv = fake_uv(tmp_path / "uv", calls, {})
    result = install_cell_env(tmp_path / "venv", interpreter=Path(sys.executable),
                              wheel=tmp_path / "w.whl", lock=tmp_path / "lock.txt",
                              sources=Sources(None, ()), uv=uv, env={}, log=tmp_path / "log",
                              timeout=60, system_site_packages=True)
    assert result.ok
    venv, install = calls.read_text().splitlines()
    assert "--system-site-packages" in venv and "--no-deps" in install


# -- the build's torch, and what the wheel digest covers ------------------------------------


@pytest.mark.parametrize(("version_py", "expected"), [
    ("__version__ = '2.13.0+cu130'\ncuda: Optional[str] = '13.0'\n", ("2.13.0+cu130", "13.0")),
    ("__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\n", ("2.13.0+cpu", None)),
    (None, (None, None)),
])
def test_torch_facts_are_read_without_importing_torch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version_py: str | None,
        expected: tuple[str | None, str | None]) -> None:
    if version_py is not None:
        (tmp_path / "torch").mkdir()
        (tmp_path / "torch/__init__.py").write_text("raise SystemExit('imported')\n")
        (tmp_path / "torch/version.py").write_text("from typing import Optional\n" + version_py)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    facts = read_torch_facts(Path(sys.executable))
    assert (facts.version, facts.cuda) == expected
    assert facts.root == (tmp_path / "torch" if version_py else None)


def request(tmp_path: Path, files: Sequence[Path] = (), **changes: Any) -> BuildRequest:
    base = BuildRequest(
        build_key="abi3-torch2.13.0-cu130", project=tmp_path, files=tuple(files),
        source_digest=digest_files(tmp_path, files),
        interpreter=Path(sys.executable), torch_version="2.13.0",
        build_requires=("setuptools", "torch>=2.6"), sources=Sources(None, ()))
    return dataclasses.replace(base, **changes)


def test_cuda_settings_enter_the_wheel_digest_only_with_cuda_sources(tmp_path: Path) -> None:
    (tmp_path / "a.cpp").write_text("int x;\n")
    cpp = [Path("a.cpp")]
    assert _digest(request(tmp_path, cpp)) == _digest(request(tmp_path, cpp, cuda_archs=("8.0",)))
    (tmp_path / "k.cu").write_text("__global__ void k() {}\n")
    cu = [*cpp, Path("k.cu")]
    assert _digest(request(tmp_path, cu)) != _digest(request(tmp_path, cu, cuda_archs=("8.0",)))
    assert _digest(request(tmp_path, cu)) != _digest(
        request(tmp_path, cu, nvcc=("pypi", "project.nvcc: pypi")))


def test_a_preinstalled_torch_is_not_installed_for_the_build(tmp_path: Path) -> None:
    assert _build_requirements(request(tmp_path)) == ["setuptools", "torch===2.13.0"]
    assert _build_requirements(request(tmp_path, torch_version=None,
                                       torch_preinstalled=True)) == ["setuptools"]


# -- real CUDA cells (opt in: COMPATMATRIX_CUDA_TESTS=1) ------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_NVCC = shutil.which("nvcc")
real_cuda = pytest.mark.skipif(
    os.environ.get("COMPATMATRIX_CUDA_TESTS") != "1",
    reason="downloads PyPI's CUDA torch wheels (GBs) unless uv's cache has them: "
           "set COMPATMATRIX_CUDA_TESTS=1 to run")
CU130 = "py3.11-torch2.13.0-cu130"
CU128 = "py3.11-torch2.9.0-cu128"


def run_cells(workdir: Path, *args: str, matrix: Path = ROOT / "matrix.yaml",
              env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compatmatrix", "run", "--matrix", str(matrix),
                           "--workdir", str(workdir), "--exit-zero", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=2400,
                          env={**os.environ, **(env or {})})


def record(workdir: Path, cell: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((workdir / "results" / f"{cell}.json").read_text())
    return data


def kernels_matrix(folder: Path, extra: str = "", torch: str = '"2.13.0"', cuda: str = "cu130",
                   python: str = "3.11", interpreters: str = "") -> Path:
    """This repository's kernels with the import and gpu suites (the unit suite is the
    default matrix's test)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = f"""\
        version: 1
        project:
          path: {ROOT / 'kernels'}
          import: compat_kernels
          abi3: ">=2.6"
          build_torch_attr: compat_kernels.__torch_build_version__
          test_requires: ["pytest>=8", "pytest-xdist>=3", numpy]
        {textwrap.indent(extra, '  ')}
        axes: {{python: ["{python}"], torch: [{torch}], cuda: [{cuda}]}}
        indexes: {{cu130: pypi, cu128: pypi, find_links: [pip-config]}}
        suites:
          import: {{paths: [{ROOT / 'kernels/tests/import'}]}}
          gpu: {{paths: [{ROOT / 'kernels/tests/gpu'}], requires: {{gpu: h100}}}}
        {interpreters}
        """
    path = folder / "matrix.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.slow
@real_cuda
def test_cu130_cell_builds_its_cuda_wheel_without_a_gpu(tmp_path: Path) -> None:
    """The default matrix's cu130 cell, end to end on a machine without a GPU."""
    done = run_cells(tmp_path, "--cell", CU130)
    assert done.returncode == 0, done.stdout + done.stderr
    cell = record(tmp_path, CU130)
    assert cell["status"] == "passed", (cell["stage"], cell["reason"], cell["details"])
    audit = cell["audit"]
    assert audit["gpu_code"] == {"compat_kernels/_C.abi3.so":  # type: ignore[index]
                                 {"sass": ["sm_90"], "ptx": []}}
    suites = cell["suites"]
    assert suites["unit"]["status"] == "passed"  # type: ignore[index]
    assert suites["unit"]["failed"] == 0  # type: ignore[index]
    gpu = suites["gpu"]  # type: ignore[index]
    assert gpu["status"] == "not_run" and "needs GPU kind h100" in gpu["reason"]
    # ... and the reason reaches the JUnit file and the report (and its merged JUnit)
    junit = JUnitXml.fromfile(str(tmp_path / "junit" / CU130 / "gpu.xml"))
    skips = [r for suite in junit for case in suite for r in case.result]
    assert [(type(r), r.type, r.message) for r in skips] == [
        (Skipped, "compatmatrix.not_run", gpu["reason"])]
    report = subprocess.run([sys.executable, "-m", "compatmatrix", "report", "--workdir",
                             str(tmp_path), "--out", str(tmp_path / "reports")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    markdown = (tmp_path / "reports/compatibility.md").read_text()
    assert f"**gpu**: {gpu['reason']} — {CU130}" in markdown
    assert f'message="{gpu["reason"]}" type="compatmatrix.not_run"' in (
        tmp_path / "reports/junit.xml").read_text()
    build = json.loads(next((tmp_path / "wheels").glob("*/*/build.json")).read_text())
    assert build["toolchain"]["cuda_archs"] == ["9.0"]


@pytest.mark.slow
@real_cuda
def test_without_sm90_the_audit_fails_for_the_h100_suite(tmp_path: Path) -> None:
    matrix = kernels_matrix(tmp_path / "m", 'cuda_archs: ["8.0"]')
    run_cells(tmp_path / "work", matrix=matrix)
    cell = record(tmp_path / "work", CU130)
    assert (cell["status"], cell["stage"]) == ("failed", "audit")
    assert "carries GPU code for sm_80 only" in str(cell["reason"])
    assert "suite 'gpu' needs" in str(cell["reason"])


@pytest.mark.slow
@real_cuda
def test_nvcc_from_pypi_builds_the_cu130_cell(tmp_path: Path) -> None:
    matrix = kernels_matrix(tmp_path / "m", "nvcc: pypi")
    run_cells(tmp_path / "work", matrix=matrix)
    cell = record(tmp_path / "work", CU130)
    assert cell["status"] == "passed", (cell["stage"], cell["reason"], cell["details"])
    log = (tmp_path / "work/logs" / CU130 / "build.log").read_text()
    assert "site-packages/nvidia/cu13/bin/nvcc, PyPI nvidia-cuda-nvcc==13.0.*) builds" in log


@pytest.mark.slow
@real_cuda
def test_cu128_cell_needs_an_nvcc_12(tmp_path: Path) -> None:
    """Builds with a CUDA 12.8 nvcc where there is one; PyPI has none (its
    nvidia-cuda-nvcc-cu12 carries ptxas only), so elsewhere the cell is unavailable."""
    run_cells(tmp_path, "--cell", CU128)
    cell = record(tmp_path, CU128)
    nvcc_12, _seen = find_nvcc(os.environ, "12.8")
    if nvcc_12 is not None:
        assert cell["status"] == "passed", (cell["stage"], cell["reason"], cell["details"])
    else:
        assert (cell["status"], cell["stage"]) == ("unavailable", "build")
        assert str(cell["reason"]).startswith("no nvcc 12.8 here")


@pytest.mark.slow
@real_cuda
@pytest.mark.skipif(SYSTEM_NVCC is None, reason="needs a system nvcc (13.x) to force")
def test_forcing_a_mismatched_nvcc_fails_the_build_naming_both(tmp_path: Path) -> None:
    nvcc = probe(Path(str(SYSTEM_NVCC)), "system", os.environ)
    if nvcc.version.startswith("12."):
        pytest.skip("the system nvcc is CUDA 12: it matches the cu128 cell")
    run_cells(tmp_path, "--cell", CU128, env={NVCC_ENV: str(SYSTEM_NVCC)})
    cell = record(tmp_path, CU128)
    assert (cell["status"], cell["stage"]) == ("failed", "build")
    reason = str(cell["reason"])
    assert f"nvcc {nvcc.full_version}" in reason and "torch 2.9.0+cu128 (CUDA 12.8)" in reason


@pytest.fixture
def interpreter_with_torch(tmp_path: Path) -> Iterator[Path]:
    """A copy of a Python 3.10 installation with PyPI's torch 2.13.0 (CUDA 13.0) installed
    into its own site-packages, as vendor images have it."""
    found = InterpreterFinder(os.environ).find("3.10").path
    if found is None:
        pytest.skip("needs a Python 3.10 installation to copy")
    prefix = subprocess.run([str(found), "-c", "import sys; print(sys.base_prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    copy = tmp_path / "py310"
    shutil.copytree(prefix, copy, symlinks=True)
    python = copy / "bin/python3.10"
    done = subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(python), "--system",
                           "--break-system-packages", "torch===2.13.0"], capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    yield python


@pytest.mark.slow
@real_cuda
def test_a_preinstalled_torch_is_used_where_it_is(tmp_path: Path,
                                                  interpreter_with_torch: Path) -> None:
    matrix = kernels_matrix(tmp_path / "m", torch="preinstalled", python="3.10",
                            interpreters=f'interpreters: {{"3.10": "{interpreter_with_torch}"}}')
    run_cells(tmp_path / "work", matrix=matrix)
    cell_id = "py3.10-torchpreinstalled-cu130"
    cell = record(tmp_path / "work", cell_id)
    assert cell["status"] == "passed", (cell["stage"], cell["reason"], cell["details"])
    assert "torch" not in cell["resolved"]  # type: ignore[operator]
    facts = cell["identity"]["facts"]  # type: ignore[index]
    site = interpreter_with_torch.parent.parent / "lib/python3.10/site-packages"
    assert facts["torch_path"] == str(site / "torch")
    assert cell["built_with_torch"] == cell["running_torch"] == "2.13.0+cu130"
    assert cell["audit"]["gpu_code"]  # type: ignore[index]


@real_cuda
def test_a_cuda_cell_whose_setup_py_skipped_cuda_fails_at_audit_with_its_suites(
        tmp_path: Path) -> None:
    # tests/projects/setuppy_cuda compiles its .cu only when torch sees a GPU: on this
    # GPU-less builder its cu130 wheel has no GPU code, which users of the cu130 variant
    # would find out only on a GPU. The audit says so; the suites still run and are recorded.
    project = tmp_path / "setuppy_cuda"
    shutil.copytree(ROOT / "tests" / "projects" / "setuppy_cuda", project)
    (project / "matrix.yaml").write_text(textwrap.dedent("""\
        version: 1
        project: {path: ., import: biasact}
        axes:
          python: ["3.11"]
          torch: ["2.13.0"]
          cuda: [cu130]
        indexes: {cu130: pypi}
        suites:
          unit: {paths: [tests], workers: 2}
        """))
    done = subprocess.run([sys.executable, "-m", "compatmatrix", "run", "--exit-zero"],
                          cwd=project, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((project / ".compatmatrix/results/py3.11-torch2.13.0-cu130.json")
                        .read_text())
    assert (record["status"], record["stage"]) == ("failed", "audit"), record["reason"]
    assert "no shared object in the wheel carries GPU code" in record["reason"]
    assert record["reason"].startswith("nvcc never ran during the build")
    assert "csrc/bias_act_cuda.cu" in record["reason"]
    assert record["suites"]["unit"]["passed"] > 0  # the evidence is kept


def test_each_python_of_a_build_key_reads_metadata_in_its_own_venv(tmp_path: Path) -> None:
    """An abi3 key's cells have several Pythons. The second one's metadata step must not
    recreate the venv a wheel of the key was built in: its torch libraries are what that
    wheel's audit reads (it once said torch's libc10.so was missing, for every cell but
    the first)."""
    finder = InterpreterFinder(os.environ)
    found = [finder.find(v) for v in ("3.11", "3.12")]
    if any(f.path is None for f in found):
        pytest.skip("needs Python 3.11 and 3.12")
    project = tmp_path / "proj"
    (project / "dynpkg").mkdir(parents=True)
    (project / "dynpkg" / "__init__.py").write_text("")
    (project / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='dynpkg', version='1.0', packages=['dynpkg'],"
        " install_requires=['packaging'])\n")
    files = (Path("setup.py"), Path("dynpkg/__init__.py"))
    workdir = WorkDir(tmp_path / "work")
    uv = uv_command(os.environ)
    venvs = []
    for interpreter in found:
        assert interpreter.path is not None
        request = MetadataRequest(
            build_key="abi3-torch2.13.0", project=project, files=files, source_digest="s",
            interpreter=interpreter.path,
            build_system=BuildSystem(("setuptools>=64",), "setuptools.build_meta"),
            torch_requirement=None, sources=Sources(None, ()))
        result = prepare_metadata(request, workdir=workdir, uv=uv, env=os.environ,
                                  log=tmp_path / f"{interpreter.version}.log", timeout=300)
        assert result.meta is not None, (tmp_path / f"{interpreter.version}.log").read_text()
        assert result.meta.requires_dist == ("packaging",)
        venvs.append({p for p in workdir.build_dir("abi3-torch2.13.0").glob("env*")
                      if (p / "bin" / "python").exists()})
    assert len(venvs[0]) == 1 and venvs[0] < venvs[1] and len(venvs[1]) == 2
