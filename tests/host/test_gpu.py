from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compatmatrix.host import gpu
from compatmatrix.host.gpu import (
    Capabilities,
    cell_kind_problem,
    gpu_capabilities,
    kind_problem,
    kinds_present,
)

H200 = "0, GPU-aaaa1111, 9.0, NVIDIA H200"
A100 = "1, GPU-bbbb2222, 8.0, NVIDIA A100-SXM4-80GB"


def fake_smi(tmp_path: Path, body: str) -> dict[str, str]:
    """An environment whose PATH holds only a fake ``nvidia-smi`` running ``body``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return {"PATH": str(bin_dir)}


def listing(*rows: str) -> str:
    return "".join(f"echo '{row}'\n" for row in rows)  # a shell builtin: PATH holds no cat


def test_h200_is_an_h100_kind(tmp_path: Path) -> None:
    caps = gpu_capabilities(fake_smi(tmp_path, listing(H200)))
    assert caps == (("NVIDIA H200", "9.0"),)
    assert kinds_present(caps) == {"h100", "cuda"}
    assert kind_problem("h100", caps) is None
    assert kind_problem("H100", caps) is None


def test_wrong_kind_names_the_gpus_present(tmp_path: Path) -> None:
    caps = gpu_capabilities(fake_smi(tmp_path, listing(A100.replace("1,", "0,", 1), A100)))
    assert kinds_present(caps) == {"a100", "cuda"}
    assert kind_problem("h100", caps) == (
        "needs GPU kind h100 (compute capability 9.x); this machine has "
        "2 x NVIDIA A100-SXM4-80GB (8.0)")
    assert kind_problem("cuda", caps) is None


@pytest.mark.parametrize(("cap", "kinds"), [
    ("8.9", {"l4", "ada", "cuda"}),
    ("10.0", {"b200", "blackwell", "cuda"}),
    ("7.5", {"cuda"}),
    ("[N/A]", set()),  # a driver too old to report the capability proves nothing
])
def test_kinds_are_capability_predicates(cap: str, kinds: set[str]) -> None:
    assert kinds_present(Capabilities([("some GPU", cap)])) == kinds


def test_cuda_visible_devices_selects_by_index_and_uuid(tmp_path: Path) -> None:
    env = fake_smi(tmp_path, listing(H200, A100))
    assert gpu_capabilities({**env, "CUDA_VISIBLE_DEVICES": "1"}) == (
        ("NVIDIA A100-SXM4-80GB", "8.0"),)
    assert gpu_capabilities({**env, "CUDA_VISIBLE_DEVICES": "GPU-aaaa"}) == (
        ("NVIDIA H200", "9.0"),)
    # Like the CUDA runtime: entries after the first invalid one are ignored.
    assert gpu_capabilities({**env, "CUDA_VISIBLE_DEVICES": "1,7,0"}) == (
        ("NVIDIA A100-SXM4-80GB", "8.0"),)


def test_empty_cuda_visible_devices_hides_every_gpu(tmp_path: Path) -> None:
    caps = gpu_capabilities({**fake_smi(tmp_path, listing(H200)), "CUDA_VISIBLE_DEVICES": ""})
    assert caps == ()
    assert kind_problem("h100", caps) == (
        "needs GPU kind h100 (compute capability 9.x); this machine has no NVIDIA GPU "
        "(CUDA_VISIBLE_DEVICES is empty)")


def test_missing_nvidia_smi(tmp_path: Path) -> None:
    caps = gpu_capabilities({"PATH": str(tmp_path / "empty")})
    assert caps.why_none == "nvidia-smi not found"
    assert caps == ()
    assert kind_problem("a100", caps) == (
        "needs GPU kind a100 (compute capability 8.0); this machine has no NVIDIA GPU "
        "(nvidia-smi not found)")


def test_failing_nvidia_smi(tmp_path: Path) -> None:
    env = fake_smi(tmp_path, "echo \"NVIDIA-SMI has failed because it couldn't communicate "
                             "with the NVIDIA driver.\"; exit 9")
    caps = gpu_capabilities(env)
    assert caps.why_none.startswith("nvidia-smi failed (exit 9): NVIDIA-SMI has failed")


def test_hung_nvidia_smi_times_out(tmp_path: Path) -> None:
    caps = gpu_capabilities(fake_smi(tmp_path, f"exec {shutil.which('sleep')} 30"), timeout=0.5)
    assert caps.why_none == "nvidia-smi timed out after 0.5 s"
    assert caps == ()


def test_unknown_kind_suggests_the_nearest() -> None:
    with pytest.raises(ValueError, match=r"unknown GPU kind 'h10'; did you mean 'h100'\?"):
        kind_problem("h10", ())
    assert gpu.check_kind("Blackwell").name == "blackwell"


def test_plain_tuples_are_accepted() -> None:
    assert kind_problem("h100", ()) == (
        "needs GPU kind h100 (compute capability 9.x); this machine has no NVIDIA GPU "
        "(no GPU visible)")


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no nvidia-smi on this machine")
def test_real_nvidia_smi() -> None:
    import os

    caps = gpu_capabilities(os.environ)
    assert caps, caps.why_none
    assert "cuda" in kinds_present(caps)


def test_a_cpu_cell_never_runs_a_gpu_suite_even_on_a_machine_with_the_gpu() -> None:
    h100 = (("NVIDIA H100 80GB HBM3", "9.0"),)
    assert cell_kind_problem("h100", "cpu", h100) == (
        "needs GPU kind h100; the cell's torch is a CPU build, which cannot use a GPU")
    assert cell_kind_problem("h100", "cu130", h100) is None
    assert cell_kind_problem("h100", None, h100) is None  # no cuda axis: PyPI's CUDA torch
    assert "this machine has" in (cell_kind_problem("h100", "cu130", ()) or "")
