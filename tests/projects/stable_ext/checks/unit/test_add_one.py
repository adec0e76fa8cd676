"""add_one against torch's own arithmetic."""

import pytest
import torch
from stable_ext import add_one


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (2, 3, 4)])
def test_matches_torch(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    torch.testing.assert_close(add_one(x), x + 1)


def test_non_contiguous_input() -> None:
    x = torch.randn(4, 6).t()
    torch.testing.assert_close(add_one(x), x + 1)


def test_input_is_left_alone() -> None:
    x = torch.zeros(3)
    add_one(x)
    assert torch.equal(x, torch.zeros(3))


def test_wrong_dtype_is_refused() -> None:
    with pytest.raises(RuntimeError, match="float32"):
        add_one(torch.zeros(3, dtype=torch.int64))
