# Metadata is declarative (setup.cfg); only the extension needs code.
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

setup(
    ext_modules=[
        CppExtension(
            "pairwise_ext._C",
            ["csrc/pairwise.cpp"],
            # -O1: torch/extension.h alone takes ~30 s to parse; keep the test build short
            extra_compile_args=["-O1", "-g0"],
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
