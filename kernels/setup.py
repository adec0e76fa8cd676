"""Builds compat_kernels._C, a torch custom-op library (see README.md).

Static metadata lives in pyproject.toml; this script adds what depends on the
torch it builds against: the extension (with CUDA kernels when that torch has
CUDA and nvcc is found), the abi3 wheel tag, the torch pin and the generated
compat_kernels/_build_info.py.
"""

from __future__ import annotations

import copy
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import cast

import torch
from setuptools import setup
from setuptools.extension import Extension
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = Path(__file__).resolve().parent
BUILD_INFO = ROOT / "src" / "compat_kernels" / "_build_info.py"

# torch >= 2.6 can build extensions against CPython's limited API: since the
# ops are reached through the dispatcher, not pybind11, one cp39-abi3 wheel
# serves every CPython version the build torch supports.
ABI3_MIN_TORCH = (2, 6)
ABI3_TAG = "cp39"

# -g0 overrides the -g from Python's CFLAGS: debug info for template-heavy
# ATen code slows the build and bloats the .so. The -Wno-* silence torch
# headers under Python's -Wall: CUDA-only `#pragma unroll`, and GCC's note that
# passing 32-byte vectors by value changed ABI in GCC 4.6.
CXX_FLAGS = ["-O3", "-g0", "-Wno-unknown-pragmas", "-Wno-psabi"]

# Sources compiled with extra instruction-set flags, for CPUs that dispatch.cpp
# finds support them; the flags match what ATen's own AVX2 kernels use.
AVX2_SOURCES = {"csrc/cpu/kernels_avx2.cpp": ["-mavx2", "-mfma", "-mf16c"]}

# COMPAT_KERNELS_CUDA: "auto" (default) builds the CUDA kernels when the build
# torch has CUDA and nvcc is found, "1" requires them, "0" leaves them out.
CUDA_SWITCH = "COMPAT_KERNELS_CUDA"
# The GPU architectures compiled when TORCH_CUDA_ARCH_LIST is not set: Hopper
# (H100/H200) machine code only, which keeps a build to one nvcc pass. Without
# a list, torch would look for GPUs on the build machine and find none.
DEFAULT_CUDA_ARCHS = "9.0"
NVCC_FLAGS = ["-O3"]


def torch_minor_version() -> tuple[int, int]:
    major, minor = str(torch.__version__).split(".")[:2]
    return int(major), int(minor)


def isa_sources() -> dict[str, list[str]]:
    if sys.platform == "linux" and platform.machine() == "x86_64":
        return AVX2_SOURCES
    return {}


def cpp_sources() -> list[str]:
    # Paths relative to this file, as setuptools expects. csrc/cuda/ is for
    # CUDA builds only, so it is not globbed here.
    found = [*ROOT.glob("csrc/*.cpp"), *ROOT.glob("csrc/cpu/*.cpp")]
    baseline = (str(path.relative_to(ROOT)) for path in found)
    return sorted(src for src in baseline if src not in AVX2_SOURCES)


def cuda_sources() -> list[str]:
    found = [*ROOT.glob("csrc/cuda/*.cpp"), *ROOT.glob("csrc/cuda/*.cu")]
    return sorted(str(path.relative_to(ROOT)) for path in found)


def nvcc_path() -> str | None:
    if CUDA_HOME is None:
        return None
    nvcc = Path(CUDA_HOME) / "bin" / "nvcc"
    return str(nvcc) if nvcc.exists() else shutil.which("nvcc")


def build_cuda() -> bool:
    """Whether to compile csrc/cuda/, per COMPAT_KERNELS_CUDA (see above)."""
    switch = os.environ.get(CUDA_SWITCH, "auto").strip().lower()
    if switch not in ("auto", "0", "1"):
        sys.exit(f"{CUDA_SWITCH}={switch!r}: expected auto, 0 or 1")
    if switch == "0":
        return False
    why_not = ""
    if torch.version.cuda is None:
        why_not = f"torch {torch.__version__} is not a CUDA build"
    elif nvcc_path() is None:
        why_not = "nvcc was not found (set CUDA_HOME, or put nvcc on PATH)"
    if why_not and switch == "1":
        sys.exit(f"{CUDA_SWITCH}=1, but {why_not}")
    if why_not:
        print(f"compat_kernels: building without CUDA kernels: {why_not}", file=sys.stderr)
    return not why_not


def cuda_arch_list() -> str:
    # torch.utils.cpp_extension reads the list from the environment.
    return os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)


def rebuild_triggers() -> list[str]:
    # setuptools rebuilds an extension only when a file in sources or depends
    # is newer than it; headers and the separately compiled ISA sources would
    # otherwise be missed.
    headers = (str(path.relative_to(ROOT)) for path in ROOT.glob("csrc/**/*.h"))
    return sorted(headers) + list(AVX2_SOURCES)


def openmp_flags() -> list[str]:
    # at::parallel_for is a header template that only runs in parallel when
    # its caller is compiled with OpenMP; the .so then shares torch's libgomp.
    return ["-fopenmp"] if torch.backends.openmp.is_available() else []


def shared_libstdcxx_flags() -> list[str]:
    """Link flags that make the extension use the process's libstdc++.so.6.

    The extension hands std::string, exceptions and streams back and forth
    with libc10/libtorch, so it must share their libstdc++. A toolchain that
    links libstdc++ statically (-static-libstdc++, or a compiler wrapper that
    adds it: CXX=/opt/gcc/bin/g++ on one Ubuntu 24.04 CUDA image built a _C
    with no libstdc++.so.6 among its NEEDED libraries and ~2,200 exported
    std:: symbols of its own) embeds a private copy that the dynamic linker
    only partly interposes: the facet ids (std::num_put<char>::id,
    std::numpunct<char>::id) resolve to the libstdc++.so.6 that Python and
    torch loaded first, while std::locale's statics and
    ostream::_M_insert<long> stay private. Writing an integer into a stream
    (any TORCH_CHECK message with a number or a t.sizes()) then looks one
    copy's facet up with the other's index: a segfault, or a message cut off
    at the first number. A -lstdc++ of our own, after the objects and before
    the driver's implicit (possibly -Bstatic) one, resolves every libstdc++
    symbol from the shared library, so nothing of the archive is linked in;
    with an ordinary g++ it changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return []
    return ["-Wl,-Bdynamic", "-lstdc++"]


class BuildExtensionWithIsaSources(BuildExtension):
    """BuildExtension that also compiles each ISA source with its own flags.

    setuptools applies one set of flags to every source of an extension, so
    these are compiled separately, through the same (ninja-aware) compiler
    torch set up, and added as extra objects. Those are linked after the
    regular objects, which kernels_avx2.cpp relies on.
    """

    def build_extension(self, ext: Extension) -> None:
        for source, flags in isa_sources().items():
            ext.extra_objects = [*ext.extra_objects, *self._compile_isa(ext, source, flags)]
        super().build_extension(ext)

    def _compile_isa(self, ext: Extension, source: str, flags: list[str]) -> list[str]:
        # By now BuildExtension has added its defines (Py_LIMITED_API,
        # TORCH_EXTENSION_NAME, ...) to ext.extra_compile_args.
        cflags = copy.deepcopy(ext.extra_compile_args)
        cflags["cxx"] += flags
        objects = self.compiler.compile(
            [source],
            output_dir=self.build_temp,
            macros=ext.define_macros,
            include_dirs=ext.include_dirs,
            extra_postargs=cflags,
            depends=ext.depends,
        )
        return cast(list[str], objects)


def extension(abi3: bool, cuda: bool) -> Extension:
    # CUDAExtension adds CUDA's include and library folders and links cudart,
    # c10_cuda and torch_cuda; like CppExtension it honours py_limited_api
    # (torch >= 2.6), so the CUDA build is the same abi3 wheel.
    make = CUDAExtension if cuda else CppExtension
    compile_args = {"cxx": CXX_FLAGS + openmp_flags()}
    if cuda:
        compile_args["nvcc"] = NVCC_FLAGS
    return make(
        name="compat_kernels._C",
        sources=cpp_sources() + (cuda_sources() if cuda else []),
        depends=rebuild_triggers(),
        define_macros=[("COMPAT_KERNELS_HAVE_AVX2", None)] if isa_sources() else [],
        extra_compile_args=compile_args,
        extra_link_args=openmp_flags() + shared_libstdcxx_flags(),
        py_limited_api=abi3,
    )


def torch_requirement() -> str:
    # The extension links against torch's C++ ABI, which only holds within a
    # minor release, so the wheel accepts exactly the build torch's minor.
    major, minor = torch_minor_version()
    return f"torch>={major}.{minor},<{major}.{minor + 1}"


def write_build_info(abi3: bool, cuda_archs: str | None) -> None:
    text = (
        "# Generated by setup.py at build time; do not edit.\n"
        f"TORCH_VERSION = {str(torch.__version__)!r}\n"
        f"CUDA_VERSION = {torch.version.cuda!r}\n"
        f"ABI3 = {abi3!r}\n"
        f"CUDA_ARCHS = {cuda_archs!r}\n"
    )
    BUILD_INFO.write_text(text, encoding="utf-8")


def main() -> None:
    abi3 = torch_minor_version() >= ABI3_MIN_TORCH
    cuda = build_cuda()
    write_build_info(abi3, cuda_arch_list() if cuda else None)
    setup(
        ext_modules=[extension(abi3, cuda)],
        cmdclass={"build_ext": BuildExtensionWithIsaSources},
        options={"bdist_wheel": {"py_limited_api": ABI3_TAG}} if abi3 else {},
        install_requires=[torch_requirement()],
    )


main()
