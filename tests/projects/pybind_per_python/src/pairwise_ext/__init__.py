"""Pairwise squared distances; the kernel is the pybind11 module pairwise_ext._C."""

import torch  # noqa: F401  (loads libtorch before the extension needs its symbols)

from ._C import TORCH_VERSION as __torch_build_version__
from ._C import pairwise_sq_dist

__version__ = "1.4.0"
__all__ = ["__torch_build_version__", "pairwise_sq_dist"]
