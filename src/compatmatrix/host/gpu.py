"""GPU kinds, and which of them this machine has.

A GPU kind (``h100``, ``a100``, ...) is a predicate on the CUDA compute capability, not a
product name: kernels are compiled for an architecture, so an H200 (9.0) runs what an H100
suite needs. The GPUs are read from ``nvidia-smi`` once; a missing, broken or hung
``nvidia-smi`` means "no GPU here", with the reason kept for the report.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from compatmatrix.errors import did_you_mean
from compatmatrix.host import cmd as _cmd
from compatmatrix.host.cmd import CommandResult

__all__ = [
    "KNOWN_KINDS",
    "Capabilities",
    "GpuKind",
    "cell_kind_problem",
    "check_kind",
    "gpu_capabilities",
    "kind_problem",
    "kinds_present",
]

NVIDIA_SMI_TIMEOUT = 10.0
_QUERY = ("nvidia-smi", "--query-gpu=index,uuid,compute_cap,name", "--format=csv,noheader")

Runner = Callable[..., CommandResult]


@dataclass(frozen=True)
class GpuKind:
    """Compute capability ``major.minor``; None accepts any minor (or, as major, any GPU)."""

    name: str
    major: int | None
    minor: int | None = None

    @property
    def requirement(self) -> str:
        if self.major is None:
            return "any NVIDIA GPU"
        minor = "x" if self.minor is None else str(self.minor)
        return f"compute capability {self.major}.{minor}"

    def accepts(self, capability: str) -> bool:
        parsed = _parse_capability(capability)
        if parsed is None:
            return False
        if self.major is None:
            return True
        return parsed[0] == self.major and self.minor in (None, parsed[1])


KNOWN_KINDS: Mapping[str, GpuKind] = {kind.name: kind for kind in (
    GpuKind("cuda", None),
    GpuKind("a100", 8, 0),
    GpuKind("l4", 8, 9),
    GpuKind("ada", 8, 9),
    GpuKind("h100", 9),
    GpuKind("b200", 10),
    GpuKind("blackwell", 10),
)}


class Capabilities(tuple[tuple[str, str], ...]):
    """``(name, "9.0")`` per visible GPU; ``why_none`` says why the tuple is empty.

    A tuple, so that callers may iterate, compare and serialise it as the plain value it is;
    the reason rides along so that a report can say "nvidia-smi not found" rather than guess.
    """

    why_none: str

    def __new__(cls, gpus: Sequence[tuple[str, str]] = (), why_none: str = "") -> Capabilities:
        self = super().__new__(cls, tuple(gpus))
        self.why_none = why_none
        return self


def gpu_capabilities(env: Mapping[str, str], run: Runner = _cmd.run,
                     timeout: float = NVIDIA_SMI_TIMEOUT) -> Capabilities:
    """The GPUs that CUDA programs started with ``env`` would see."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return Capabilities((), "CUDA_VISIBLE_DEVICES is empty")
    if shutil.which(_QUERY[0], path=env.get("PATH", os.defpath)) is None:
        return Capabilities((), "nvidia-smi not found")
    result = run(_QUERY, env=env, timeout=timeout)
    if result.timed_out:
        return Capabilities((), f"nvidia-smi timed out after {timeout:g} s")
    if result.returncode != 0:
        first = next((line.strip() for line in result.output.splitlines() if line.strip()), "")
        return Capabilities((), f"nvidia-smi failed (exit {result.returncode}): {first}")
    rows = _parse_rows(result.output)
    gpus = [(name, cap) for _, _, cap, name in _visible_rows(rows, visible)]
    return Capabilities(gpus, "" if gpus else "nvidia-smi lists no GPU")


def check_kind(kind: str) -> GpuKind:
    """The kind named ``kind``; ValueError with a suggestion when there is none."""
    found = KNOWN_KINDS.get(kind.lower())
    if found is None:
        hint = did_you_mean(kind, KNOWN_KINDS)
        raise ValueError(f"unknown GPU kind {kind!r}" + (f"; {hint}" if hint else ""))
    return found


def kinds_present(capabilities: Sequence[tuple[str, str]]) -> frozenset[str]:
    return frozenset(kind.name for kind in KNOWN_KINDS.values()
                     if any(kind.accepts(cap) for _, cap in capabilities))


def kind_problem(kind: str, capabilities: Sequence[tuple[str, str]]) -> str | None:
    """None when a GPU of ``kind`` is present; else why a suite that needs one cannot run."""
    wanted = check_kind(kind)
    if any(wanted.accepts(cap) for _, cap in capabilities):
        return None
    needs = f"needs GPU kind {wanted.name} ({wanted.requirement})"
    if not capabilities:
        why = getattr(capabilities, "why_none", "") or "no GPU visible"
        return f"{needs}; this machine has no NVIDIA GPU ({why})"
    return f"{needs}; this machine has {_describe(capabilities)}"


def cell_kind_problem(kind: str, variant: str | None,
                      capabilities: Sequence[tuple[str, str]]) -> str | None:
    """Why a suite that needs GPU ``kind`` cannot run in a cell of torch ``variant``, or None.

    Only a torch that can use a GPU (a CUDA or ROCm variant; no cuda axis: PyPI's torch,
    which is a CUDA build) runs such a suite: in a CPU cell it would only skip, also on a
    machine that has the GPU.
    """
    if variant == "cpu":
        return (f"needs GPU kind {check_kind(kind).name}; the cell's torch is a CPU build, "
                "which cannot use a GPU")
    return kind_problem(kind, capabilities)


def _describe(capabilities: Sequence[tuple[str, str]]) -> str:
    counts = Counter(capabilities)
    return ", ".join(f"{n} x {name} ({cap})" if n > 1 else f"{name} ({cap})"
                     for (name, cap), n in counts.items())


def _parse_capability(text: str) -> tuple[int, int] | None:
    major, _, minor = text.strip().partition(".")
    if not (major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        return None  # "[N/A]" from drivers too old to report it
    return int(major), int(minor)


def _parse_rows(output: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in output.splitlines():
        # The name comes last because it is the only field that might hold a comma.
        parts = [part.strip() for part in line.split(",", 3)]
        if len(parts) == 4 and parts[0].isdigit():
            rows.append((parts[0], parts[1], parts[2], parts[3]))
    return rows


def _visible_rows(rows: list[tuple[str, str, str, str]],
                  visible: str | None) -> list[tuple[str, str, str, str]]:
    """Apply CUDA_VISIBLE_DEVICES, which nvidia-smi itself ignores.

    Like the CUDA runtime, read indices or UUID prefixes up to the first entry that names no
    device. MIG instances are not listed by this query: keep every GPU rather than guess.
    """
    if visible is None or "MIG-" in visible:
        return rows
    chosen = []
    for entry in (e.strip() for e in visible.split(",")):
        match = [row for row in rows
                 if row[0] == entry or (entry.startswith("GPU-") and row[1].startswith(entry))]
        if len(match) != 1:
            break
        chosen.append(match[0])
    return chosen
