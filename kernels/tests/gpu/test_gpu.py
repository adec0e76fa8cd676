"""The CUDA kernels, checked against float64 references on an H100-class GPU.

Every test needs GPU kind h100 (compute capability 9.x; an H200 counts) and is
skipped, with the reason, where none is present. Each builds fresh random
inputs (seeded from the test's id, so a failure reproduces), runs a kernel
into outputs poisoned with NaN first (the `.out` overloads), so an element the
kernel never writes fails the comparison, and compares with a float64 torch
reference at the output dtype's tolerance. Sizes include ones that are not a
multiple of the 16-byte vector width (4 floats, 8 halves), so the element
paths for ragged tails and misaligned rows run as well as the vector path.
"""

from __future__ import annotations

import zlib

import pytest
import reference_ops as ref
import torch
from reference_ops import DTYPES, RotaryCase, assert_matches_reference, rotary_inputs

import compat_kernels

pytestmark = pytest.mark.gpu(kind="h100")

OPS = torch.ops.compat_kernels
HIDDEN_SIZES = (1, 7, 33, 4097, 8192)
ROWS = (1, 17)
EPS = 1e-6

ROTARY_CASES = (
    RotaryCase(num_tokens=1, num_heads=1, num_kv_heads=1, head_size=2, rot_dim=2),
    RotaryCase(num_tokens=33, num_heads=8, num_kv_heads=2, head_size=128, rot_dim=128),
    RotaryCase(num_tokens=5, num_heads=3, num_kv_heads=1, head_size=66, rot_dim=66, heads_dim=True),
    # partial rotary: dims past rot_dim are copied
    RotaryCase(num_tokens=7, num_heads=4, num_kv_heads=4, head_size=80, rot_dim=32),
    # head_size 18: no vector path at all
    RotaryCase(num_tokens=3, num_heads=2, num_kv_heads=1, head_size=18, rot_dim=18),
)

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))


@pytest.fixture
def device(gpu_device: torch.device) -> torch.device:
    missing = [
        overload
        for name in compat_kernels.OP_NAMES
        for overload in (f"compat_kernels::{name}", f"compat_kernels::{name}.out")
        if not torch._C._dispatch_has_kernel_for_dispatch_key(overload, "CUDA")
    ]
    if missing:
        info = compat_kernels.build_info()
        pytest.fail(
            f"compat_kernels has no CUDA kernel for {', '.join(missing)} (built against "
            f"torch {info['torch']}, CUDA {info['cuda']}, archs {info['cuda_archs']}): "
            "was nvcc missing when the wheel was built?"
        )
    return gpu_device


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """Distinct per test, stable across runs."""
    return zlib.crc32(request.node.nodeid.encode())


def _randn(*shape: int, dtype: torch.dtype, device: torch.device | str, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(dtype=dtype, device=device)


def _poisoned(like: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """NaN everywhere: an element the kernel does not write fails the comparison."""
    size = shape or tuple(like.shape)
    return torch.full(size, float("nan"), dtype=like.dtype, device=like.device)


@dtypes
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("rows", ROWS)
def test_rms_norm(
    device: torch.device, dtype: torch.dtype, hidden: int, rows: int, seed: int
) -> None:
    x = _randn(rows, hidden, dtype=dtype, device=device, seed=seed)
    weight = _randn(hidden, dtype=dtype, device=device, seed=seed + 1)
    out = _poisoned(x)
    assert OPS.rms_norm.out(x, weight, EPS, out=out) is out
    assert_matches_reference(out, ref.rms_norm(x.cpu(), weight.cpu(), EPS))
    assert torch.equal(compat_kernels.rms_norm(x, weight, EPS), out)


@dtypes
@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("rows", ROWS)
def test_fused_add_rms_norm(
    device: torch.device, dtype: torch.dtype, hidden: int, rows: int, seed: int
) -> None:
    x = _randn(rows, hidden, dtype=dtype, device=device, seed=seed)
    residual = _randn(rows, hidden, dtype=dtype, device=device, seed=seed + 1)
    weight = _randn(hidden, dtype=dtype, device=device, seed=seed + 2)
    out, total = _poisoned(x), _poisoned(x)
    OPS.fused_add_rms_norm.out(x, residual, weight, EPS, out=out, sum=total)
    # The sum is rounded exactly as `x + residual` in the input dtype...
    assert torch.equal(total, x + residual)
    # ...and normalised from there.
    assert_matches_reference(out, ref.rms_norm(total.cpu(), weight.cpu(), EPS))
    functional = compat_kernels.fused_add_rms_norm(x, residual, weight, EPS)
    assert torch.equal(functional[0], out) and torch.equal(functional[1], total)


@dtypes
@pytest.mark.parametrize("d", HIDDEN_SIZES)
@pytest.mark.parametrize("rows", ROWS)
def test_silu_and_mul(
    device: torch.device, dtype: torch.dtype, d: int, rows: int, seed: int
) -> None:
    x = _randn(rows, 2 * d, dtype=dtype, device=device, seed=seed)
    out = _poisoned(x, (rows, d))
    OPS.silu_and_mul.out(x, out=out)
    assert_matches_reference(out, ref.silu_and_mul(x.cpu()))
    assert torch.equal(compat_kernels.silu_and_mul(x), out)


@dtypes
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize("case", ROTARY_CASES, ids=str)
def test_rotary_embedding(
    device: torch.device, dtype: torch.dtype, is_neox: bool, case: RotaryCase, seed: int
) -> None:
    positions, query, key, cache = rotary_inputs(case, dtype, device, seed=seed)
    q_out, k_out = _poisoned(query), _poisoned(key)
    OPS.rotary_embedding.out(
        positions, query, key, cache, case.head_size, is_neox, query_out=q_out, key_out=k_out
    )
    cpu_inputs = (positions.cpu(), query.cpu(), key.cpu(), cache.cpu())
    q_ref, k_ref = ref.rotary_embedding(*cpu_inputs, case.head_size, is_neox)
    assert_matches_reference(q_out, q_ref)
    assert_matches_reference(k_out, k_ref)
    heads = (case.num_tokens, -1, case.head_size)
    rot = case.rot_dim
    assert torch.equal(q_out.reshape(heads)[..., rot:], query.reshape(heads)[..., rot:])
    functional = compat_kernels.rotary_embedding(
        positions, query, key, cache, case.head_size, is_neox
    )
    assert torch.equal(functional[0], q_out) and torch.equal(functional[1], k_out)


@dtypes
def test_misaligned_tensors_take_the_element_path(
    device: torch.device, dtype: torch.dtype, seed: int
) -> None:
    """Contiguous views starting one element into a buffer: no row is 16-byte
    aligned, though the hidden size is a multiple of the vector width."""
    rows, hidden = 5, 64

    def offset(t: torch.Tensor) -> torch.Tensor:
        buffer = torch.full((t.numel() + 1,), float("nan"), dtype=dtype, device=device)
        buffer[1:] = t.flatten()
        return buffer[1:].view(t.shape)

    x = offset(_randn(rows, hidden, dtype=dtype, device=device, seed=seed))
    weight = offset(_randn(hidden, dtype=dtype, device=device, seed=seed + 1))
    out = offset(_poisoned(x))
    assert x.data_ptr() % 16 != 0 and out.data_ptr() % 16 != 0
    OPS.rms_norm.out(x, weight, EPS, out=out)
    assert_matches_reference(out, ref.rms_norm(x.cpu(), weight.cpu(), EPS))
    gate_up = offset(_randn(rows, 2 * hidden, dtype=dtype, device=device, seed=seed + 2))
    act = offset(_poisoned(x))
    OPS.silu_and_mul.out(gate_up, out=act)
    assert_matches_reference(act, ref.silu_and_mul(gate_up.cpu()))


def test_many_rows(device: torch.device, seed: int) -> None:
    """More rows than gridDim.y/z could hold (65535): the grid is 1-D in x."""
    x = _randn(70_000, 8, dtype=torch.float16, device=device, seed=seed)
    weight = _randn(8, dtype=torch.float16, device=device, seed=seed + 1)
    out = _poisoned(x)
    OPS.rms_norm.out(x, weight, EPS, out=out)
    assert_matches_reference(out, ref.rms_norm(x.cpu(), weight.cpu(), EPS))


def test_empty_inputs(device: torch.device) -> None:
    weight = torch.ones(16, device=device)
    assert compat_kernels.rms_norm(torch.empty(0, 16, device=device), weight).shape == (0, 16)
    assert compat_kernels.silu_and_mul(torch.empty(0, 16, device=device)).shape == (0, 8)
    q, k = compat_kernels.rotary_embedding(
        torch.empty(0, dtype=torch.long, device=device),
        torch.empty(0, 32, device=device),
        torch.empty(0, 16, device=device),
        torch.empty(8, 16, device=device),
        16,
        True,
    )
    assert q.shape == (0, 32) and k.shape == (0, 16)


def test_rotary_position_outside_the_cache_gives_nan(device: torch.device) -> None:
    """The device cannot raise without a synchronisation; the token's outputs
    become NaN instead of plausible numbers (launch.h)."""
    case = RotaryCase(num_tokens=3, num_heads=2, num_kv_heads=1, head_size=64, rot_dim=64)
    positions, query, key, cache = rotary_inputs(case, torch.float32, device)
    positions[1] = case.max_position
    q_out, k_out = compat_kernels.rotary_embedding(positions, query, key, cache, 64, True)
    assert torch.isnan(q_out[1]).all() and torch.isnan(k_out[1]).all()
    assert torch.isfinite(q_out[0]).all() and torch.isfinite(q_out[2]).all()


@dtypes
def test_cuda_matches_cpu_kernels(device: torch.device, dtype: torch.dtype, seed: int) -> None:
    """Both backends implement the same rounding contract, so they agree to
    within the dtype's tolerance on identical inputs."""
    x = _randn(9, 4097, dtype=dtype, device="cpu", seed=seed)
    weight = _randn(4097, dtype=dtype, device="cpu", seed=seed + 1)
    on_cpu = compat_kernels.rms_norm(x, weight, EPS)
    on_gpu = compat_kernels.rms_norm(x.to(device), weight.to(device), EPS)
    assert_matches_reference(on_gpu, on_cpu.double())


def test_wrong_out_is_rejected(device: torch.device) -> None:
    x = torch.randn(4, 8, device=device)
    with pytest.raises(RuntimeError, match=r"out must have shape \[4, 8\], got \[4, 7\]"):
        weight = torch.randn(8, device=device)
        OPS.rms_norm.out(x, weight, EPS, out=torch.empty(4, 7, device=device))
    with pytest.raises(RuntimeError, match="must be on the same device"):
        OPS.silu_and_mul.out(x, out=torch.empty(4, 4))


def test_mixed_devices_are_rejected(device: torch.device) -> None:
    x = torch.randn(4, 8, device=device)
    with pytest.raises(RuntimeError, match="must be on the same device"):
        compat_kernels.rms_norm(x, torch.randn(8))
