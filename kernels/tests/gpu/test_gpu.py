"""The ops on CUDA tensors, checked against float64 references.

Every test needs GPU kind h100 (compute capability 9.x; an H200 counts) and is
skipped where none is present. On such a device the tests also skip while the
installed extension has no CUDA kernels (CUDA sources are a later addition to
csrc/cuda/), so they start checking as soon as those kernels are registered.
"""

from __future__ import annotations

import pytest
import reference_ops as ref
import torch
from reference_ops import DTYPES, RotaryCase, assert_matches_reference, rotary_inputs

import compat_kernels

pytestmark = pytest.mark.gpu(kind="h100")

HIDDEN_SIZES = (1, 7, 33, 4097, 8192)
ROWS = (1, 17)
EPS = 1e-6

ROTARY_CASES = (
    RotaryCase(num_tokens=1, num_heads=1, num_kv_heads=1, head_size=2, rot_dim=2),
    RotaryCase(num_tokens=33, num_heads=8, num_kv_heads=2, head_size=128, rot_dim=128),
    RotaryCase(num_tokens=5, num_heads=3, num_kv_heads=1, head_size=66, rot_dim=66, heads_dim=True),
    RotaryCase(num_tokens=7, num_heads=4, num_kv_heads=4, head_size=80, rot_dim=32),
)

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))


@pytest.fixture
def device(gpu_device: torch.device) -> torch.device:
    missing = [
        name
        for name in compat_kernels.OP_NAMES
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"compat_kernels::{name}", "CUDA")
    ]
    if missing:
        info = compat_kernels.build_info()
        pytest.skip(
            f"compat_kernels has no CUDA kernel for {', '.join(missing)} "
            f"(built against torch {info['torch']}, CUDA {info['cuda']})"
        )
    return gpu_device


def _randn(*shape: int, dtype: torch.dtype, device: torch.device | str, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(dtype=dtype, device=device)


def _poison_allocator(*outputs_like: torch.Tensor) -> None:
    """Allocate NaN-filled blocks the size of the op's outputs and free them.

    The caching allocator hands a freed block back for the next request of the
    same size, so an output element the kernel never writes most likely reads
    NaN rather than a plausible stale value, and the comparison catches it.
    """
    for like in outputs_like:
        torch.full_like(like, float("nan"))
    torch.cuda.synchronize(outputs_like[0].device)


@dtypes
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("rows", ROWS)
def test_rms_norm(device: torch.device, dtype: torch.dtype, hidden: int, rows: int) -> None:
    x = _randn(rows, hidden, dtype=dtype, device=device, seed=hidden)
    weight = _randn(hidden, dtype=dtype, device=device, seed=hidden + 1)
    _poison_allocator(x)
    out = compat_kernels.rms_norm(x, weight, EPS)
    assert out.device == device
    assert_matches_reference(out, ref.rms_norm(x.cpu(), weight.cpu(), EPS))


@dtypes
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("rows", ROWS)
def test_fused_add_rms_norm(
    device: torch.device, dtype: torch.dtype, hidden: int, rows: int
) -> None:
    x = _randn(rows, hidden, dtype=dtype, device=device, seed=hidden)
    residual = _randn(rows, hidden, dtype=dtype, device=device, seed=hidden + 1)
    weight = _randn(hidden, dtype=dtype, device=device, seed=hidden + 2)
    _poison_allocator(x, x)
    out, total = compat_kernels.fused_add_rms_norm(x, residual, weight, EPS)
    # The sum is rounded exactly as `x + residual` in the input dtype.
    assert torch.equal(total, x + residual)
    assert_matches_reference(out, ref.rms_norm(total.cpu(), weight.cpu(), EPS))


@dtypes
@pytest.mark.parametrize("d", HIDDEN_SIZES)
@pytest.mark.parametrize("rows", ROWS)
def test_silu_and_mul(device: torch.device, dtype: torch.dtype, d: int, rows: int) -> None:
    x = _randn(rows, 2 * d, dtype=dtype, device=device, seed=d)
    _poison_allocator(x[:, :d])
    out = compat_kernels.silu_and_mul(x)
    assert out.shape == (rows, d)
    assert_matches_reference(out, ref.silu_and_mul(x.cpu()))


@dtypes
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize("case", ROTARY_CASES, ids=str)
def test_rotary_embedding(
    device: torch.device, dtype: torch.dtype, is_neox: bool, case: RotaryCase
) -> None:
    positions, query, key, cache = rotary_inputs(case, dtype, device)
    _poison_allocator(query, key)
    q_out, k_out = compat_kernels.rotary_embedding(
        positions, query, key, cache, case.head_size, is_neox
    )
    cpu_inputs = (positions.cpu(), query.cpu(), key.cpu(), cache.cpu())
    q_ref, k_ref = ref.rotary_embedding(*cpu_inputs, case.head_size, is_neox)
    assert_matches_reference(q_out, q_ref)
    assert_matches_reference(k_out, k_ref)


@dtypes
def test_cuda_matches_cpu_kernels(device: torch.device, dtype: torch.dtype) -> None:
    """Both backends implement the same rounding contract, so they agree to
    within the dtype's tolerance on identical inputs."""
    x = _randn(9, 4097, dtype=dtype, device="cpu", seed=0)
    weight = _randn(4097, dtype=dtype, device="cpu", seed=1)
    on_cpu = compat_kernels.rms_norm(x, weight, EPS)
    on_gpu = compat_kernels.rms_norm(x.to(device), weight.to(device), EPS)
    assert_matches_reference(on_gpu, on_cpu.double())


def test_mixed_devices_are_rejected(device: torch.device) -> None:
    x = torch.randn(4, 8, device=device)
    with pytest.raises(RuntimeError, match="must be on the same device"):
        compat_kernels.rms_norm(x, torch.randn(8))
