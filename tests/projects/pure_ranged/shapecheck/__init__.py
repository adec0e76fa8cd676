"""Runtime shape and dtype contracts for functions taking torch tensors (pure Python)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from packaging.version import Version

__version__ = "0.5.2"
__all__ = ["ShapeError", "contract", "torch_at_least"]

F = TypeVar("F", bound=Callable[..., Any])


class ShapeError(ValueError):
    """A tensor argument does not match its declared shape or dtype."""


def torch_at_least(version: str) -> bool:
    """Whether the running torch is ``version`` or newer (local labels such as +cpu ignored)."""
    return Version(Version(torch.__version__).base_version) >= Version(version)


def _check(name: str, value: Any, spec: str, dims: dict[str, int]) -> None:
    if not isinstance(value, torch.Tensor):
        raise ShapeError(f"{name}: expected a tensor, got {type(value).__name__}")
    shape_part, _, dtype_part = spec.partition(":")
    wanted = [d.strip() for d in shape_part.split(",") if d.strip()]
    if len(wanted) != value.dim():
        raise ShapeError(f"{name}: expected {len(wanted)} dims ({spec}), got {tuple(value.shape)}")
    for label, size in zip(wanted, value.shape, strict=False):
        if label.isdigit():
            if int(label) != size:
                raise ShapeError(f"{name}: dimension {label} expected, got {size}")
        elif dims.setdefault(label, size) != size:
            raise ShapeError(f"{name}: {label} is {size}, but {dims[label]} elsewhere")
    if dtype_part and str(value.dtype).removeprefix("torch.") != dtype_part.strip():
        raise ShapeError(f"{name}: dtype {dtype_part.strip()} expected, got {value.dtype}")


def contract(**specs: str) -> Callable[[F], F]:
    """Check tensor arguments against specs such as ``"b, n, d"`` or ``"n, 3: float32"``."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        unknown = set(specs) - set(signature.parameters)
        if unknown:
            raise TypeError(f"contract names unknown parameters: {sorted(unknown)}")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            dims: dict[str, int] = {}
            for name, spec in specs.items():
                if name in bound.arguments:
                    _check(name, bound.arguments[name], spec, dims)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
