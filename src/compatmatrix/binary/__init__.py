"""Reading compiled files without tools: ELF, CUDA fat binaries, C++ symbol names."""
