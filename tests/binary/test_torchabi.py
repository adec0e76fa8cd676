from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from compatmatrix.binary.torchabi import (
    NO_TORCH,
    OWN_SOURCE,
    STABLE,
    UNSTABLE,
    AbiTool,
    LibraryAbi,
    classify_symbols,
    library_verdicts,
)

STABLE_SYMBOLS = ("PyModule_Create2", "aoti_torch_get_numel", "torch_call_dispatcher",
                  "_ZN5torch6stable6detail4fromEv", "_ZN5torch10headeronly4castEv",
                  "_ZNSt13runtime_errorD1Ev", "__cxa_throw")


def test_shims_and_stable_namespaces_only_are_stable() -> None:
    library = classify_symbols("pkg/_C.abi3.so", STABLE_SYMBOLS)
    assert library == LibraryAbi("pkg/_C.abi3.so", STABLE, min_torch="2.9.0")


@pytest.mark.parametrize("symbol", [
    "_ZNK2at10TensorBase5numelEv",            # at::TensorBase::numel() const
    "_ZN3c106detail14torchCheckFailEPKcS2_jS2_",  # c10::detail::torchCheckFail
    "_ZN5torch3jit6tracer9isTracingEv",        # torch::jit (not stable, not headeronly)
    "_ZN2at6TensorC1Ev",                       # a constructor
    "_ZNSt6vectorIN2at6TensorESaIS1_EED1Ev",   # std::vector<at::Tensor> uses at::Tensor
    "_Z3fooRKN2at6TensorE",                    # foo(at::Tensor const&)
])
def test_unstable_cpp_symbols_make_it_unstable(symbol: str) -> None:
    library = classify_symbols("x.so", (*STABLE_SYMBOLS, symbol))
    assert (library.torch, library.unstable, library.min_torch) == (UNSTABLE, (symbol,), None)


@pytest.mark.parametrize("symbol", ["_ZN4data2atEv", "_ZN7cat2at33fooEv", "_Z5c10ab",
                                    "attorch_x", "PyTorch_x"])
def test_look_alikes_are_not_torch(symbol: str) -> None:
    assert classify_symbols("x.so", ("malloc", symbol)).torch == NO_TORCH


def wheel_with(tmp_path: Path, data: bytes = b"\x7fELF not really") -> zipfile.ZipFile:
    path = tmp_path / "w.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg/_C.abi3.so", data)
    return zipfile.ZipFile(path)


@pytest.mark.parametrize(("uv", "why"), [
    (("false",), "could not be had: exit 1"),
    (("sh", "-c", "echo 'COMPATMATRIX-TORCH-ABI {\"libraries\": 3}'"),
     "not what its script prints"),
    (("sh", "-c", "echo 'COMPATMATRIX-TORCH-ABI {\"version\": \"9\", \"libraries\": "
      "[{\"member\": \"elsewhere.so\"}]}'"), "not what its script prints"),
    (("sh", "-c", "echo 'COMPATMATRIX-TORCH-ABI {\"version\": \"9\", \"libraries\": "
      "[{\"member\": \"pkg/_C.abi3.so\", \"error\": \"nm not found\"}]}'"),
     "could not read pkg/_C.abi3.so: nm not found"),
])
def test_a_tool_that_fails_or_lies_falls_back_and_says_why(tmp_path: Path, uv: tuple[str, ...],
                                                           why: str) -> None:
    with wheel_with(tmp_path) as archive:
        found = library_verdicts(archive, ["pkg/_C.abi3.so"], AbiTool(uv, {}, timeout=30))
    assert found.source == OWN_SOURCE
    assert why in found.problem
    assert found.libraries == ()  # not an ELF file: the audit's ELF check reports it


def test_a_hanging_tool_is_stopped(tmp_path: Path) -> None:
    start = time.monotonic()
    with wheel_with(tmp_path) as archive:
        found = library_verdicts(archive, ["pkg/_C.abi3.so"],
                                 AbiTool(("sh", "-c", "sleep 60"), {}, timeout=1))
    assert time.monotonic() - start < 20
    assert found.source == OWN_SOURCE and "timed out" in found.problem


def test_the_tools_answer_becomes_typed_verdicts(tmp_path: Path) -> None:
    answer = ('{"version": "0.3.0", "libraries": [{"member": "pkg/_C.abi3.so", "error": null, '
              '"uses_torch": true, "stable": true, "min_torch": "2.11.0", '
              '"pinned_by": ["torch_from_blob"], "unstable": [], "unknown_shims": [], '
              '"extension": true, "cpython_violations": ["_PyObject_GetDictPtr"]}]}')
    tool = AbiTool(("sh", "-c", f"echo 'COMPATMATRIX-TORCH-ABI {answer}'"), {}, timeout=30)
    with wheel_with(tmp_path) as archive:
        found = library_verdicts(archive, ["pkg/_C.abi3.so"], tool)
    assert found.source == "torch-abi-audit 0.3.0" and found.problem == ""
    assert found.libraries == (LibraryAbi(
        "pkg/_C.abi3.so", STABLE, "2.11.0", ("torch_from_blob",), extension=True,
        cpython_checked=True, cpython_violations=("_PyObject_GetDictPtr",)),)
    assert LibraryAbi.from_json(found.libraries[0].to_json()) == found.libraries[0]


def test_no_shared_object_asks_nothing() -> None:
    archive = zipfile.ZipFile(io.BytesIO(), "w")
    assert library_verdicts(archive, [], AbiTool(("false",), {})).libraries == ()


def test_a_tool_that_cannot_be_had_is_asked_for_once_per_process(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    uv = ("sh", "-c", f"echo asked >> {calls}; exit 2")
    for _ in range(3):  # three cells' audits
        with wheel_with(tmp_path) as archive:
            found = library_verdicts(archive, ["pkg/_C.abi3.so"], AbiTool(uv, {}, timeout=30))
        assert found.source == OWN_SOURCE
    assert calls.read_text().splitlines() == ["asked", "asked"]  # from the cache, then fetched


def test_the_verdicts_on_a_wheel_are_kept_beside_it_for_the_cells_that_share_it(
        tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    answer = ('{"version": "0.3.0", "libraries": [{"member": "pkg/_C.abi3.so", "error": null, '
              '"uses_torch": true, "stable": true, "min_torch": "2.10.0", "extension": true}]}')
    uv = ("sh", "-c", f"echo asked >> {calls}; echo 'COMPATMATRIX-TORCH-ABI {answer}'")
    tool = AbiTool(uv, {}, timeout=30, cache=tmp_path / "torch-abi.json")
    wheel_with(tmp_path).close()
    wheel = tmp_path / "w.whl"
    first = second = None
    for _ in range(2):
        with zipfile.ZipFile(wheel) as archive:  # the same wheel file each time
            second, first = library_verdicts(archive, ["pkg/_C.abi3.so"], tool), second
    assert first == second and second is not None
    assert second.libraries[0].min_torch == "2.10.0"
    # the tool is asked whether it can be had (once per process), then once for the wheel
    assert calls.read_text().splitlines() == ["asked", "asked"]
    (tmp_path / "torch-abi.json").write_text("{not json")  # damaged: asked again
    with zipfile.ZipFile(wheel) as archive:
        assert library_verdicts(archive, ["pkg/_C.abi3.so"], tool) == second
    assert len(calls.read_text().splitlines()) == 3
    wheel_with(tmp_path).close()  # a new wheel file: asked again
    os.utime(wheel, ns=(10**9, 10**9))  # whatever the clock's resolution
    with zipfile.ZipFile(wheel) as archive:
        library_verdicts(archive, ["pkg/_C.abi3.so"], tool)
    assert len(calls.read_text().splitlines()) == 4
