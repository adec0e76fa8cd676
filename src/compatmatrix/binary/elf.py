"""Read the dynamic section of an ELF shared object: DT_NEEDED, RPATH, RUNPATH, SONAME; and
find a section by name (where nvcc puts the GPU code, ``.nv_fatbin``).

Pure Python (struct), so auditing a wheel needs neither binutils nor patchelf. It reads from a
seekable binary stream, so a member of a zip file is read without extracting it, and a 1 GiB
``libtorch_cuda.so`` costs a handful of small reads. Anything it cannot make sense of raises
:class:`ElfError`, never struct's or the stream's own exceptions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["MACHINES", "ElfError", "ElfInfo", "defined_symbols", "dynamic_symbols", "read_at",
           "read_elf", "read_elf_file", "section_bounds"]

# e_machine values of the platforms wheels are built for, named as in wheel platform tags.
MACHINES = {3: "i686", 20: "ppc", 21: "ppc64le", 22: "s390x", 40: "armv7l", 62: "x86_64",
            183: "aarch64", 243: "riscv64"}

_ET_DYN = 3
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ = 0, 1, 5, 10
_DT_SONAME, _DT_RPATH, _DT_RUNPATH = 14, 15, 29
_SHT_NOBITS = 8
_SHN_XINDEX = 0xFFFF
# A corrupt size field must not make us read gigabytes: real tables are far smaller.
_MAX_TABLE = 64 * 1024 * 1024
_MAX_SYMBOLS = 256 * 1024 * 1024  # a dynamic symbol table: large C++ libraries export many


class ElfError(ValueError):
    """The bytes are not an ELF file this reader understands (the message says why)."""


@dataclass(frozen=True)
class ElfInfo:
    bits: int
    machine: int
    shared_object: bool  # e_type is ET_DYN: what dlopen (and so Python's import) can load
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str | None = None

    @property
    def machine_name(self) -> str:
        return MACHINES.get(self.machine, f"ELF machine {self.machine}")

    @property
    def search_path(self) -> tuple[str, ...]:
        # ld.so ignores DT_RPATH when DT_RUNPATH is present.
        return self.runpath or self.rpath


@dataclass(frozen=True)
class _Layout:
    """The struct formats of one ELF class and byte order."""

    header: struct.Struct  # the ELF header after e_ident
    phdr: struct.Struct
    phdr_fields: tuple[int, int, int, int]  # indexes of p_type, p_offset, p_vaddr, p_filesz
    dyn: struct.Struct
    shdr: struct.Struct  # sh_name, sh_type, ..., sh_offset (4), sh_size (5), sh_link (6), ...


def _layout(bits: int, endian: str) -> _Layout:
    if bits == 64:
        return _Layout(struct.Struct(endian + "HHIQQQIHHHHHH"), struct.Struct(endian + "IIQQQQQQ"),
                       (0, 2, 3, 5), struct.Struct(endian + "qQ"),
                       struct.Struct(endian + "IIQQQQIIQQ"))
    return _Layout(struct.Struct(endian + "HHIIIIIHHHHHH"), struct.Struct(endian + "IIIIIIII"),
                   (0, 1, 2, 4), struct.Struct(endian + "iI"), struct.Struct(endian + "IIIIIIIIII"))


@dataclass(frozen=True)
class _Segment:
    kind: int
    offset: int
    vaddr: int
    filesz: int


def read_elf_file(path: Path) -> ElfInfo:
    try:
        with path.open("rb") as stream:
            return read_elf(stream)
    except OSError as exc:
        raise ElfError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _header(stream: IO[bytes]) -> tuple[int, _Layout, tuple[int, ...]]:
    ident = _read_at(stream, 0, 16)
    if ident[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    bits = {1: 32, 2: 64}.get(ident[4])
    endian = {1: "<", 2: ">"}.get(ident[5])
    if bits is None or endian is None:
        raise ElfError(f"unknown ELF class {ident[4]} or byte order {ident[5]}")
    layout = _layout(bits, endian)
    return bits, layout, layout.header.unpack(_read_at(stream, 16, layout.header.size))


def section_bounds(stream: IO[bytes], name: str) -> tuple[int, int] | None:
    """(file offset, size) of the section called ``name``; None when there is none."""
    _, layout, header = _header(stream)
    shoff, shentsize, shnum, shstrndx = header[5], header[10], header[11], header[12]
    if shoff == 0:
        return None  # no section table (e.g. sstrip): only segments are left
    if shentsize < layout.shdr.size:
        raise ElfError(f"section header entries of {shentsize} bytes are too small")
    first = layout.shdr.unpack(_read_at(stream, shoff, layout.shdr.size))
    if shnum == 0:  # extended numbering: the count is in the first entry
        shnum = first[5]
    if shstrndx == _SHN_XINDEX:
        shstrndx = first[6]
    if shnum * shentsize > _MAX_TABLE or shstrndx >= shnum:
        raise ElfError(f"implausible section table ({shnum} entries, names in {shstrndx})")
    table = _read_at(stream, shoff, shnum * shentsize)
    entries = [layout.shdr.unpack_from(table, i * shentsize) for i in range(shnum)]
    names_entry = entries[shstrndx]
    if names_entry[5] > _MAX_TABLE:
        raise ElfError(f"implausible section name table ({names_entry[5]} bytes)")
    names = _read_at(stream, names_entry[4], names_entry[5])
    for entry in entries:
        if entry[1] != _SHT_NOBITS and _string(names, entry[0]) == name:
            return entry[4], entry[5]
    return None


def defined_symbols(stream: IO[bytes], names: set[str]) -> set[str]:
    """Which of ``names`` the object defines (and exports) in its dynamic symbol table."""
    return {name for name, defined in dynamic_symbols(stream) if defined and name in names}


def dynamic_symbols(stream: IO[bytes]) -> list[tuple[str, bool]]:
    """(name, defined) for each entry of the dynamic symbol table: undefined ones are what
    the dynamic linker must find elsewhere. Names come without the GNU version suffix
    (``@GLIBCXX_3.4``) that nm shows."""
    bits, _, _ = _header(stream)
    endian = "<" if _read_at(stream, 5, 1) == b"\x01" else ">"
    symtab, strtab = section_bounds(stream, ".dynsym"), section_bounds(stream, ".dynstr")
    if symtab is None or strtab is None:
        return []
    if symtab[1] > _MAX_SYMBOLS or strtab[1] > _MAX_SYMBOLS:
        raise ElfError(f"implausible dynamic symbol table ({symtab[1]} bytes)")
    entry = struct.Struct(endian + ("IBBHQQ" if bits == 64 else "IIIBBH"))
    name_at, section_at = (0, 3) if bits == 64 else (0, 5)
    table = _read_at(stream, *symtab)
    strings = _read_at(stream, *strtab)
    found = []
    for start in range(0, len(table) - entry.size + 1, entry.size):
        fields = entry.unpack_from(table, start)
        name = _string(strings, fields[name_at]) if fields[name_at] < len(strings) else ""
        found.append((name, fields[section_at] != 0))  # SHN_UNDEF: defined elsewhere
    return found


def read_at(stream: IO[bytes], offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset``; ElfError when the stream is shorter."""
    return _read_at(stream, offset, size)


def read_elf(stream: IO[bytes]) -> ElfInfo:
    bits, layout, header = _header(stream)
    e_type, machine, phoff, phentsize, phnum = (header[0], header[1], header[4], header[8],
                                                header[9])
    segments = _segments(stream, layout, phoff, phentsize, phnum)
    entries = _dynamic_entries(stream, layout, segments)
    strings = _string_table(stream, segments, entries)

    def values(tag: int) -> tuple[str, ...]:
        return tuple(_string(strings, value) for kind, value in entries if kind == tag)

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(part for text in values(tag) for part in text.split(":") if part)

    soname = values(_DT_SONAME)
    return ElfInfo(bits, machine, e_type == _ET_DYN, values(_DT_NEEDED), paths(_DT_RPATH),
                   paths(_DT_RUNPATH), soname[0] if soname else None)


def _read_at(stream: IO[bytes], offset: int, size: int) -> bytes:
    try:
        stream.seek(offset)
        data = stream.read(size)
    except (OSError, ValueError, EOFError) as exc:  # zipfile raises these for bad members
        raise ElfError(f"cannot read {size} bytes at offset {offset}: {exc}") from exc
    if len(data) != size:
        raise ElfError(f"truncated: wanted {size} bytes at offset {offset}, got {len(data)}")
    return data


def _segments(stream: IO[bytes], layout: _Layout, phoff: int, phentsize: int,
              phnum: int) -> list[_Segment]:
    if phnum and phentsize < layout.phdr.size:
        raise ElfError(f"program header entries of {phentsize} bytes are too small")
    if phnum * phentsize > _MAX_TABLE:
        raise ElfError(f"implausible program header table ({phnum} entries)")
    table = _read_at(stream, phoff, phnum * phentsize)
    kind, offset, vaddr, filesz = layout.phdr_fields
    segments = []
    for start in range(0, len(table), phentsize):
        fields = layout.phdr.unpack_from(table, start)
        segments.append(_Segment(fields[kind], fields[offset], fields[vaddr], fields[filesz]))
    return segments


def _dynamic_entries(stream: IO[bytes], layout: _Layout,
                     segments: list[_Segment]) -> list[tuple[int, int]]:
    dynamic = next((s for s in segments if s.kind == _PT_DYNAMIC), None)
    if dynamic is None:  # statically linked: nothing to resolve
        return []
    if dynamic.filesz > _MAX_TABLE:
        raise ElfError(f"implausible dynamic section ({dynamic.filesz} bytes)")
    table = _read_at(stream, dynamic.offset, dynamic.filesz)
    entries = []
    for start in range(0, len(table) - layout.dyn.size + 1, layout.dyn.size):
        tag, value = layout.dyn.unpack_from(table, start)
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    return entries


def _string_table(stream: IO[bytes], segments: list[_Segment],
                  entries: list[tuple[int, int]]) -> bytes:
    found = dict(entries)  # DT_STRTAB and DT_STRSZ occur once
    if _DT_STRTAB not in found:
        if any(tag in (_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH) for tag, _ in entries):
            raise ElfError("dynamic section names libraries but has no string table")
        return b""
    size = found.get(_DT_STRSZ, 0)
    if size > _MAX_TABLE:
        raise ElfError(f"implausible dynamic string table ({size} bytes)")
    # DT_STRTAB is a virtual address: the PT_LOAD segment that maps it gives the file offset.
    address = found[_DT_STRTAB]
    for segment in segments:
        if segment.kind == _PT_LOAD and segment.vaddr <= address < segment.vaddr + segment.filesz:
            return _read_at(stream, address - segment.vaddr + segment.offset, size)
    raise ElfError(f"dynamic string table address {address:#x} is in no loaded segment")


def _string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    if offset >= len(table) or end < 0:
        raise ElfError(f"string offset {offset} is outside the dynamic string table")
    return table[offset:end].decode("utf-8", errors="replace")
