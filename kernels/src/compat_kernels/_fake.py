"""Fake (meta) implementations of the compat_kernels ops.

They compute output shapes and dtypes without touching data, which is what
FakeTensor tracing (torch.compile, torch.export, opcheck) runs instead of the
C++ kernels. The C++ library names this module via ``m.set_python_module``,
so it must stay importable as ``compat_kernels._fake``. Only the checks that
decide output shapes are repeated here; the C++ kernels validate the rest.
"""

from __future__ import annotations

import torch
from torch.library import register_fake


def _check_norm_weight(op: str, x: torch.Tensor, weight: torch.Tensor) -> None:
    torch._check(
        weight.dim() == 1 and weight.shape[0] == x.shape[-1],
        lambda: f"{op}: weight must have shape [{x.shape[-1]}], got {list(weight.shape)}",
    )
    torch._check(
        weight.dtype == x.dtype,
        lambda: f"{op}: weight and x must have the same dtype, got {weight.dtype} and {x.dtype}",
    )


@register_fake("compat_kernels::rms_norm")
def _rms_norm_fake(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    _check_norm_weight("rms_norm", x, weight)
    return torch.empty_like(x)


@register_fake("compat_kernels::fused_add_rms_norm")
def _fused_add_rms_norm_fake(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_norm_weight("fused_add_rms_norm", x, weight)
    torch._check(
        residual.shape == x.shape,
        lambda: (
            f"fused_add_rms_norm: residual must have shape {list(x.shape)}, "
            f"got {list(residual.shape)}"
        ),
    )
    return torch.empty_like(x), torch.empty_like(x)


@register_fake("compat_kernels::silu_and_mul")
def _silu_and_mul_fake(x: torch.Tensor) -> torch.Tensor:
    torch._check(
        x.shape[-1] % 2 == 0,
        lambda: f"silu_and_mul: the last dimension of x must be even, got {list(x.shape)}",
    )
    return x.new_empty((*x.shape[:-1], x.shape[-1] // 2))


@register_fake("compat_kernels::rotary_embedding")
def _rotary_embedding_fake(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    head_size: int,
    is_neox: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(query), torch.empty_like(key)
