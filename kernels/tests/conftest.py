"""Shared pytest setup for the compat_kernels suites (import, unit, gpu).

GPU kinds: ``@pytest.mark.gpu(kind="h100")`` marks a test that needs a CUDA
device of that kind. A kind is a predicate on the device's compute capability
(``h100`` is any 9.x device, so an H200 counts). Where no device of the kind
is present the test is skipped, and the reason says what was needed and what
was found. The ``gpu_device`` fixture gives such a test the matching device.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import pytest
import torch

Capability = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class GpuKind:
    description: str
    matches: Callable[[Capability], bool]


GPU_KINDS: dict[str, GpuKind] = {
    "cuda": GpuKind("any CUDA device", lambda cc: True),
    "a100": GpuKind("compute capability 8.0", lambda cc: cc == (8, 0)),
    "h100": GpuKind("compute capability 9.x", lambda cc: cc[0] == 9),
}


def pytest_configure(config: pytest.Config) -> None:
    # kernels/pyproject.toml registers the marker; repeat that when pytest was
    # pointed at another ini file, so --strict-markers still passes.
    if not any(line.startswith("gpu(") for line in config.getini("markers")):
        config.addinivalue_line(
            "markers",
            f"gpu(kind): needs a CUDA device of the given kind ({', '.join(GPU_KINDS)})",
        )


def _cuda_available() -> bool:
    # A CUDA build of torch without a usable driver warns on this probe; the
    # outcome is reported in the skip reason instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.cuda.is_available()


def _visible_devices() -> list[tuple[int, str, Capability]]:
    if not _cuda_available():
        return []
    return [
        (i, torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
        for i in range(torch.cuda.device_count())
    ]


def _marked_kind(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("gpu")
    if marker is None:
        return None
    kind: object = marker.kwargs.get("kind", marker.args[0] if marker.args else None)
    if not isinstance(kind, str) or kind not in GPU_KINDS:
        raise pytest.UsageError(
            f"{item.nodeid}: gpu marker needs kind= one of {sorted(GPU_KINDS)}, got {kind!r}"
        )
    return kind


def _matching_devices(kind: str) -> list[int]:
    matches = GPU_KINDS[kind].matches
    return [index for index, _, cc in _visible_devices() if matches(cc)]


def _absence_reason(kind: str) -> str:
    if not _cuda_available():
        found = "torch.cuda.is_available() is False"
    else:
        found = "found " + ", ".join(
            f"cuda:{index} {name} ({cc[0]}.{cc[1]})" for index, name, cc in _visible_devices()
        )
    return f"needs GPU kind {kind} ({GPU_KINDS[kind].description}); none present: {found}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = _marked_kind(item)
        if kind is not None and not _matching_devices(kind):
            item.add_marker(pytest.mark.skip(reason=_absence_reason(kind)))


@pytest.fixture
def gpu_device(request: pytest.FixtureRequest) -> torch.device:
    """The first CUDA device of the kind the requesting test is marked with."""
    kind = _marked_kind(request.node)
    if kind is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: gpu_device needs @pytest.mark.gpu(kind=...)"
        )
    return torch.device("cuda", _matching_devices(kind)[0])
