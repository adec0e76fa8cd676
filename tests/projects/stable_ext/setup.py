# A torch extension on PyTorch's stable ABI, in the shape torch's documentation gives: one
# abi3 module (Py_LIMITED_API), TORCH_TARGET_VERSION naming the oldest torch it targets, and
# the stable headers only (TORCH_STABLE_ONLY makes any other torch header an error). Built
# once, it loads under every torch from that version on.
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

TARGET = "0x020a000000000000"  # torch 2.10: the stable API this extension uses

setup(
    ext_modules=[CppExtension(
        "stable_ext._C", ["csrc/add_one.cpp"],
        extra_compile_args={"cxx": ["-O2", "-g0", f"-DTORCH_TARGET_VERSION={TARGET}",
                                    "-DTORCH_STABLE_ONLY", "-DPy_LIMITED_API=0x03090000"]},
        py_limited_api=True)],
    cmdclass={"build_ext": BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
