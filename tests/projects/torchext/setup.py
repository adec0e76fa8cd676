# A flat-layout torch extension, deliberately unlike kernels/: no src/, tests in checks/,
# one wheel per Python (no abi3), matrix.yaml at the project root.
import torch
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

major, minor = (int(p) for p in torch.__version__.split(".")[:2])
setup(
    ext_modules=[CppExtension("tinyext._C", ["csrc/scale.cpp"], extra_compile_args=["-O1", "-g0"])],
    cmdclass={"build_ext": BuildExtension},
    install_requires=[f"torch>={major}.{minor},<{major}.{minor + 1}"],
)
