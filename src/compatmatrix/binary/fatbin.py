"""Which GPU architectures a shared object carries code for, read from the binary itself.

nvcc puts the device code of each compiled ``.cu`` file into the ``.nv_fatbin`` section as a
fat binary: a 16-byte header (magic ``0xBA55ED50``, version, header size, size of what
follows), then entries, each with its own header (kind: 1 PTX, 2 cubin; the architecture as
``major * 10 + minor``; flags) and a payload that may be compressed. Only the headers are read,
so compression does not matter and a large library costs a few small reads. The layout is the
one cuobjdump reads (``cuobjdump --list-elf --list-ptx``); the tests check the two agree.

Pure Python, like :mod:`compatmatrix._elf`, so auditing needs no CUDA toolkit; anything it
cannot make sense of raises :class:`~compatmatrix._elf.ElfError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

from compatmatrix.binary.elf import ElfError, read_at, section_bounds

__all__ = ["FATBIN_MAGIC", "GpuArch", "read_gpu_archs", "read_gpu_archs_in"]

FATBIN_MAGIC = 0xBA55ED50
SECTION = ".nv_fatbin"
_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries
# kind, version, header size, payload size, compressed size, -, format minor, format major,
# arch, name offset, name size, flags
_ENTRY = struct.Struct("<HHIQIIHHIIIQ")
_KINDS = {1: "ptx", 2: "sass"}
_ARCH_SPECIFIC = 0x100000  # sm_90a: runs on exactly that architecture
_FAMILY = 0x200000  # sm_100f: runs on the architecture family
_MAX_ENTRIES = 100_000


@dataclass(frozen=True, order=True)
class GpuArch:
    """One entry's target: SASS (machine code) or PTX (compiled by the driver at load)."""

    kind: str  # "sass" or "ptx"
    major: int
    minor: int
    suffix: str = ""  # "a" (architecture-specific) or "f" (family)

    @property
    def name(self) -> str:
        prefix = "sm" if self.kind == "sass" else "compute"
        return f"{prefix}_{self.major}{self.minor}{self.suffix}"


def read_gpu_archs(stream: IO[bytes]) -> tuple[GpuArch, ...]:
    """The distinct GPU code targets in an ELF file's fat binaries (empty: none)."""
    bounds = section_bounds(stream, SECTION)
    if bounds is None:
        return ()
    offset, size = bounds
    return tuple(sorted(set(read_gpu_archs_in(stream, offset, size))))


def read_gpu_archs_in(stream: IO[bytes], offset: int, size: int) -> list[GpuArch]:
    """The targets of the fat binaries laid end to end in ``[offset, offset + size)``."""
    found: list[GpuArch] = []
    position, end = offset, offset + size
    while position + _HEADER.size <= end:
        magic, _, header_size, entries_size = _HEADER.unpack(read_at(stream, position,
                                                                     _HEADER.size))
        if magic != FATBIN_MAGIC:
            position += 8  # fat binaries are 8-byte aligned; skip the padding between them
            continue
        start = position + header_size
        if start + entries_size > end:
            raise ElfError(f"fat binary at {position:#x} runs past the end of {SECTION}")
        found += _entries(stream, start, start + entries_size)
        position = start + entries_size
    return found


def _entries(stream: IO[bytes], position: int, end: int) -> list[GpuArch]:
    found: list[GpuArch] = []
    for _ in range(_MAX_ENTRIES):
        if position + _ENTRY.size > end:
            return found
        fields = _ENTRY.unpack(read_at(stream, position, _ENTRY.size))
        kind, header_size, payload_size, arch, flags = (fields[0], fields[2], fields[3],
                                                        fields[8], fields[11])
        if header_size < _ENTRY.size:
            raise ElfError(f"fat binary entry at {position:#x} has a {header_size}-byte header")
        if kind in _KINDS:
            found.append(GpuArch(_KINDS[kind], arch // 10, arch % 10, _suffix(flags)))
        position += header_size + payload_size
    raise ElfError(f"more than {_MAX_ENTRIES} entries in one fat binary")


def _suffix(flags: int) -> str:
    if flags & _ARCH_SPECIFIC:
        return "a"
    if flags & _FAMILY:
        return "f"
    return ""
