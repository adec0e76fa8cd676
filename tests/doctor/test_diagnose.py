"""compatmatrix doctor: each check on real metadata and real files, then real venvs.

Unit tests write ``.dist-info`` folders (METADATA, RECORD) into tmp_path or into the
site-packages of a real ``uv venv``; a fake ``torch`` package stands in for torch where only
its Python surface matters, and small C extensions are compiled with the system compiler.
The slow tests at the end install the real CPU torch 2.13.0 (from pip's find-links folder),
a real vLLM wheel and this repository's kernels.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from compatmatrix.binary.demangle import demangle, demangle_all
from compatmatrix.cli import main
from compatmatrix.doctor.diagnose import diagnose, format_report
from compatmatrix.doctor.environment import Environment, Installer, probe, read_distributions
from compatmatrix.doctor.extensions import (
    Extension,
    Loaded,
    extension_findings,
    find_extensions,
    load_extensions,
    variant_findings,
)
from compatmatrix.doctor.finding import ERROR, INFO, WARNING, DoctorFinding
from compatmatrix.doctor.requirements import check_requirements
from compatmatrix.doctor.torchcheck import (
    NvccFacts,
    TorchCheck,
    cuda_findings,
    nvcc_facts,
    torch_facts,
    torch_findings,
)
from compatmatrix.host.gpu import Capabilities, gpu_capabilities
from compatmatrix.host.indexes import pip_config_find_links
from compatmatrix.host.interpreters import InterpreterFinder

ROOT = Path(__file__).resolve().parents[2]
UV = [sys.executable, "-m", "uv"]
PY311_SUFFIXES = (".cpython-311-x86_64-linux-gnu.so", ".abi3.so", ".so")
MARKERS_311 = {
    "implementation_name": "cpython", "implementation_version": "3.11.7", "os_name": "posix",
    "platform_machine": "x86_64", "platform_release": "6.0", "platform_system": "Linux",
    "platform_version": "#1", "python_full_version": "3.11.7",
    "platform_python_implementation": "CPython", "python_version": "3.11",
    "sys_platform": "linux",
}
# c10::MessageLogger::MessageLogger(char const*, int, int): exported by torch 2.9.0's libc10,
# replaced by a (c10::SourceLocation, int, bool) constructor before 2.13.0. Every extension
# that logs through c10 and was built against 2.9 references it.
OLD_TORCH_SYMBOL = "_ZN3c1013MessageLoggerC1EPKcii"
OLD_TORCH_NAME = "c10::MessageLogger::MessageLogger(char const*, int, int)"


# -- helpers ----------------------------------------------------------------------------------


def write_dist(site: Path, name: str, version: str, requires: Iterable[str] = (),
               files: Iterable[str] = ()) -> Path:
    """An installed distribution: its dist-info folder, and RECORD naming ``files``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {req}" for req in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")
    record = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in record), encoding="utf-8")
    return info


def environment(site: Path, *, python: str = "/venv/bin/python", pip: bool = True,
                markers: Mapping[str, str] = MARKERS_311,
                suffixes: tuple[str, ...] = PY311_SUFFIXES) -> Environment:
    installer = (Installer((python, "-m", "pip", "install")) if pip
                 else Installer(("uv", "pip", "install", "--python", python)))
    return Environment(Path(python), markers["python_full_version"], "CPython", "/venv",
                       (site,), markers, suffixes, installer)


def requirements(site: Path, **kwargs: object) -> list[DoctorFinding]:
    env = environment(site, **kwargs)  # type: ignore[arg-type]
    return check_requirements(read_distributions(env.site), env)


def errors(findings: Iterable[DoctorFinding]) -> list[DoctorFinding]:
    return [f for f in findings if f.severity == ERROR]


def make_venv(folder: Path, python: str = sys.executable) -> tuple[Path, Path]:
    """A real venv (uv, no pip in it): its interpreter and its site-packages."""
    run([*UV, "venv", "-q", "--python", python, str(folder)])
    python_path = folder / "bin" / "python"
    site = run([str(python_path), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    return python_path, Path(site.strip())


def run(argv: list[str], **kwargs: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        pytest.fail(f"{argv} failed:\n{done.stdout}{done.stderr}")
    return str(done.stdout)


def fake_torch(site: Path, *, version: str = "2.13.0+cpu", cuda: str | None = None,
               dynamo: str = "", lib: bool = False) -> None:
    """A torch package with torch's Python surface (and, with ``lib``, a libc10.so)."""
    pkg = site / "torch"
    files = {
        "__init__.py": textwrap.dedent("""
            import ctypes, os
            _lib = os.path.join(os.path.dirname(__file__), "lib", "libc10.so")
            if os.path.exists(_lib):  # as torch does: its libraries first, globally
                ctypes.CDLL(_lib, mode=ctypes.RTLD_GLOBAL)
            from . import version, _C, cuda
            __version__ = version.__version__
            """),
        "version.py": f"__version__ = {version!r}\ncuda = {cuda!r}\nhip = None\n",
        "_C.py": "_GLIBCXX_USE_CXX11_ABI = True\n",
        "cuda/__init__.py": "def is_available():\n    return False\n",
        "_inductor/__init__.py": "", "_inductor/config.py": "",
        "_dynamo/__init__.py": dynamo,
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text, encoding="utf-8")
    if lib:
        compile_c(pkg / "lib" / "libc10.so", "void c10_present(void) {}\n",
                  "-Wl,-soname,libc10.so")
    write_dist(site, "torch", version, files=[f"torch/{n}" for n in files])


def compile_c(output: Path, source: str, *args: str) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build test extensions with")
    output.parent.mkdir(parents=True, exist_ok=True)
    src = output.with_name(output.name.split(".")[0] + "_src.c")
    src.write_text(source, encoding="utf-8")
    run([compiler, "-shared", "-fPIC", "-o", str(output), str(src), *args])
    src.unlink()
    return output


def extension_source(body: str = "", declarations: str = "") -> str:
    """A Python extension module ``_C`` whose init runs ``body``."""
    return textwrap.dedent("""
        #include <Python.h>
        %s
        static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, NULL};
        PyMODINIT_FUNC PyInit__C(void) { %s return PyModule_Create(&module); }
        """) % (declarations, body)


def build_extension(site: Path, package: str, source: str, *link: str) -> str:
    """Compile ``package/_C`` for this Python, linked against the torch in ``site``."""
    include = sysconfig.get_paths()["include"]
    suffix = str(sysconfig.get_config_var("EXT_SUFFIX"))
    relative = f"{package}/_C{suffix}"
    (site / package).mkdir(exist_ok=True)
    (site / package / "__init__.py").write_text("", encoding="utf-8")
    compile_c(site / relative, source, f"-I{include}", f"-L{site / 'torch' / 'lib'}",
              "-Wl,--no-as-needed", *link)
    return relative


# Reference demanglings, as c++filt prints them.
DEMANGLED = {
    OLD_TORCH_SYMBOL: OLD_TORCH_NAME,
    "_ZN3c104cuda9SetDeviceEi": "c10::cuda::SetDevice(int)",
    "_ZNK3c106SymInt11expect_sizeEPKcl": "c10::SymInt::expect_size(char const*, long) const",
    "_ZN2at6native5emptyEN3c108ArrayRefIlEE": "at::native::empty(c10::ArrayRef<long>)",
    "_ZN3c106detail14torchCheckFailEPKcS2_jRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcE"
    "EE": "c10::detail::torchCheckFail(char const*, char const*, unsigned int, std::__cxx11::"
          "basic_string<char, std::char_traits<char>, std::allocator<char> > const&)",
    "_ZN3c1010DispatcherD2Ev": "c10::Dispatcher::~Dispatcher()",
    "_ZNK2at10TensorBase8data_ptrIfEEPT_v": "float* at::TensorBase::data_ptr<float>() const",
    "_ZN3c1013getDtypeNamesB5cxx11ENS_10ScalarTypeE":
        "c10::getDtypeNames[abi:cxx11](c10::ScalarType)",
    "_ZN2at4_ops10empty_like4callERKNS_6TensorESt8optionalIN3c1010ScalarTypeEES5_INS6_6LayoutEES5_"
    "INS6_6DeviceEES5_IbES5_INS6_12MemoryFormatEE":
        "at::_ops::empty_like::call(at::Tensor const&, std::optional<c10::ScalarType>, "
        "std::optional<c10::Layout>, std::optional<c10::Device>, std::optional<bool>, "
        "std::optional<c10::MemoryFormat>)",
    "_ZN2at6launchESt8functionIFvvEE": "at::launch(std::function<void ()>)",
    "_ZN3c107monitor17WaitCounterHandle4stopERKNS_11SmallVectorIlLj6EEE":
        "c10::monitor::WaitCounterHandle::stop(c10::SmallVector<long, 6u> const&)",
    "_ZN3c1019UndefinedTensorImpl10_singletonE": "c10::UndefinedTensorImpl::_singleton",
}


# -- check 1: requirements --------------------------------------------------------------------


def test_a_pin_the_installed_version_misses_is_an_error_with_both_versions(
        tmp_path: Path) -> None:
    write_dist(tmp_path, "torch", "2.13.0+cpu")
    write_dist(tmp_path, "vllm", "0.10.1.1", ["torch==2.7.1", "pandas; extra == 'bench'"])
    [finding] = requirements(tmp_path)
    assert finding.severity == ERROR and finding.check == "requirements"
    assert finding.message == "vllm 0.10.1.1 requires torch==2.7.1, but torch 2.13.0+cpu is " \
                              "installed"
    assert "--no-deps" in finding.explanation
    # the fix keeps the installed variant (+cpu) and uses the inspected interpreter
    assert finding.fix == ("/venv/bin/python -m pip install --extra-index-url "
                           "https://download.pytorch.org/whl/cpu 'torch==2.7.1'")


def test_a_local_version_satisfies_a_plain_pin_and_prereleases_count(tmp_path: Path) -> None:
    write_dist(tmp_path, "torch", "2.13.0+cpu")
    write_dist(tmp_path, "triton", "3.5.0rc1")
    write_dist(tmp_path, "vllm", "0.30.0", ["torch==2.13.0", "triton>=3.4"])
    [finding] = requirements(tmp_path)
    assert finding.severity == INFO
    assert finding.message == "the requirements of all 3 installed distributions are met"


def test_missing_requirements_are_one_finding_per_distribution(tmp_path: Path) -> None:
    write_dist(tmp_path, "vllm", "0.10.1.1",
               ["regex", "fastapi[standard]>=0.115.0", "transformers>=4.55.0"])
    [finding] = requirements(tmp_path, pip=False)
    assert finding.message == ("vllm 0.10.1.1 requires fastapi[standard]>=0.115.0, regex, "
                               "transformers>=4.55.0, which are not installed")
    assert finding.fix == ("uv pip install --python /venv/bin/python "
                           "'fastapi[standard]>=0.115.0' regex 'transformers>=4.55.0'")


def test_markers_are_evaluated_for_the_inspected_python(tmp_path: Path) -> None:
    write_dist(tmp_path, "pkg", "1.0", ["tomli>=1.1; python_version < '3.11'",
                                        "numba==0.61.2; python_version > '3.9'"])
    assert [f.message for f in errors(requirements(tmp_path))] == [
        "pkg 1.0 requires numba==0.61.2, which is not installed"]
    on_310 = {**MARKERS_311, "python_version": "3.10", "python_full_version": "3.10.14"}
    assert [f.message for f in errors(requirements(tmp_path, markers=on_310))] == [
        "pkg 1.0 requires numba==0.61.2, tomli>=1.1, which are not installed"]


def test_an_extra_counts_only_when_something_installed_asks_for_it(tmp_path: Path) -> None:
    write_dist(tmp_path, "fastapi", "0.115.0", ["starlette", "uvicorn; extra == 'standard'",
                                                "jinja2; extra == 'all'"])
    write_dist(tmp_path, "starlette", "0.40.0")
    assert not errors(requirements(tmp_path))
    write_dist(tmp_path, "vllm", "0.10.1.1", ["fastapi[Standard]>=0.115"])
    [finding] = errors(requirements(tmp_path))
    assert finding.message == "fastapi 0.115.0 [standard] requires uvicorn, which is not installed"
    assert "because vllm 0.10.1.1 requires fastapi[Standard]>=0.115" in finding.explanation


def test_extras_are_followed_transitively(tmp_path: Path) -> None:
    write_dist(tmp_path, "a", "1", ["b[x]"])
    write_dist(tmp_path, "b", "1", ["c[y]; extra == 'x'"])
    write_dist(tmp_path, "c", "1", ["d>=2; extra == 'y'"])
    write_dist(tmp_path, "d", "1.5")
    [finding] = errors(requirements(tmp_path))
    assert finding.message == "c 1 [y] requires d>=2, but d 1.5 is installed"


def test_the_first_distribution_on_the_import_path_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_dist(first, "torch", "2.13.0")
    write_dist(second, "torch", "2.7.1")
    write_dist(second, "vllm", "0.10.1.1", ["torch==2.7.1"])
    env = Environment(Path("/p"), "3.11.7", "CPython", "/", (first, second), MARKERS_311,
                      PY311_SUFFIXES, Installer(("pip", "install")))
    [finding] = check_requirements(read_distributions(env.site), env)
    assert "but torch 2.13.0 is installed" in finding.message


def test_probe_reads_the_interpreter_and_picks_the_installer(tmp_path: Path) -> None:
    python, site = make_venv(tmp_path / "venv")
    env = probe(tmp_path / "venv", os.environ, sys.executable)  # a venv folder will do
    assert env.python == python and site in env.site
    assert env.version == ".".join(map(str, sys.version_info[:3]))
    assert env.markers["python_version"] == ".".join(map(str, sys.version_info[:2]))
    assert sysconfig.get_config_var("EXT_SUFFIX") in env.extension_suffixes
    # uv makes venvs without pip: the fix commands must then use uv
    expected = ("uv", "pip", "install", "--python", str(python)) if shutil.which("uv") else (
        str(python), "-m", "pip", "install")
    assert env.installer.argv == expected


# -- check 2: torch ---------------------------------------------------------------------------


def test_torch_facts_and_a_torch_compile_that_does_not_import(tmp_path: Path) -> None:
    python, site = make_venv(tmp_path / "venv")
    fake_torch(site, version="2.13.0+cu130", cuda="13.0", dynamo="import sympy\n")
    env = probe(python, os.environ, sys.executable)
    facts = torch_facts(env, os.environ)
    assert (facts.version, facts.cuda, facts.cxx11_abi) == ("2.13.0+cu130", "13.0", True)
    assert facts.modules == {"torch._inductor.config": None,
                             "torch._dynamo": "ModuleNotFoundError: No module named 'sympy'"}
    found = torch_findings(facts, env, "2.13.0+cu130")
    info = [f.message for f in found if f.severity == INFO]
    assert info == ["torch 2.13.0+cu130, a CUDA 13.0 build, C++ ABI cxx11 "
                    "(torch._C._GLIBCXX_USE_CXX11_ABI = True)"]
    [broken] = errors(found)
    assert broken.message == ("import torch._dynamo fails: ModuleNotFoundError: No module named "
                              "'sympy'")
    assert broken.fix == env.installer.command("sympy")


def test_torch_that_does_not_import_is_an_error_with_a_reinstall(tmp_path: Path) -> None:
    python, site = make_venv(tmp_path / "venv")
    fake_torch(site)
    (site / "torch" / "_C.py").write_text("raise ImportError('libtorch_cpu.so: cannot open "
                                          "shared object file')\n", encoding="utf-8")
    env = probe(python, os.environ, sys.executable)
    [finding] = torch_findings(torch_facts(env, os.environ), env, "2.13.0+cpu")
    assert finding.severity == ERROR
    assert "torch does not import: ImportError: libtorch_cpu.so" in finding.message
    assert finding.fix == env.installer.command("--force-reinstall", "torch==2.13.0+cpu")


def test_no_torch_is_noted(tmp_path: Path) -> None:
    env = environment(tmp_path)
    [finding] = torch_findings(None, env, None)
    assert (finding.severity, finding.message) == (INFO, "torch is not installed")


# -- check 3: CUDA toolchain ------------------------------------------------------------------


def fake_nvcc(folder: Path, release: str) -> Path:
    nvcc = folder / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True, exist_ok=True)
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, "
                    f"V{release}.88'\n", encoding="utf-8")
    nvcc.chmod(0o755)
    return nvcc


CUDA_TORCH = TorchCheck(version="2.13.0+cu130", cuda="13.0", cxx11_abi=True,
                        cuda_available=True)
NO_GPU = Capabilities((), "nvidia-smi not found")


@pytest.mark.parametrize(("release", "severity", "words"), [
    ("12.8", ERROR, "builds will fail"),
    ("13.1", WARNING, "differs from torch's CUDA 13.0 in the minor version"),
    ("13.0", INFO, "matches torch's CUDA 13.0"),
])
def test_nvcc_against_torch_cuda(tmp_path: Path, release: str, severity: str,
                                 words: str) -> None:
    fake_nvcc(tmp_path / "cuda", release)
    nvcc = nvcc_facts({"CUDA_HOME": str(tmp_path / "cuda"), "PATH": "/usr/bin:/bin"})
    assert (nvcc.version, nvcc.found_by) == (release, "$CUDA_HOME")
    [finding, _gpu] = cuda_findings(CUDA_TORCH, nvcc, NO_GPU)
    assert finding.severity == severity and words in finding.message
    if severity != INFO:
        assert finding.fix == ("export CUDA_HOME=/usr/local/cuda-13.0 "
                               "PATH=/usr/local/cuda-13.0/bin:$PATH")


def test_nvcc_is_found_on_path_and_missing_nvcc_warns_for_a_cuda_torch(tmp_path: Path) -> None:
    fake_nvcc(tmp_path / "tools", "13.0")
    found = nvcc_facts({"PATH": str(tmp_path / "tools" / "bin")})
    assert (found.version, found.found_by) == ("13.0", "PATH")
    broken = nvcc_facts({"CUDA_HOME": str(tmp_path / "empty"), "PATH": ""})
    assert broken.version is None and "has no bin/nvcc" in broken.error
    [finding, _gpu] = cuda_findings(CUDA_TORCH, broken, NO_GPU)
    assert finding.severity == WARNING and "torch is a CUDA 13.0 build" in finding.message
    cpu = TorchCheck(version="2.13.0+cpu", cxx11_abi=True)
    [note, _gpu] = cuda_findings(cpu, found, NO_GPU)
    assert note.severity == INFO and "torch is a CPU build" in note.message


def test_gpus_from_nvidia_smi(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, GPU-1234, 9.0, NVIDIA H200'\n", encoding="utf-8")
    smi.chmod(0o755)
    gpus = gpu_capabilities({"PATH": str(tmp_path)})
    nvcc = NvccFacts(None, "", error="not found")
    cpu = TorchCheck(version="2.13.0+cpu", cxx11_abi=True)
    assert cuda_findings(cpu, nvcc, gpus)[1].message == "GPU visible: NVIDIA H200 (9.0)"
    unusable = TorchCheck(version="2.13.0+cu130", cuda="13.0", cuda_available=False)
    warning = cuda_findings(unusable, nvcc, gpus)[1]
    assert warning.severity == WARNING and "torch.cuda.is_available() is False" in \
        warning.message
    none = cuda_findings(cpu, nvcc, gpu_capabilities({"PATH": str(tmp_path / "nothing")}))[1]
    assert none.message == "no NVIDIA GPU visible (nvidia-smi not found)"


# -- check 4: compiled extensions -------------------------------------------------------------


@pytest.fixture
def torch_venv(tmp_path: Path) -> tuple[Environment, Path]:
    """A real venv with a fake CPU torch whose lib/libc10.so is a real shared library."""
    python, site = make_venv(tmp_path / "venv")
    fake_torch(site, lib=True)
    return probe(python, os.environ, sys.executable), site


def test_an_extension_that_dies_on_an_undefined_symbol_names_it_and_its_torch(
        torch_venv: tuple[Environment, Path]) -> None:
    env, site = torch_venv
    good = build_extension(site, "goodext", extension_source(
        "c10_present();", "void c10_present(void);"), "-lc10")
    old = build_extension(site, "oldext", extension_source(
        "char logger[512]; message_logger(logger, __FILE__, __LINE__, 0);",
        f'void message_logger(void *, const char *, int, int) __asm__("{OLD_TORCH_SYMBOL}");'),
        "-lc10")
    write_dist(site, "goodext", "1.0", ["torch>=2.13,<2.14"], [good])
    write_dist(site, "oldext", "1.0", ["torch==2.9.0"], [old])
    dists = read_distributions(env.site)
    extensions = find_extensions(env, dists)
    assert [(e.relative, e.module) for e in extensions] == [
        (good, "goodext._C"), (old, "oldext._C")]
    loaded, torch_error = load_extensions(env, extensions, os.environ)
    assert torch_error == "" and [item.error is None for item in loaded] == [True, False]
    facts = TorchCheck(version="2.13.0+cpu", cxx11_abi=True)
    findings = extension_findings(loaded, "", facts, env, {d.key: d for d in dists},
                                  os.environ)
    [finding] = errors(findings)
    assert finding.message == (f"{old} (oldext 1.0) does not load: undefined symbol "
                               f"{OLD_TORCH_NAME}; it needs torch==2.9.0")
    assert OLD_TORCH_SYMBOL in finding.explanation
    assert finding.fix == env.installer.command(
        "--extra-index-url", "https://download.pytorch.org/whl/cpu", "torch==2.9.0")
    assert "1 of 2 compiled extensions that link libtorch load" in findings[-1].message


def test_a_crash_is_pinned_on_its_extension_and_the_rest_still_load(
        torch_venv: tuple[Environment, Path]) -> None:
    env, site = torch_venv
    crash = build_extension(site, "aaa_crash", extension_source(
        "raise(SIGSEGV);", "#include <signal.h>\nvoid c10_present(void);"), "-lc10")
    good = build_extension(site, "zzz_good", extension_source(
        "c10_present();", "void c10_present(void);"), "-lc10")
    missing = build_extension(site, "needs_lib", extension_source(), "-lc10",
                              f"-L{compile_c(site / 'build' / 'libgone.so', 'int x;').parent}",
                              "-lgone")
    (site / "build" / "libgone.so").unlink()  # linked against, then gone, as on a user's box
    write_dist(site, "crashy", "1.0", files=[crash, good, missing])
    extensions = find_extensions(env, read_distributions(env.site))
    loaded, _ = load_extensions(env, extensions, os.environ)
    by_file = {item.extension.relative: item for item in loaded}
    assert by_file[crash].crashed and "SIGSEGV" in (by_file[crash].error or "")
    assert by_file[good].error is None
    assert "libgone.so" in (by_file[missing].error or "")
    facts = TorchCheck(version="2.13.0+cpu", cxx11_abi=True)
    messages = [f.message for f in errors(extension_findings(loaded, "", facts, env, {},
                                                             os.environ))]
    assert f"{crash} (crashy 1.0) does not load: loading crashed the interpreter (SIGSEGV)" \
        in messages
    assert f"crashy 1.0: {missing} needs libgone.so, which is not found" in messages


def test_libraries_other_pythons_and_torch_itself_are_not_loaded(
        torch_venv: tuple[Environment, Path]) -> None:
    env, site = torch_venv
    for name in ("libaddon_torch29.so", "_C.cpython-399-x86_64-linux-gnu.so"):
        compile_c(site / "addon" / name, "void c10_present(void); void f(void) "
                  "{ c10_present(); }", f"-L{site / 'torch' / 'lib'}", "-Wl,--no-as-needed",
                  "-lc10")
    assert find_extensions(env, read_distributions(env.site)) == []


def test_missing_gpu_libraries_say_which_torch_is_needed(tmp_path: Path) -> None:
    site = tmp_path
    write_dist(site, "vllm", "0.10.1.1", ["torch==2.7.1"], ["vllm/_C.abi3.so"])
    env = environment(site)
    dists = read_distributions(env.site)
    vllm = dists[0]

    def failed(file: str, library: str) -> Loaded:
        extension = Extension(site / file, file, file[:-8].replace("/", "."), vllm)
        return Loaded(extension, f"{library}: cannot open shared object file: No such file or "
                                 "directory")

    loaded = [failed("vllm/_C.abi3.so", "libcudart.so.12"),
              failed("vllm/_moe_C.abi3.so", "libcudart.so.12"),
              failed("vllm/cumem_allocator.abi3.so", "libcuda.so.1")]
    facts = TorchCheck(version="2.13.0+cpu", cxx11_abi=True)
    found = extension_findings(loaded, "", facts, env, {d.key: d for d in dists}, {})
    [cudart] = errors(found)
    assert cudart.message == "vllm 0.10.1.1: 2 extensions need libcudart.so.12, which is not found"
    assert "a CUDA 12 build of torch" in cudart.explanation and "torch==2.7.1" in \
        cudart.explanation
    assert cudart.fix == "/venv/bin/python -m pip install --force-reinstall 'torch==2.7.1'"
    [driver] = [f for f in found if f.severity == WARNING]
    assert "libcuda.so.1" in driver.message and "NVIDIA driver" in driver.explanation


# -- the demangler ----------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "expected"), sorted(DEMANGLED.items()))
def test_the_fallback_demangler_agrees_with_cxxfilt(symbol: str, expected: str) -> None:
    assert demangle(symbol) == expected


def test_demangling_uses_cxxfilt_when_present_and_the_fallback_otherwise() -> None:
    without = demangle_all(list(DEMANGLED), {"PATH": ""})
    assert without == DEMANGLED
    if shutil.which("c++filt"):
        assert demangle_all(list(DEMANGLED), os.environ) == DEMANGLED
    assert demangle("not_mangled") == "not_mangled"
    assert demangle("_ZZN3foo3barEvE1x") == "_ZZN3foo3barEvE1x"  # unsupported: left as is


# -- check 5: extensions built for another Python ---------------------------------------------


def test_a_module_built_only_for_another_python_is_an_error(tmp_path: Path) -> None:
    write_dist(tmp_path, "fastkern", "1.2", files=[
        "fastkern/_C.cpython-312-x86_64-linux-gnu.so", "fastkern/__init__.py"])
    write_dist(tmp_path, "okay", "1.0", files=[
        "okay/_C.cpython-312-x86_64-linux-gnu.so", "okay/_C.abi3.so"])
    write_dist(tmp_path, "multi", "1.0", files=[
        f"multi/_C.cpython-3{minor}-x86_64-linux-gnu.so" for minor in (10, 11, 12)])
    env = environment(tmp_path)
    [finding] = variant_findings(read_distributions(env.site), env)
    assert finding.severity == ERROR and finding.subject == "fastkern 1.2"
    assert finding.message == ("fastkern 1.2: fastkern/_C.cpython-312-x86_64-linux-gnu.so is "
                               "built for Python 3.12 only; this is Python 3.11")
    assert "`import fastkern._C` fails" in finding.explanation
    assert finding.fix == ("/venv/bin/python -m pip install --force-reinstall --no-deps "
                           "--no-binary fastkern 'fastkern==1.2'")


# -- the command ------------------------------------------------------------------------------


def test_a_python_that_does_not_exist_or_run_exits_2_without_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--python", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == f"compatmatrix: --python {tmp_path / 'nope'}: no such file\n"
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n")
    broken.chmod(0o755)
    assert main(["doctor", "--python", str(broken), "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {"error": f"cannot inspect {broken}: it exited with 127: error "
                                        "while loading shared libraries",
                               "exit_code": 2, "schema": 1, "status": "cannot-inspect"}
    assert "Traceback" not in err and "cannot inspect" in err


def test_doctor_on_a_real_venv_with_broken_metadata(tmp_path: Path) -> None:
    """The integration test of the fast kind: a real venv, no torch, a real subprocess."""
    python, site = make_venv(tmp_path / "venv")
    write_dist(site, "needs-numpy", "1.0", ["numpy>=1.26"])
    write_dist(site, "old-ext", "2.0", files=["old_ext/_C.cpython-39-x86_64-linux-gnu.so"])
    argv = [sys.executable, "-m", "compatmatrix", "doctor", "--python", str(tmp_path / "venv")]
    first = subprocess.run([*argv, "--json"], capture_output=True, text=True, cwd=ROOT)
    again = subprocess.run([*argv, "--json"], capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 1, first.stderr
    assert first.stdout == again.stdout  # stable: sorted keys, sorted findings
    report = json.loads(first.stdout)
    assert list(report) == sorted(report)
    assert report["status"] == "problems" and report["python"]["executable"] == str(python)
    found = [(f["check"], f["severity"], f["subject"]) for f in report["findings"]]
    assert found == sorted(found, key=lambda f: (
        ["requirements", "torch", "cuda", "extensions", "wheels"].index(f[0]),
        ["error", "warning", "info"].index(f[1]), f[2]))
    assert ("requirements", "error", "needs-numpy 1.0") in found
    assert ("wheels", "error", "old-ext 2.0") in found
    human = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert human.returncode == 1
    assert "  error: needs-numpy 1.0 requires numpy>=1.26, which is not installed" in human.stdout
    assert f"--python {python} 'numpy>=1.26'" in human.stdout  # uv's: the venv has no pip
    assert human.stdout.rstrip().endswith("problems found: 2 errors, 0 warnings, 3 info")


# -- real environments (slow) -----------------------------------------------------------------


def torch_cpu_venv(folder: Path) -> tuple[Path, Path]:
    """A venv with Python 3.11 and the real CPU torch 2.13.0 from pip's find-links folder."""
    interpreter = InterpreterFinder(os.environ).find("3.11")
    if interpreter.path is None:
        pytest.skip(f"no Python 3.11: {interpreter.problem}")
    links = pip_config_find_links(os.environ)
    if not any(Path(d).glob("torch-2.13.0+cpu-cp311-*.whl") for d in links):
        pytest.skip("no CPU torch 2.13.0 wheel for cp311 in pip's find-links folders")
    python, site = make_venv(folder, str(interpreter.path))
    run([*UV, "pip", "install", "-q", "--python", str(python),
         *(f"--find-links={d}" for d in links), "torch==2.13.0+cpu"])
    return python, site


def doctor_json(python: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "compatmatrix", "doctor", "--python",
                           str(python), "--json"], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return done.returncode, report


def findings_of(report: Mapping[str, object], check: str,
                severity: str = ERROR) -> list[dict[str, str]]:
    found = report["findings"]
    assert isinstance(found, list)
    return [f for f in found if f["check"] == check and f["severity"] == severity]


@pytest.mark.slow
def test_vllm_installed_with_no_deps_next_to_another_torch(tmp_path: Path) -> None:
    python, _ = torch_cpu_venv(tmp_path / "venv")
    # vLLM 0.10.1.1 pins torch==2.7.1 (a CUDA 12 build); --no-deps keeps torch 2.13.0+cpu
    run([*UV, "pip", "install", "-q", "--python", str(python), "--no-deps", "vllm==0.10.1.1"])
    code, report = doctor_json(python)
    assert code == 1
    messages = [f["message"] for f in findings_of(report, "requirements")]
    assert "vllm 0.10.1.1 requires torch==2.7.1, but torch 2.13.0+cpu is installed" in messages
    [conflict] = [f for f in findings_of(report, "requirements") if "torch==2.7.1, but" in
                  f["message"]]
    assert str(python) in conflict["fix"]
    assert conflict["fix"].endswith(" --extra-index-url https://download.pytorch.org/whl/cpu "
                                    "'torch==2.7.1'")
    # its CUDA 12 extensions cannot load under a CPU torch, and doctor says which torch
    cuda12 = [f for f in findings_of(report, "extensions") if "libcudart.so.12" in f["message"]]
    assert cuda12 and "torch==2.7.1" in cuda12[0]["explanation"]


@pytest.mark.slow
def test_an_extension_built_against_another_torch(tmp_path: Path) -> None:
    """oldext references the 2.9.0-only MessageLogger constructor and declares torch==2.9.0.

    How the mismatch is simulated: building a real extension against torch 2.9.0 would need a
    multi-gigabyte CUDA download, so the extension is compiled here (Python.h only, a second)
    with a reference to that constructor declared by its mangled name, and linked against the
    real libc10/libtorch of torch 2.13.0. The .so that results depends on libtorch exactly as
    one built against 2.9.0 does for this symbol; it is installed as a real wheel.
    """
    python, site = torch_cpu_venv(tmp_path / "venv")
    built = tmp_path / "built"
    include = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"])
    suffix = run([str(python), "-c", "import sysconfig; "
                  "print(sysconfig.get_config_var('EXT_SUFFIX'))"]).strip()
    compile_c(built / "oldext" / f"_C{suffix}", extension_source(
        "", f'void message_logger(void *, const char *, int, int) __asm__("{OLD_TORCH_SYMBOL}");'
            "\nvoid log_it(void) { char l[512]; message_logger(l, __FILE__, __LINE__, 0); }"),
        f"-I{include.strip()}", f"-L{site / 'torch' / 'lib'}", "-Wl,--no-as-needed", "-lc10",
        "-ltorch")
    (built / "oldext" / "__init__.py").write_text("from oldext import _C\n")
    wheel = write_wheel(tmp_path / "oldext-1.0-cp311-cp311-linux_x86_64.whl", built / "oldext",
                        "Requires-Dist: torch==2.9.0\n")
    run([*UV, "pip", "install", "-q", "--python", str(python), "--no-deps", str(wheel)])
    code, report = doctor_json(python)
    assert code == 1
    [finding] = findings_of(report, "extensions")
    assert finding["message"] == (f"oldext/_C{suffix} (oldext 1.0) does not load: undefined "
                                  f"symbol {OLD_TORCH_NAME}; it needs torch==2.9.0")
    assert "torch 2.13.0+cpu does not" in finding["explanation"]


def write_wheel(path: Path, package: Path, requires: str) -> Path:
    """A wheel of ``package`` (a folder), with METADATA, WHEEL and a hashed RECORD."""
    name, version, *tags = path.stem.split("-")
    info = f"{name}-{version}.dist-info"
    files = {f"{package.name}/{p.name}": p.read_bytes() for p in sorted(package.iterdir())}
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 f"{requires}").encode()
    files[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                              f"Tag: {'-'.join(tags)}\n").encode()
    record = [f"{n},sha256={_digest(d)},{len(d)}" for n, d in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.mark.slow
def test_a_healthy_venv_with_the_cpu_torch_and_the_kernels_wheel(tmp_path: Path) -> None:
    python, _ = torch_cpu_venv(tmp_path / "venv")
    source = tmp_path / "kernels"
    shutil.copytree(ROOT / "kernels", source, ignore=shutil.ignore_patterns(
        "build", "tests", "*.egg-info", "_build_info.py", "__pycache__"))
    run([*UV, "pip", "install", "-q", "--python", str(python), "setuptools>=64", "wheel"])
    run([*UV, "build", "-q", "--wheel", "--no-build-isolation", "--python", str(python),
         "--out-dir", str(tmp_path / "dist"), str(source)],
        env={**os.environ, "MAX_JOBS": str(os.cpu_count() or 1)})
    [wheel] = (tmp_path / "dist").glob("compat_kernels-*.whl")
    run([*UV, "pip", "install", "-q", "--python", str(python), str(wheel)])
    code, report = doctor_json(python)
    assert code == 0, json.dumps(report["findings"], indent=2)
    assert report["status"] == "healthy"
    extensions = report["facts"]["extensions"]  # type: ignore[index]
    assert [(e["module"], e["loaded"]) for e in extensions] == [("compat_kernels._C", True)]


def test_format_report_groups_by_check(tmp_path: Path) -> None:
    python, site = make_venv(tmp_path / "venv")
    write_dist(site, "a", "1", ["b>=2"])
    write_dist(site, "b", "1")
    text = format_report(diagnose(python, {**os.environ, "PATH": os.defpath}))
    lines = text.splitlines()
    assert lines[0].startswith(f"compatmatrix doctor: {python} (CPython ")
    groups = [line for line in lines if line and not line.startswith((" ", "compatmatrix"))]
    assert groups[:-1] == ["requirements", "torch", "cuda", "wheels"]
    assert "  error: a 1 requires b>=2, but b 1 is installed" in lines
