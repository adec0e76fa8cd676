"""compat_kernels: RMSNorm, SiLU-and-mul and rotary-embedding torch custom ops.

Importing the package loads the compiled operator library (``_C``) and the
fake (meta) implementations that let ``torch.compile`` trace the ops. The ops
are reachable as ``torch.ops.compat_kernels.<name>`` or through the wrappers
re-exported here.
"""

from __future__ import annotations

from importlib.metadata import version as _dist_version

# torch must be loaded before _C, whose shared object links against libtorch.
import torch  # noqa: F401

# Importing _C loads the operator library; _fake registers the fake impls.
from . import _C, _fake  # noqa: F401
from ._build_info import ABI3 as _ABI3
from ._build_info import CUDA_ARCHS as _CUDA_ARCHS
from ._build_info import CUDA_VERSION as _CUDA_VERSION
from ._build_info import TORCH_VERSION as __torch_build_version__
from .ops import OP_NAMES, fused_add_rms_norm, rms_norm, rotary_embedding, silu_and_mul

__version__: str = _dist_version("compat-kernels")

__all__ = [
    "OP_NAMES",
    "__torch_build_version__",
    "__version__",
    "build_info",
    "fused_add_rms_norm",
    "rms_norm",
    "rotary_embedding",
    "silu_and_mul",
]


def build_info() -> dict[str, str | bool | None]:
    """Describe the build: torch and CUDA versions it was compiled against,
    whether the extension targets the stable (abi3) CPython ABI, and the GPU
    architectures of its CUDA kernels (TORCH_CUDA_ARCH_LIST; None when it was
    built without them)."""
    return {
        "torch": __torch_build_version__,
        "cuda": _CUDA_VERSION,
        "abi3": _ABI3,
        "cuda_archs": _CUDA_ARCHS,
    }
