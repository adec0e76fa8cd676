"""Smoke tests of the installed wheel: the extension loads, every op is
registered with a CPU kernel (and a CUDA kernel when built with them) and a
fake impl, and the build matches the running torch."""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

import compat_kernels

DIST = "compat-kernels"
SOURCE_TREE = Path(__file__).resolve().parents[2] / "src"

# Smallest valid arguments per op, built on `device`.
SAMPLE_ARGS: dict[str, Callable[[str], tuple[object, ...]]] = {
    "rms_norm": lambda d: (torch.empty(3, 8, device=d), torch.empty(8, device=d), 1e-6),
    "fused_add_rms_norm": lambda d: (
        torch.empty(3, 8, device=d),
        torch.empty(3, 8, device=d),
        torch.empty(8, device=d),
        1e-6,
    ),
    "silu_and_mul": lambda d: (torch.empty(3, 8, device=d),),
    "rotary_embedding": lambda d: (
        torch.zeros(3, dtype=torch.long, device=d),
        torch.empty(3, 2 * 16, device=d),
        torch.empty(3, 16, device=d),
        torch.empty(4, 16, device=d),
        16,
        True,
    ),
}


def test_sample_args_cover_every_op() -> None:
    assert set(SAMPLE_ARGS) == set(compat_kernels.OP_NAMES)


def test_package_is_installed_not_source_tree() -> None:
    package_dir = Path(compat_kernels.__file__).resolve().parent
    assert not package_dir.is_relative_to(SOURCE_TREE), (
        f"compat_kernels imported from the source tree ({package_dir}); "
        "the suites must run against the installed wheel"
    )


def test_extension_is_abi3_shared_object() -> None:
    extension = importlib.import_module("compat_kernels._C")
    so_name = Path(str(extension.__file__)).name
    if compat_kernels.build_info()["abi3"]:
        assert so_name == "_C.abi3.so"
    else:
        assert so_name.startswith("_C.") and so_name.endswith(".so")


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _defining_file(address: int) -> str:
    info = _DlInfo()
    dladdr = ctypes.CDLL(None).dladdr
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if not dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
        return "?"
    fname: bytes | None = info.dli_fname
    return fname.decode(errors="replace") if fname else "?"


def test_extension_shares_the_process_libstdcxx() -> None:
    """The extension uses the libstdc++.so.6 torch uses, not a static copy.

    A toolchain that links libstdc++ statically gave _C its own std::locale
    while the facet ids still came from the shared library, and every
    TORCH_CHECK message that prints a number crashed or was cut short (see
    shared_libstdcxx_flags in setup.py). Looked up in the extension's own
    scope, std::locale::classic() must be the shared library's.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("libstdc++ linkage is checked on Linux only")
    symbol = "_ZNSt6locale7classicEv"  # std::locale::classic()
    extension = ctypes.CDLL(str(importlib.import_module("compat_kernels._C").__file__))
    shared = ctypes.CDLL("libstdc++.so.6")
    found = ctypes.cast(getattr(extension, symbol), ctypes.c_void_p).value
    expected = ctypes.cast(getattr(shared, symbol), ctypes.c_void_p).value
    assert found is not None and expected is not None
    assert found == expected, (
        f"std::locale::classic() resolves to {_defining_file(found)} from compat_kernels._C, "
        f"not to {_defining_file(expected)}: the extension carries its own libstdc++"
    )


@pytest.mark.parametrize("name", compat_kernels.OP_NAMES)
def test_op_has_cpu_kernel(name: str) -> None:
    assert hasattr(torch.ops.compat_kernels, name)
    for overload in (f"compat_kernels::{name}", f"compat_kernels::{name}.out"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(overload, "CPU"), overload


@pytest.mark.parametrize("name", compat_kernels.OP_NAMES)
def test_op_has_fake_impl(name: str) -> None:
    # register_fake also serves the Meta key, so meta tensors run the fake impl.
    op = getattr(torch.ops.compat_kernels, name)
    outputs = op(*SAMPLE_ARGS[name]("meta"))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    assert outputs and all(out.device.type == "meta" for out in outputs)


def _shapes(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> list[torch.Size]:
    return [t.shape for t in (outputs if isinstance(outputs, tuple) else (outputs,))]


@pytest.mark.parametrize("name", compat_kernels.OP_NAMES)
def test_python_wrapper_calls_op(name: str) -> None:
    wrapper = getattr(compat_kernels, name)
    op = getattr(torch.ops.compat_kernels, name)
    args = SAMPLE_ARGS[name]("meta")
    assert _shapes(wrapper(*args)) == _shapes(op(*args))


def test_cpu_capability_is_reported() -> None:
    assert torch.ops.compat_kernels.cpu_capability() in ("avx2", "default")


def test_build_torch_matches_runtime_torch() -> None:
    info = compat_kernels.build_info()
    assert compat_kernels.__torch_build_version__ == torch.__version__
    assert info == {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "abi3": info["abi3"],
        "cuda_archs": info["cuda_archs"],
    }
    assert isinstance(info["abi3"], bool)


def test_cuda_kernels_only_with_a_cuda_torch() -> None:
    archs = compat_kernels.build_info()["cuda_archs"]
    if torch.version.cuda is None:
        assert archs is None, "a CPU-only torch cannot have been built with CUDA kernels"
    else:
        # None means nvcc was missing at build time; compatmatrix's audit then
        # fails the cell for any GPU suite, so here it is only reported.
        assert archs is None or isinstance(archs, str)


def _overloads(name: str) -> list[str]:
    return [f"compat_kernels::{name}", f"compat_kernels::{name}.out"]


@pytest.mark.parametrize("name", compat_kernels.OP_NAMES)
def test_op_has_cuda_kernel_when_built_with_cuda(name: str) -> None:
    # Registration needs no GPU, so this runs on CPU-only machines too: a CUDA
    # build that forgot an op fails here, not only on an H100.
    if compat_kernels.build_info()["cuda_archs"] is None:
        pytest.skip("built without CUDA kernels (CPU torch, or no nvcc at build time)")
    for overload in _overloads(name):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(overload, "CUDA"), overload


def test_version_matches_distribution() -> None:
    assert compat_kernels.__version__ == importlib.metadata.version(DIST)


def test_wheel_pins_build_torch_minor() -> None:
    requirements = [Requirement(r) for r in importlib.metadata.requires(DIST) or []]
    torch_reqs = [r for r in requirements if r.name == "torch"]
    assert len(torch_reqs) == 1
    build = Version(compat_kernels.__torch_build_version__)
    expected = {f">={build.major}.{build.minor}", f"<{build.major}.{build.minor + 1}"}
    assert {str(spec) for spec in torch_reqs[0].specifier} == expected
    assert torch_reqs[0].specifier.contains(torch.__version__)


def _vllm_entry_point() -> importlib.metadata.EntryPoint:
    matches = [
        ep
        for ep in importlib.metadata.entry_points(group="vllm.general_plugins")
        if ep.name == "compat_kernels"
    ]
    assert len(matches) == 1, "compat_kernels vllm.general_plugins entry point missing"
    return matches[0]


def test_vllm_entry_point_is_declared() -> None:
    assert _vllm_entry_point().value == "compat_kernels.vllm_plugin:register"


def test_vllm_plugin_registers_without_vllm() -> None:
    from compat_kernels import vllm_plugin

    vllm_plugin.register()


def test_vllm_loads_plugin() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed; the entry point is exercised where vLLM is present")
    # Importing vLLM can warn about its own environment; that is not what
    # this test checks, so keep it from tripping filterwarnings=error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("vllm", reason="vllm is installed but fails to import")
    register = _vllm_entry_point().load()
    assert register() is None
