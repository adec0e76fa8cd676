"""Fused bias + ReLU. The ops live in biasact._C, a shared library loaded into torch.ops."""

import importlib.machinery
import os

import torch

__version__ = "0.3.1"


def _load_library():
    # _C has no PyInit function (its ops register through TORCH_LIBRARY), so it is loaded
    # the way torchvision loads its _C: find the file, hand it to torch.ops.load_library.
    here = os.path.dirname(__file__)
    loader_details = (importlib.machinery.ExtensionFileLoader,
                      importlib.machinery.EXTENSION_SUFFIXES)
    spec = importlib.machinery.FileFinder(here, loader_details).find_spec("_C")
    if spec is None or spec.origin is None:
        raise ImportError(f"biasact: no compiled _C library in {here}")
    torch.ops.load_library(spec.origin)
    return spec.origin


_LIBRARY = _load_library()


def bias_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(x + bias), bias broadcast along the last dimension of x."""
    return torch.ops.biasact.bias_relu(x, bias)


def has_cuda_kernel() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("biasact::bias_relu", "CUDA")
