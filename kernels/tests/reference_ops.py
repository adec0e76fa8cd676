"""Plain-torch float64 references for the compat_kernels ops, shared by the
unit and GPU suites (tests/ is on sys.path via the pytest ``pythonpath``
option), plus input builders and dtype-appropriate tolerances.

The references take the same (already rounded) inputs as the op and compute
in float64, so the only differences come from the kernel's float32 arithmetic
and its final rounding to the output dtype.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

# positions, query, key, cos_sin_cache
RotaryInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16)

# (rtol, atol) against a float64 reference: float32 covers float32 arithmetic
# over rows of a few thousand elements; bf16/fp16 allow one unit in the last
# place of the output (2**-8 and 2**-10) plus a little arithmetic slack.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (8e-3, 8e-3),
    torch.float16: (2e-3, 2e-3),
}


def assert_matches_reference(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Compare an op output with its float64 reference at the tolerance of the
    output's dtype; shape and dtype mismatches fail too."""
    rtol, atol = TOLERANCES[actual.dtype]
    torch.testing.assert_close(actual.double(), expected.to(actual.device), rtol=rtol, atol=atol)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x64 = x.double()
    inv_rms = torch.rsqrt(x64.pow(2).mean(dim=-1, keepdim=True) + eps)
    return x64 * inv_rms * weight.double()


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # The op rounds the sum to the input dtype before normalising it.
    total = x + residual
    return rms_norm(total, weight, eps), total


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    x64 = x.double()
    return F.silu(x64[..., :d]) * x64[..., d:]


def rotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    head_size: int,
    is_neox: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = cos_sin_cache.double()[positions].chunk(2, dim=-1)
    # [num_tokens, rot_dim / 2] -> broadcast over heads
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rot_dim = cos_sin_cache.shape[1]

    def rotate(t: torch.Tensor) -> torch.Tensor:
        heads = t.double().reshape(t.shape[0], -1, head_size)
        rot, rest = heads[..., :rot_dim], heads[..., rot_dim:]
        if is_neox:
            x, y = rot.chunk(2, dim=-1)
            rotated = torch.cat((x * cos - y * sin, y * cos + x * sin), dim=-1)
        else:
            x, y = rot[..., 0::2], rot[..., 1::2]
            rotated = torch.stack((x * cos - y * sin, y * cos + x * sin), dim=-1).flatten(-2)
        return torch.cat((rotated, rest), dim=-1).reshape(t.shape)

    return rotate(query), rotate(key)


@dataclasses.dataclass(frozen=True)
class RotaryCase:
    num_tokens: int
    num_heads: int
    num_kv_heads: int
    head_size: int
    rot_dim: int
    max_position: int = 64
    heads_dim: bool = False  # query/key as [tokens, heads, head_size]

    def __str__(self) -> str:
        layout = "3d" if self.heads_dim else "2d"
        return (
            f"t{self.num_tokens}-h{self.num_heads}-kv{self.num_kv_heads}"
            f"-hs{self.head_size}-rot{self.rot_dim}-{layout}"
        )


def rotary_inputs(
    case: RotaryCase, dtype: torch.dtype, device: torch.device | str = "cpu", seed: int = 0
) -> RotaryInputs:
    """(positions, query, key, cos_sin_cache) for ``case``, with a real
    cos/sin cache (unit-norm rotations) as vLLM builds it."""
    gen = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, case.max_position, (case.num_tokens,), generator=gen)
    exponents = torch.arange(0, case.rot_dim, 2, dtype=torch.float64) / case.rot_dim
    inv_freq = 1.0 / (10000.0**exponents)
    angles = torch.arange(case.max_position, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cache = torch.cat((angles.cos(), angles.sin()), dim=-1)

    def heads(n: int) -> torch.Tensor:
        shape = (
            (case.num_tokens, n, case.head_size)
            if case.heads_dim
            else (case.num_tokens, n * case.head_size)
        )
        return torch.randn(shape, generator=gen)

    query, key = heads(case.num_heads), heads(case.num_kv_heads)
    return (
        positions.to(device),
        query.to(dtype=dtype, device=device),
        key.to(dtype=dtype, device=device),
        cache.to(dtype=dtype, device=device),
    )
