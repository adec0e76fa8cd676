"""biasact: relu(x + bias) as a torch custom op, with a CUDA kernel when a GPU is present.

The usual setup.py of a torch extension: metadata in setup(), the torch pin derived from the
torch being built against, and CUDA compiled only when this machine can run it (or when
FORCE_CUDA=1), so a builder without a GPU silently produces a CPU-only wheel.
"""

import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

TORCH_MAJOR, TORCH_MINOR = (int(p) for p in torch.__version__.split(".")[:2])


def get_extensions():
    sources = ["csrc/bias_act.cpp"]
    extra_compile_args = {"cxx": ["-O2", "-g0"]}
    extension = CppExtension
    with_cuda = (torch.cuda.is_available() and CUDA_HOME is not None) or \
        os.getenv("FORCE_CUDA", "0") == "1"
    if with_cuda:
        extension = CUDAExtension
        sources.append("csrc/bias_act_cuda.cu")
        extra_compile_args["nvcc"] = ["-O2", "--use_fast_math"]
    return [extension("biasact._C", sources, extra_compile_args=extra_compile_args)]


setup(
    name="biasact",
    version="0.3.1",
    description="Fused bias + ReLU for torch tensors",
    packages=find_packages(include=["biasact", "biasact.*"]),
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.9",
    install_requires=[f"torch>={TORCH_MAJOR}.{TORCH_MINOR},<{TORCH_MAJOR}.{TORCH_MINOR + 1}"],
    zip_safe=False,
)
