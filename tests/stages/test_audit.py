"""audit_wheel on real wheels: zip files with dist-info, and shared objects compiled by cc."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import re
import shutil
import struct
import textwrap
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from compatmatrix.binary.elf import ElfError, read_elf, read_elf_file
from compatmatrix.binary.fatbin import FATBIN_MAGIC, read_gpu_archs, read_gpu_archs_in
from compatmatrix.binary.torchabi import AbiTool
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.uv import uv_command
from compatmatrix.model.outcomes import ERROR, NOTE, WARNING, AuditReport, Finding
from compatmatrix.stages.audit import audit_wheel, check_running_torch

ARCH = platform.machine()
ABI3 = f"cp39-abi3-linux_{ARCH}"
TORCH = "2.13.0+cpu"
PIN = "torch>=2.13,<2.14"
ALL_PYTHONS = ("3.10", "3.11", "3.12")
EXT_312 = "compat_kernels/_C.cpython-312-x86_64-linux-gnu.so"

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")


# -- building blocks: shared objects and wheels ---------------------------------------------


def compile_so(out: Path, source: str, *args: str) -> Path:
    """Compile ``source`` into the shared object ``out``; ``args`` go to the linker."""
    c_file = out.with_name(out.name + ".c")
    c_file.write_text(textwrap.dedent(source), encoding="utf-8")
    result = _cmd.run(["cc", "-shared", "-fPIC", "-o", str(out), str(c_file), *args],
                      timeout=120)
    assert result.ok, result.output
    return out


@dataclass(frozen=True)
class Binaries:
    plain: bytes  # needs nothing
    needs_libm: bytes  # needs libm.so.6, which every system has
    torch_lib: Path  # folder holding libcompat_torchlike.so, standing in for torch/lib
    needs_torchlike: bytes  # linked against libcompat_torchlike.so
    needs_gone: bytes  # linked against libcompat_gone.so, which exists nowhere
    needs_torch_cuda: bytes  # linked against a stub libtorch_cuda.so that exists nowhere
    needs_vendored: bytes  # linked against libcompat_vendored.so, RUNPATH $ORIGIN/../lib
    cuda_torch_lib: Path  # like a CUDA torch's lib: RUNPATH reaches ../../nvidia/lib
    needs_cudart: bytes  # linked against nvidia/lib/libcompat_cudart.so
    vendored: bytes
    uses_at: bytes  # needs an at:: symbol: torch's unstable C++ API
    uses_shim: bytes  # needs only stable shims (aoti_torch_*, torch_*)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Binaries:
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler (cc)")
    root = tmp_path_factory.mktemp("binaries")
    for folder in ("torch_lib", "gone", "cuda", "vendor", "site/torch/lib", "site/nvidia/lib"):
        (root / folder).mkdir(parents=True)
    lib = "int {name}(void) {{ return 1; }}\n"
    user = "int {name}(void);\nint compat_entry(void) {{ return {name}(); }}\n"
    compile_so(root / "torch_lib/libcompat_torchlike.so", lib.format(name="torchlike"))
    compile_so(root / "gone/libcompat_gone.so", lib.format(name="gone"))
    compile_so(root / "cuda/libtorch_cuda.so", lib.format(name="cuda_stub"))
    compile_so(root / "vendor/libcompat_vendored.so", lib.format(name="vendored"))
    compile_so(root / "site/nvidia/lib/libcompat_cudart.so", lib.format(name="cudart"))
    compile_so(root / "site/torch/lib/libcompat_torch_cuda.so", user.format(name="cudart"),
               f"-L{root / 'site/nvidia/lib'}", "-lcompat_cudart",
               "-Wl,-rpath,$ORIGIN/../../nvidia/lib")

    def linked(name: str, symbol: str, folder: str, library: str, *extra: str) -> bytes:
        return compile_so(root / name, user.format(name=symbol), f"-L{root / folder}",
                          f"-l{library}", *extra).read_bytes()

    return Binaries(
        plain=compile_so(root / "plain.so", "int compat_entry(void) { return 0; }\n")
        .read_bytes(),
        needs_libm=compile_so(root / "libm_user.so", "double cos(double);\n"
                              "double compat_entry(double x) { return cos(x); }\n", "-lm")
        .read_bytes(),
        torch_lib=root / "torch_lib",
        needs_torchlike=linked("torchlike_user.so", "torchlike", "torch_lib", "compat_torchlike"),
        needs_gone=linked("gone_user.so", "gone", "gone", "compat_gone"),
        needs_torch_cuda=linked("cuda_user.so", "cuda_stub", "cuda", "torch_cuda"),
        needs_vendored=linked("vendored_user.so", "vendored", "vendor", "compat_vendored",
                              "-Wl,-rpath,$ORIGIN/../compat_kernels.libs"),
        vendored=(root / "vendor/libcompat_vendored.so").read_bytes(),
        cuda_torch_lib=root / "site/torch/lib",
        needs_cudart=linked("cudart_user.so", "cudart", "site/nvidia/lib", "compat_cudart"),
        uses_at=compile_so(root / "at_user.so", UNSTABLE_SOURCE).read_bytes(),
        uses_shim=compile_so(root / "shim_user.so", STABLE_SOURCE).read_bytes(),
    )


# Undefined symbols as a C++ extension has them: the names are asm labels, so cc links them
# as they are (a shared object may leave symbols undefined).
UNSTABLE_SOURCE = """
int numel(void *t) __asm__("_ZNK2at10TensorBase5numelEv");
int aoti_torch_get_numel(void *t, long *out);
int compat_entry(void *t) { long n; aoti_torch_get_numel(t, &n); return numel(t); }
"""
STABLE_SOURCE = """
int aoti_torch_get_numel(void *t, long *out);
int torch_call_dispatcher(const char *op, const char *overload, void *stack, long version);
int compat_entry(void *t) { long n; aoti_torch_get_numel(t, &n);
                            return torch_call_dispatcher("a", "", 0, 0); }
"""


def make_wheel(folder: Path, files: Mapping[str, bytes], *, tag: str = ABI3,
               requires: Sequence[str] = (PIN,), wheel_tags: Sequence[str] | None = None,
               skip: Sequence[str] = (), requires_python: str | None = None) -> Path:
    """A wheel as a build backend writes it: files, then WHEEL, METADATA and RECORD."""
    dist_info = "compat_kernels-0.1.0.dist-info"
    metadata = "Metadata-Version: 2.1\nName: compat-kernels\nVersion: 0.1.0\n"
    if requires_python is not None:
        metadata += f"Requires-Python: {requires_python}\n"
    metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
    metadata += "\nA long description that is no header.\nRequires-Dist: not-a-header\n"
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
    wheel += "".join(f"Tag: {t}\n" for t in (wheel_tags or [tag]))
    contents = {**files, f"{dist_info}/WHEEL": wheel.encode(),
                f"{dist_info}/METADATA": metadata.encode()}
    contents = {name: data for name, data in contents.items()
                if name.rsplit("/", 1)[-1] not in skip}
    path = folder / f"compat_kernels-0.1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
        if "RECORD" not in skip:
            archive.writestr(f"{dist_info}/RECORD", record(contents, f"{dist_info}/RECORD"))
    return path


def record(contents: Mapping[str, bytes], own_name: str) -> str:
    lines = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    return "\n".join([*lines, f"{own_name},,"]) + "\n"


def audit(path: Path, *, python: str = "3.11", pythons: Sequence[str] = ALL_PYTHONS,
          torch_version: str | None = TORCH, torch_lib_dirs: Sequence[Path] = ()) -> AuditReport:
    return audit_wheel(path, python=python, pythons=pythons, torch_version=torch_version,
                       torch_lib_dirs=torch_lib_dirs)


def messages(report: AuditReport, severity: str = ERROR) -> list[str]:
    return [f.message for f in report.findings if f.severity == severity]


# -- tags against extension files -----------------------------------------------------------


def test_good_abi3_wheel_has_no_findings(tmp_path: Path, binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/__init__.py": b"",
                                  "compat_kernels/_C.abi3.so": binaries.plain})
    report = audit(wheel)
    assert report.findings == ()
    assert report.ok
    assert report.wheel == wheel.name
    assert report.tags == (ABI3,)
    assert report.extensions == ("compat_kernels/_C.abi3.so",)
    assert report.torch_requirement == PIN
    assert AuditReport.from_json(report.to_json()) == report


def test_abi3_wheel_with_a_cpython_312_extension_lists_the_pythons_it_fails_on(
        tmp_path: Path, binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {EXT_312: binaries.plain})
    report = audit(wheel, python="3.12")
    assert not report.ok
    assert report.findings == (Finding(ERROR, EXT_312, (
        f"{EXT_312} is built for CPython 3.12 only, tagged cp39-abi3: will not load on "
        "3.9, 3.10, 3.11, 3.13, 3.14, which the wheel admits")),)


def test_abi3_wheel_with_one_cpython_extension_fails_even_in_a_one_python_matrix(
        tmp_path: Path, binaries: Binaries) -> None:
    # the way a CI that tests one Python ships an abi3 wheel that breaks every other one
    ext = "compat_kernels/_C.cpython-311-x86_64-linux-gnu.so"
    report = audit(make_wheel(tmp_path, {ext: binaries.plain}), python="3.11",
                   pythons=["3.11"])
    assert messages(report) == [
        f"{ext} is built for CPython 3.11 only, tagged cp39-abi3: will not load on "
        "3.9, 3.10, 3.12, 3.13, 3.14, which the wheel admits"]


def test_requires_python_bounds_the_users_of_an_abi3_wheel(tmp_path: Path,
                                                           binaries: Binaries) -> None:
    ext = "compat_kernels/_C.cpython-311-x86_64-linux-gnu.so"
    wheel = make_wheel(tmp_path, {ext: binaries.plain}, requires_python="==3.11.*")
    assert audit(wheel, python="3.11", pythons=["3.11"]).findings == ()


def per_python(minors: Sequence[int], binaries: Binaries) -> dict[str, bytes]:
    return {f"compat_kernels/_C.cpython-3{minor}-x86_64-linux-gnu.so": binaries.plain
            for minor in minors}


def test_one_extension_per_python_covering_requires_python_loads_everywhere(
        tmp_path: Path, binaries: Binaries) -> None:
    # DeepGEMM's layout inside vLLM's abi3 wheel: one .so per CPython it supports
    wheel = make_wheel(tmp_path, per_python((10, 11, 12, 13, 14), binaries),
                       requires_python=">=3.10")
    report = audit(wheel)
    assert messages(report) == []
    assert len(report.extensions) == 5


def test_one_extension_per_python_names_the_pythons_it_lacks(tmp_path: Path,
                                                               binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, per_python((10, 11, 13), binaries), requires_python=">=3.10")
    assert messages(audit(wheel, python="3.11", pythons=["3.11"])) == [
        "compat_kernels/_C is built for CPython 3.10, CPython 3.11, CPython 3.13 only, tagged "
        "cp39-abi3: will not load on 3.12, 3.14, which the wheel admits"]


def test_abi3_minimum_above_a_matrix_python_is_an_error(tmp_path: Path,
                                                         binaries: Binaries) -> None:
    tag = f"cp311-abi3-linux_{ARCH}"
    report = audit(make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.plain},
                              tag=tag))
    assert report.findings == (Finding(ERROR, report.wheel, (
        f"the wheel is tagged {tag}, whose minimum is above Python 3.10: installers there "
        "refuse it, yet the matrix runs it on Python 3.10")),)


def test_cp311_wheel_used_on_python_312(tmp_path: Path, binaries: Binaries) -> None:
    ext = "compat_kernels/_C.cpython-311-x86_64-linux-gnu.so"
    wheel = make_wheel(tmp_path, {ext: binaries.plain}, tag=f"cp311-cp311-linux_{ARCH}")
    assert audit(wheel, pythons=["3.11"]).findings == ()
    report = audit(wheel, python="3.12", pythons=["3.12"])
    assert report.findings == (
        Finding(ERROR, wheel.name, (f"the wheel is tagged cp311-cp311-linux_{ARCH}, which does "
                                    "not name Python 3.12: installers there refuse it, yet the "
                                    "matrix runs it on Python 3.12")),
        Finding(ERROR, ext, (f"{ext} is built for CPython 3.11 only: it will not load on "
                             "Python 3.12, where this wheel is used")),
    )


def test_cp312_wheel_with_plain_so_loads(tmp_path: Path, binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.so": binaries.plain},
                       tag=f"cp312-cp312-linux_{ARCH}")
    assert audit(wheel, python="3.12", pythons=["3.12"]).findings == ()


def pure_wheel(tmp_path: Path, *requires: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    return make_wheel(tmp_path, {"sage_like/__init__.py": b""}, tag="py3-none-any",
                      requires=requires)


def test_pure_wheel_is_audited_as_pure(tmp_path: Path) -> None:
    # a ranged torch requirement is a pure package's own business: no minor bound rule
    wheel = pure_wheel(tmp_path, "torch<3.0.0,>=2.4.0")
    report = audit(wheel)
    assert report.ok and report.findings == ()
    assert report.torch_requirement == "torch<3.0.0,>=2.4.0"
    unbounded = audit(pure_wheel(tmp_path / "b", "torch"))
    assert unbounded.findings == ()


def test_pure_wheel_of_a_project_with_compiled_sources_is_an_error(tmp_path: Path) -> None:
    wheel = pure_wheel(tmp_path)
    report = audit_wheel(wheel, python="3.11", pythons=["3.11"], torch_version=TORCH,
                         compiled_sources=True)
    assert messages(report) == [
        "the wheel carries no extension module, though the project has C, C++ or CUDA "
        "sources: the build left them out (a setup.py that skips its extension when something "
        "is missing?), and users get a package without its compiled code"]


def test_platform_wheel_without_extension_is_an_error(tmp_path: Path) -> None:
    report = audit(make_wheel(tmp_path, {"compat_kernels/__init__.py": b""}))
    assert messages(report) == [f"the wheel is tagged {ABI3} but carries no extension module: "
                                "the build did not compile the extension"]


def test_wheel_file_tags_differing_from_the_name_are_a_warning(tmp_path: Path,
                                                                binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.plain},
                       wheel_tags=[f"cp310-abi3-linux_{ARCH}"])
    report = audit(wheel)
    assert report.ok
    assert report.tags == (ABI3,)  # installers go by the file name
    assert [f.file for f in report.findings] == ["compat_kernels-0.1.0.dist-info/WHEEL"]


# -- the torch requirement ------------------------------------------------------------------


@pytest.fixture
def ext(binaries: Binaries) -> dict[str, bytes]:
    return {"compat_kernels/_C.abi3.so": binaries.uses_at}


METADATA = "compat_kernels-0.1.0.dist-info/METADATA"


def test_missing_torch_requirement_is_an_error(tmp_path: Path, ext: dict[str, bytes]) -> None:
    report = audit(make_wheel(tmp_path, ext, requires=["numpy>=1.26"]))
    assert report.torch_requirement is None
    assert report.findings == (Finding(ERROR, METADATA, (
        "the wheel does not require torch: users will pair it with any torch, and an extension "
        f"built against torch 2.13 fails to load under another minor; require {PIN}")),)


def test_torch_required_only_by_an_extra_counts_as_missing(tmp_path: Path,
                                                           ext: dict[str, bytes]) -> None:
    report = audit(make_wheel(tmp_path, ext, requires=[f'{PIN}; extra == "torch"']))
    assert report.torch_requirement is None
    assert len(messages(report)) == 1


def test_marker_for_another_python_does_not_count(tmp_path: Path,
                                                  ext: dict[str, bytes]) -> None:
    requires = ['torch>=2.13; python_version < "3.11"', f'{PIN}; python_version >= "3.11"']
    report = audit(make_wheel(tmp_path, ext, requires=requires))
    assert report.findings == ()
    assert report.torch_requirement == f'{PIN}; python_version >= "3.11"'


def test_unbounded_torch_requirement_is_an_error(tmp_path: Path, ext: dict[str, bytes]) -> None:
    report = audit(make_wheel(tmp_path, ext, requires=["torch>=2.13"]))
    assert report.torch_requirement == "torch>=2.13"
    assert messages(report) == [
        "torch>=2.13 admits torch 2.14.0, but the extension was built against torch 2.13.0+cpu "
        f"and fails to load under another minor: require {PIN}"]


def test_torch_bound_to_the_wrong_minor_is_an_error(tmp_path: Path,
                                                    ext: dict[str, bytes]) -> None:
    report = audit(make_wheel(tmp_path, ext, requires=["torch>=2.12,<2.13"]))
    assert messages(report) == [
        "torch>=2.12,<2.13 excludes torch 2.13.0, the torch the extension was built against: "
        f"require {PIN}",
        "torch>=2.12,<2.13 admits torch 2.12.0, but the extension was built against torch "
        f"2.13.0+cpu and fails to load under another minor: require {PIN}"]


def test_exact_patch_pin_is_a_warning(tmp_path: Path, ext: dict[str, bytes]) -> None:
    report = audit(make_wheel(tmp_path, ext, requires=["torch==2.13.1"]),
                   torch_version="2.13.1+cu130")
    assert report.ok
    assert len(messages(report, WARNING)) == 1


@pytest.mark.parametrize("requirement", [PIN, "torch==2.13.*", "torch~=2.13.0"])
def test_pins_to_the_built_minor_pass(tmp_path: Path, ext: dict[str, bytes],
                                      requirement: str) -> None:
    assert audit(make_wheel(tmp_path, ext, requires=[requirement])).findings == ()


def test_without_torch_the_requirement_is_only_recorded(tmp_path: Path,
                                                        ext: dict[str, bytes]) -> None:
    report = audit(make_wheel(tmp_path, ext, requires=["torch>=2"]), torch_version=None)
    assert report.findings == ()
    assert report.torch_requirement == "torch>=2"


# -- ELF dependencies -----------------------------------------------------------------------


def test_elf_dependency_resolves_through_torch_lib_dirs(tmp_path: Path,
                                                        binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.needs_torchlike})
    assert audit(wheel, torch_lib_dirs=[binaries.torch_lib]).findings == ()
    report = audit(wheel, torch_lib_dirs=[tmp_path])  # a torch without that library
    assert messages(report) == [
        "libcompat_torchlike.so needed by compat_kernels/_C.abi3.so is not in torch "
        "2.13.0+cpu's libraries nor on the system"]


def test_library_torch_loads_through_its_runpath_resolves(tmp_path: Path,
                                                          binaries: Binaries) -> None:
    # A CUDA torch's libtorch_cuda.so reaches site-packages/nvidia/*/lib by RUNPATH; once torch
    # is imported, an extension needing libcudart finds it loaded.
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.needs_cudart})
    assert audit(wheel, torch_lib_dirs=[binaries.cuda_torch_lib]).findings == ()
    assert not audit(wheel, torch_lib_dirs=[binaries.torch_lib]).ok


def test_missing_elf_dependency_is_an_error(tmp_path: Path, binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.needs_gone})
    report = audit(wheel, torch_lib_dirs=[binaries.torch_lib])
    assert report.findings == (Finding(ERROR, "compat_kernels/_C.abi3.so", (
        "libcompat_gone.so needed by compat_kernels/_C.abi3.so is not in torch 2.13.0+cpu's "
        "libraries nor on the system")),)
    no_torch = audit(wheel, torch_version=None)
    assert messages(no_torch) == ["libcompat_gone.so needed by compat_kernels/_C.abi3.so is "
                                  "not in the wheel nor on the system"]


def test_cuda_library_under_cpu_torch_says_so(tmp_path: Path, binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.needs_torch_cuda})
    assert messages(audit(wheel, torch_lib_dirs=[binaries.torch_lib])) == [
        "libtorch_cuda.so needed by compat_kernels/_C.abi3.so is not in torch 2.13.0+cpu's "
        "libraries nor on the system: the extension was built for CUDA, but torch 2.13.0+cpu "
        "is CPU-only"]


def test_system_library_resolves(tmp_path: Path, binaries: Binaries) -> None:
    assert "libm.so.6" in read_elf(io.BytesIO(binaries.needs_libm)).needed
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.needs_libm})
    assert audit(wheel).findings == ()


def test_library_vendored_next_to_an_origin_runpath_resolves(tmp_path: Path,
                                                             binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.needs_vendored,
             "compat_kernels.libs/libcompat_vendored.so": binaries.vendored}
    assert audit(make_wheel(tmp_path, files)).findings == ()


def test_vendored_library_unreachable_by_runpath_is_a_warning(tmp_path: Path,
                                                              binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.needs_vendored,
             "compat_kernels/libcompat_vendored.so": binaries.vendored}
    report = audit(make_wheel(tmp_path, files))
    assert report.ok
    assert [(f.severity, f.file) for f in report.findings] == [
        (WARNING, "compat_kernels/_C.abi3.so")]
    assert "no $ORIGIN search path" in report.findings[0].message


def test_binary_for_another_machine_is_an_error(tmp_path: Path, binaries: Binaries) -> None:
    other = bytearray(binaries.plain)
    other[18:20] = (183 if ARCH != "aarch64" else 62).to_bytes(2, "little")  # e_machine
    report = audit(make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": bytes(other)}))
    assert len(messages(report)) == 1
    assert f"but the wheel is tagged for {ARCH}" in messages(report)[0]


def test_file_named_so_that_is_not_elf_is_an_error(tmp_path: Path) -> None:
    report = audit(make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": b"MZ not a linux binary"}))
    assert messages(report) == ["compat_kernels/_C.abi3.so is not a loadable ELF shared "
                                "object (not an ELF file)"]


# -- broken wheels --------------------------------------------------------------------------


def test_corrupt_zip_is_a_finding_not_an_exception(tmp_path: Path) -> None:
    wheel = tmp_path / f"compat_kernels-0.1.0-{ABI3}.whl"
    wheel.write_bytes(b"PK\x03\x04 this is no zip file")
    report = audit(wheel)
    assert not report.ok
    assert report.tags == (ABI3,)
    assert [f.file for f in report.findings] == [wheel.name]
    assert "cannot read the wheel as a zip file" in report.findings[0].message


def test_missing_wheel_file_is_a_finding(tmp_path: Path) -> None:
    report = audit(tmp_path / "nothing-1.0-py3-none-any.whl")
    assert not report.ok


def test_missing_metadata_is_an_error(tmp_path: Path, ext: dict[str, bytes]) -> None:
    report = audit(make_wheel(tmp_path, ext, skip=["METADATA"]))
    assert report.findings == (Finding(ERROR, METADATA, (
        "is missing: the wheel is incomplete and installers will reject it")),)


def test_zip_without_dist_info_is_an_error(tmp_path: Path) -> None:
    wheel = tmp_path / "compat_kernels-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("compat_kernels/__init__.py", "")
    report = audit(wheel)
    assert "no .dist-info folder" in messages(report)[0]


# -- the ELF reader -------------------------------------------------------------------------


@needs_cc
def test_elf_reader_reads_needed_and_runpath(binaries: Binaries) -> None:
    info = read_elf(io.BytesIO(binaries.needs_vendored))
    assert "libcompat_vendored.so" in info.needed
    assert info.search_path == ("$ORIGIN/../compat_kernels.libs",)
    assert info.shared_object
    assert info.machine_name == ARCH
    assert read_elf_file(binaries.torch_lib / "libcompat_torchlike.so").bits == 64


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_elf_reader_agrees_with_readelf(binaries: Binaries) -> None:
    path = binaries.torch_lib.parent / "vendored_user.so"
    dump = _cmd.run(["readelf", "-d", str(path)], timeout=60)
    assert dump.ok, dump.output
    needed = [line.split("[", 1)[1].rstrip("]") for line in dump.output.splitlines()
              if "(NEEDED)" in line]
    assert list(read_elf_file(path).needed) == needed


@pytest.mark.parametrize("cut", [0, 3, 40, 200])
def test_elf_reader_rejects_garbage_and_truncation(binaries: Binaries, cut: int) -> None:
    with pytest.raises(ElfError):
        read_elf(io.BytesIO(binaries.plain[:cut]))


# -- GPU code: the architectures in each shared object --------------------------------------

KERNEL = """
__global__ void scale(float* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= a;
}
void launch(float* x, float a, int n) { scale<<<(n + 255) / 256, 256>>>(x, a, n); }
"""

# name -> nvcc -gencode options
GPU_VARIANTS = {
    "sm90": ["-gencode=arch=compute_90,code=sm_90"],
    "sm90a": ["-gencode=arch=compute_90a,code=sm_90a"],
    "sm80": ["-gencode=arch=compute_80,code=sm_80"],
    "ptx80": ["-gencode=arch=compute_80,code=compute_80"],
    "multi": ["-gencode=arch=compute_80,code=sm_80",
              "-gencode=arch=compute_90,code=[sm_90,compute_90]"],
}


@pytest.fixture(scope="module")
def gpu_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Shared objects compiled by the system nvcc; -cudart=none keeps them free of libcudart."""
    if shutil.which("nvcc") is None:
        pytest.skip("needs nvcc on PATH")
    root = tmp_path_factory.mktemp("gpu")
    source = root / "kernel.cu"
    source.write_text(KERNEL, encoding="utf-8")
    built = {}
    for name, options in GPU_VARIANTS.items():
        out = root / f"{name}.so"
        result = _cmd.run(["nvcc", "-shared", "-Xcompiler", "-fPIC", "-cudart=none", *options,
                           "-o", str(out), str(source)], timeout=300)
        assert result.ok, result.output
        built[name] = out
    return built


def gpu_audit(path: Path, *, torch_cuda: str | None = "13.0",
              gpu_suites: Mapping[str, str] | None = None,
              cuda_sources: Sequence[str] = ("csrc/k.cu",), nvcc_ran: bool | None = True,
              optional: bool = False) -> AuditReport:
    return audit_wheel(path, python="3.11", pythons=ALL_PYTHONS, torch_version="2.13.0+cu130",
                       torch_cuda=torch_cuda,
                       gpu_suites={"gpu": "h100"} if gpu_suites is None else gpu_suites,
                       cuda_sources=cuda_sources, nvcc_ran=nvcc_ran,
                       cuda_code_optional=optional)


def gpu_wheel(folder: Path, *binaries: Path) -> Path:
    names = ["compat_kernels/_C.abi3.so", "compat_kernels/_extra.abi3.so"]
    return make_wheel(folder, {name: b.read_bytes()
                               for name, b in zip(names, binaries, strict=False)})


@pytest.mark.parametrize(("variant", "expected"), [
    ("sm90", ("sm_90",)),
    ("sm90a", ("sm_90a",)),
    ("sm80", ("sm_80",)),
    ("ptx80", ("compute_80",)),
    ("multi", ("compute_90", "sm_80", "sm_90")),
])
def test_gpu_architectures_are_read_from_the_binary(gpu_binaries: dict[str, Path],
                                                    variant: str, expected: tuple[str, ...]
                                                    ) -> None:
    with gpu_binaries[variant].open("rb") as stream:
        assert tuple(sorted(a.name for a in read_gpu_archs(stream))) == expected


def _cuobjdump() -> str | None:
    """cuobjdump on PATH, beside nvcc, or from the nvidia-cuda-cuobjdump package."""
    found = shutil.which("cuobjdump") or os.environ.get("COMPATMATRIX_CUOBJDUMP")
    nvcc = shutil.which("nvcc")
    if found is None and nvcc is not None:
        beside = Path(nvcc).resolve().parent / "cuobjdump"
        found = str(beside) if beside.exists() else None
    return found


@pytest.mark.parametrize("variant", list(GPU_VARIANTS))
def test_fatbin_reader_agrees_with_cuobjdump(gpu_binaries: dict[str, Path], variant: str) -> None:
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (pip install nvidia-cuda-cuobjdump; COMPATMATRIX_CUOBJDUMP)")
    listed = _cmd.run([tool, "--list-elf", "--list-ptx", str(gpu_binaries[variant])],
                      timeout=60).output
    # "ELF file    1: x.1.sm_90.cubin", "PTX file    1: x.1.sm_80.ptx"
    sass = {f"sm_{m}" for m in re.findall(r"\.sm_(\w+)\.cubin", listed)}
    ptx = {f"compute_{m}" for m in re.findall(r"\.sm_(\w+)\.ptx", listed)}
    with gpu_binaries[variant].open("rb") as stream:
        assert {a.name for a in read_gpu_archs(stream)} == sass | ptx


def test_sm90_machine_code_serves_the_h100_suite(tmp_path: Path,
                                                 gpu_binaries: dict[str, Path]) -> None:
    report = gpu_audit(gpu_wheel(tmp_path, gpu_binaries["sm90"]))
    assert report.findings == ()
    assert report.to_json()["gpu_code"] == {"compat_kernels/_C.abi3.so":
                                            {"sass": ["sm_90"], "ptx": []}}
    assert report.gpu_code_lines() == ["compat_kernels/_C.abi3.so: SASS sm_90; PTX none"]
    assert AuditReport.from_json(report.to_json()) == report


def test_sm90a_machine_code_serves_the_h100_suite(tmp_path: Path,
                                                  gpu_binaries: dict[str, Path]) -> None:
    assert gpu_audit(gpu_wheel(tmp_path, gpu_binaries["sm90a"])).findings == ()


def test_without_sm90_the_h100_suite_fails_the_audit(tmp_path: Path,
                                                     gpu_binaries: dict[str, Path]) -> None:
    report = gpu_audit(gpu_wheel(tmp_path, gpu_binaries["sm80"]))
    assert messages(report) == [
        "compat_kernels/_C.abi3.so carries GPU code for sm_80 only, none of which runs on GPU "
        "kind h100 (compute capability 9.x), which suite 'gpu' needs: its kernels would fail "
        "to launch there; add '9.0' to project.cuda_archs (TORCH_CUDA_ARCH_LIST)"]


def test_ptx_that_the_driver_compiles_is_only_a_warning(tmp_path: Path,
                                                        gpu_binaries: dict[str, Path]) -> None:
    report = gpu_audit(gpu_wheel(tmp_path, gpu_binaries["ptx80"]))
    assert report.ok
    assert "only through compute_80" in messages(report, WARNING)[0]


def test_each_shared_object_must_cover_the_kind(tmp_path: Path,
                                                gpu_binaries: dict[str, Path]) -> None:
    report = gpu_audit(gpu_wheel(tmp_path, gpu_binaries["multi"], gpu_binaries["sm80"]))
    assert [f.file for f in report.errors] == ["compat_kernels/_extra.abi3.so"]
    assert report.gpu_code_lines() == [
        "compat_kernels/_C.abi3.so: SASS sm_80, sm_90; PTX compute_90",
        "compat_kernels/_extra.abi3.so: SASS sm_80; PTX none"]


def test_other_gpu_kinds_are_checked_by_capability(tmp_path: Path,
                                                   gpu_binaries: dict[str, Path]) -> None:
    wheel = gpu_wheel(tmp_path, gpu_binaries["sm80"])
    assert gpu_audit(wheel, gpu_suites={"gpu": "a100"}).findings == ()
    assert gpu_audit(wheel, gpu_suites={"gpu": "ada"}).findings == ()  # 8.9 runs sm_80
    assert not gpu_audit(wheel, gpu_suites={"gpu": "b200"}).ok
    assert gpu_audit(wheel, gpu_suites={"gpu": "cuda"}).findings == ()


def test_cpu_torch_lists_gpu_code_without_judging_it(tmp_path: Path,
                                                     gpu_binaries: dict[str, Path]) -> None:
    report = gpu_audit(gpu_wheel(tmp_path, gpu_binaries["sm80"]), torch_cuda=None)
    assert report.findings == ()
    assert report.gpu_code == (("compat_kernels/_C.abi3.so", ("sm_80",)),)


@needs_cc
def test_cuda_build_without_gpu_code_is_an_error(tmp_path: Path, binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.plain})
    report = gpu_audit(wheel)
    assert "no shared object in the wheel carries GPU code" in messages(report)[0]
    assert "'gpu' (h100)" in messages(report)[0]
    assert gpu_audit(wheel, cuda_sources=()).findings == ()  # no CUDA sources: a C++ extension


@needs_cc
def test_a_cuda_variant_without_gpu_code_fails_without_gpu_suites_too(
        tmp_path: Path, binaries: Binaries) -> None:
    # setup.py compiled CUDA only where it saw a GPU: the builder had none
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.plain})
    (message,) = messages(gpu_audit(wheel, gpu_suites={}, nvcc_ran=False))
    assert message.startswith("nvcc never ran during the build: no shared object")
    assert "csrc/k.cu" in message and "FORCE_CUDA=1" in message
    assert "were compiled" not in message  # no claim of a compile that did not happen
    optional = gpu_audit(wheel, gpu_suites={}, nvcc_ran=False, optional=True)
    assert [f.severity for f in optional.findings] == [NOTE] and optional.ok


# -- the fat binary reader on hand-made bytes -------------------------------------------------


def fatbin(*entries: tuple[int, int, int], payload: int = 24) -> bytes:
    """A fat binary of (kind, arch, flags) entries with empty payloads."""
    body = b""
    for kind, arch, flags in entries:
        header = struct.pack("<HHIQIIHHIIIQQQ", kind, 0x101, 64, payload, 0, 0, 8, 1, arch, 0,
                             0, flags, 0, 0)
        body += header + bytes(payload)
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def test_fatbin_entries_kinds_and_flags() -> None:
    data = fatbin((2, 90, 0x11), (2, 90, 0x100011), (1, 80, 0x8011), (2, 100, 0x1200011),
                  (4, 90, 0x11))  # kind 4 (not SASS or PTX) is not a target
    # two fat binaries, with the 8-byte padding the linker leaves between them
    stream = io.BytesIO(data + bytes(8) + fatbin((2, 120, 0x11)))
    names = [a.name for a in read_gpu_archs_in(stream, 0, len(stream.getvalue()))]
    assert names == ["sm_90", "sm_90a", "compute_80", "sm_100f", "sm_120"]


@pytest.mark.parametrize("cut", [20, 70])
def test_fatbin_that_runs_past_its_section_is_an_error(cut: int) -> None:
    data = fatbin((2, 90, 0x11))
    with pytest.raises(ElfError):
        read_gpu_archs_in(io.BytesIO(data), 0, len(data) - cut)


# -- a private libstdc++ next to torch's ---------------------------------------------------


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler (g++)")
@pytest.mark.parametrize("static", [True, False])
def test_an_extension_with_its_own_libstdcxx_is_an_error(tmp_path: Path, static: bool) -> None:
    # what a compiler wrapper adding -static-libstdc++ built on a vendor CUDA image: with
    # torch's libstdc++.so.6 in the process, its TORCH_CHECK messages with numbers crashed
    compile_so(tmp_path / "libc10.so", "int c10_stub(void) { return 1; }\n")
    source = tmp_path / "ext.cpp"
    source.write_text("#include <sstream>\n#include <string>\nextern \"C\" int c10_stub();\n"
                      "std::string message(long n) { std::ostringstream s; s << n << c10_stub();"
                      " return s.str(); }\n")
    extension = tmp_path / "_C.abi3.so"
    flags = ["-static-libstdc++"] if static else []
    done = _cmd.run(["g++", "-shared", "-fPIC", "-o", str(extension), str(source), *flags,
                     f"-L{tmp_path}", "-lc10"], timeout=120)
    assert done.ok, done.output
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": extension.read_bytes()})
    report = audit(wheel, torch_lib_dirs=[tmp_path])
    private = [m for m in messages(report) if "its own copy of libstdc++" in m]
    assert bool(private) is static, report.findings


# -- the torch ABI of each shared object -----------------------------------------------------


def test_stable_abi_wheel_needs_a_lower_bound_only(tmp_path: Path, binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.uses_shim}
    report = audit(make_wheel(tmp_path, files, requires=["torch>=2.10"]))
    assert report.torch_abi_verdict == "torch-stable"
    assert report.torch_abi[0].extension is False  # no PyInit_: Python does not import it
    assert report.errors == ()  # no upper bound asked for
    # without torch-abi-audit the minimum is only the stable ABI's first release: said so
    assert [f.message.split(" (")[0] for f in report.findings] == [
        "the minimum torch of the stable-ABI libraries is not known"]


def test_stable_abi_wheel_without_torch_requirement_is_told_the_bound(
        tmp_path: Path, binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.uses_shim}
    report = audit(make_wheel(tmp_path, files, requires=["numpy"]))
    assert messages(report) == [
        "the wheel does not require torch, so it admits every torch, also those before 2.9.0, "
        "where it fails to load: compat_kernels/_C.abi3.so uses torch's stable ABI, and its "
        "shims need torch 2.9.0; require torch>=2.9"]


def test_stable_abi_wheel_admitting_a_torch_below_the_minimum_is_an_error(
        tmp_path: Path, binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.uses_shim}
    report = audit(make_wheel(tmp_path, files, requires=["torch>=2.4,<3"]))
    assert messages(report) == [
        "torch>=2.4,<3 admits torch 2.8, below the torch the wheel needs: "
        "compat_kernels/_C.abi3.so uses torch's stable ABI, and its shims need torch 2.9.0; "
        "require torch>=2.9 (no upper bound is needed)"]


def test_one_unstable_library_makes_the_wheel_unstable(tmp_path: Path,
                                                       binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.uses_shim,
             "compat_kernels/_D.abi3.so": binaries.uses_at}
    report = audit(make_wheel(tmp_path, files, requires=["torch>=2.10"]))
    assert report.torch_abi_verdict == "torch-unstable"
    assert [lib.torch for lib in report.torch_abi] == ["torch-stable", "torch-unstable"]
    assert messages(report) == [
        "torch>=2.10 admits torch 2.14.0, 2.12.0, but the extension was built against torch "
        f"2.13.0+cpu and fails to load under another minor: require {PIN}"]


def test_a_library_without_torch_symbols_gets_no_torch_rule(tmp_path: Path,
                                                             binaries: Binaries) -> None:
    report = audit(make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.plain},
                              requires=["numpy"]))
    assert report.torch_abi_verdict == "no-torch"
    assert report.findings == ()


def test_a_project_claiming_stable_abi_names_the_unstable_library(
        tmp_path: Path, binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.uses_shim,
             "compat_kernels/_D.abi3.so": binaries.uses_at}
    report = audit_wheel(make_wheel(tmp_path, files), python="3.11", pythons=ALL_PYTHONS,
                         torch_version=TORCH, torch_abi="stable")
    claim = [f for f in report.errors if "project.torch_abi is stable" in f.message]
    assert [f.file for f in claim] == ["compat_kernels/_D.abi3.so"]
    assert claim[0].message.startswith(
        "compat_kernels/_D.abi3.so uses torch's unstable C++ API (_ZNK2at10TensorBase5numelEv)")


def test_the_audit_report_keeps_the_verdicts_through_json(tmp_path: Path,
                                                          binaries: Binaries) -> None:
    files = {"compat_kernels/_C.abi3.so": binaries.uses_shim}
    report = audit(make_wheel(tmp_path, files, requires=["torch>=2.10"]))
    again = AuditReport.from_json(report.to_json())
    assert again == report
    assert report.to_json()["torch_abi"] == {
        "verdict": "torch-stable", "min_torch": "2.9.0",
        "source": "compatmatrix (ELF dynamic symbols)",
        "libraries": [lib.to_json() for lib in report.torch_abi]}


@needs_cc
def test_abi3_extension_outside_the_limited_api_fails_naming_the_symbols(
        tmp_path: Path) -> None:
    """torch-abi-audit's CPython check, symbol by symbol (skipped when uv cannot provide it)."""
    tool = AbiTool(uv_command(os.environ), dict(os.environ), timeout=180)
    so = compile_so(tmp_path / "bad.so", """
        typedef struct _object PyObject;
        PyObject *PyModule_Create2(void *def, int api);
        PyObject **_PyObject_GetDictPtr(PyObject *obj);
        PyObject *PyInit__C(void) { PyObject *m = PyModule_Create2(0, 3);
                                    _PyObject_GetDictPtr(m); return m; }
    """)
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": so.read_bytes()})
    report = audit_wheel(wheel, python="3.11", pythons=ALL_PYTHONS, torch_version=TORCH,
                         abi_tool=tool)
    if report.torch_abi_source == "compatmatrix (ELF dynamic symbols)":
        pytest.skip("torch-abi-audit is not available here")
    assert messages(report) == [
        "compat_kernels/_C.abi3.so is built for the CPython limited API (abi3), but uses "
        "_PyObject_GetDictPtr, outside it: it fails to load or misbehaves on other Pythons the "
        "wheel admits; use the limited API (Py_LIMITED_API) or tag the wheel per Python"]


def test_a_stable_wheels_dependencies_are_checked_against_the_running_torch(
        tmp_path: Path, binaries: Binaries) -> None:
    wheel = make_wheel(tmp_path, {"compat_kernels/_C.abi3.so": binaries.needs_torchlike})
    assert check_running_torch(wheel, python="3.11", torch_version="2.12.0+cpu",
                               torch_lib_dirs=[binaries.torch_lib],
                               system_libraries=set()) == ()
    other = tmp_path / "other_torch_lib"
    other.mkdir()
    assert [f.message for f in check_running_torch(
        wheel, python="3.11", torch_version="2.12.0+cpu", torch_lib_dirs=[other],
        system_libraries=set())] == [
        "libcompat_torchlike.so needed by compat_kernels/_C.abi3.so is not in torch "
        "2.12.0+cpu's libraries nor on the system"]
