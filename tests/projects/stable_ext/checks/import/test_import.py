"""The stable-ABI extension loads under the running torch and registers its op."""

import importlib.metadata

import stable_ext
import torch


def test_op_is_registered() -> None:
    assert hasattr(torch.ops.stable_ext, "add_one")


def test_library_is_the_installed_one() -> None:
    assert "site-packages" in stable_ext.__file__


def test_wheel_declares_only_a_lower_bound_on_torch() -> None:
    requires = importlib.metadata.requires("stable-ext") or []
    torch_lines = [r for r in requires if r.replace(" ", "").startswith("torch")]
    assert torch_lines and "<" not in torch_lines[0], torch_lines
