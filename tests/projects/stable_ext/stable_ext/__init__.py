"""add_one on PyTorch's stable ABI: one binary for every torch from 2.10 on."""

import torch

from stable_ext import _C  # noqa: F401  (loading the library registers torch.ops.stable_ext)

__all__ = ["add_one"]


def add_one(x: torch.Tensor) -> torch.Tensor:
    return torch.ops.stable_ext.add_one.default(x)
