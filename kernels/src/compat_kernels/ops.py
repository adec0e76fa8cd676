"""Typed Python wrappers over ``torch.ops.compat_kernels``.

All ops are functional: they allocate their outputs and never modify inputs.
"""

from __future__ import annotations

from typing import cast

import torch

OP_NAMES: tuple[str, ...] = (
    "rms_norm",
    "fused_add_rms_norm",
    "silu_and_mul",
    "rotary_embedding",
)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(mean(x**2, -1) + eps) * weight``, statistics in float32."""
    return cast(torch.Tensor, torch.ops.compat_kernels.rms_norm(x, weight, eps))


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(rms_norm(x + residual, weight, eps), x + residual)``; the sum
    is rounded to the input dtype before it is normalised, as in vLLM."""
    result = torch.ops.compat_kernels.fused_add_rms_norm(x, residual, weight, eps)
    return cast(tuple[torch.Tensor, torch.Tensor], result)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """For ``x`` with last dimension ``2 * d``: ``silu(x[..., :d]) * x[..., d:]``."""
    return cast(torch.Tensor, torch.ops.compat_kernels.silu_and_mul(x))


def rotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    head_size: int,
    is_neox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding with vLLM semantics, returning new tensors.

    ``positions``: int64 ``[num_tokens]``. ``query``/``key``:
    ``[num_tokens, num_heads * head_size]`` (or ``[num_tokens, num_heads,
    head_size]``). ``cos_sin_cache``: ``[max_position, rot_dim]``, cos in the
    first half of each row and sin in the second; the first ``rot_dim`` dims of
    each head are rotated, NeoX style (``i`` with ``i + rot_dim/2``) or GPT-J
    style (``2i`` with ``2i + 1``).
    """
    result = torch.ops.compat_kernels.rotary_embedding(
        positions, query, key, cos_sin_cache, head_size, is_neox
    )
    return cast(tuple[torch.Tensor, torch.Tensor], result)
