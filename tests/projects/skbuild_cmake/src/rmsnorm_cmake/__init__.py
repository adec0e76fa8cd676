"""RMS normalisation; the op lives in librmsnorm_ops.so, built by CMake."""

from pathlib import Path

import torch

__version__ = "0.2.0"

_LIBRARY = Path(__file__).with_name("librmsnorm_ops.so")
if not _LIBRARY.is_file():
    raise ImportError(f"rmsnorm_cmake: {_LIBRARY} is missing; was the package built with CMake?")
torch.ops.load_library(str(_LIBRARY))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return torch.ops.rmsnorm_cmake.rms_norm(x, weight, eps)
