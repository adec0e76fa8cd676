"""This machine: the one subprocess wrapper, bounded reads and atomic writes, uv,
interpreters, package indexes, the nvcc toolchain, GPUs."""
