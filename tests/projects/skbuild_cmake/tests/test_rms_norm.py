import pytest
import rmsnorm_cmake
import torch


def reference(x, weight, eps):
    x64 = x.double()
    return (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * weight.double()).to(
        x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(16,), (4, 31), (2, 3, 64)])
def test_matches_reference(shape, dtype):
    gen = torch.Generator().manual_seed(len(shape) * 100 + shape[-1])
    x = torch.randn(shape, generator=gen, dtype=dtype)
    weight = torch.rand(shape[-1], generator=gen, dtype=dtype) + 0.5
    torch.testing.assert_close(rmsnorm_cmake.rms_norm(x, weight, 1e-5),
                               reference(x, weight, 1e-5))


def test_default_eps_from_the_schema():
    x = torch.randn(3, 8)
    weight = torch.ones(8)
    torch.testing.assert_close(torch.ops.rmsnorm_cmake.rms_norm(x, weight),
                               reference(x, weight, 1e-6))


def test_matches_torch_rms_norm():
    x = torch.randn(5, 12)
    weight = torch.randn(12)
    expected = torch.nn.functional.rms_norm(x, (12,), weight, eps=1e-6)
    torch.testing.assert_close(rmsnorm_cmake.rms_norm(x, weight), expected)


def test_bad_weight_is_an_error():
    with pytest.raises(RuntimeError, match="weight must be 1-D"):
        rmsnorm_cmake.rms_norm(torch.zeros(2, 4), torch.zeros(3))
