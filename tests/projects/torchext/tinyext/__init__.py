import torch

from . import _C  # noqa: F401  (registers the ops)

BUILT_WITH = None


def scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    return torch.ops.tinyext.scale(x, factor)
