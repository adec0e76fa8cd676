import biasact
import pytest
import torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 4, 33)])
def test_matches_torch(shape, dtype):
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen, dtype=dtype)
    bias = torch.randn(shape[-1], generator=gen, dtype=dtype)
    torch.testing.assert_close(biasact.bias_relu(x, bias), torch.relu(x + bias))


def test_non_contiguous_input():
    x = torch.randn(6, 8).t()
    bias = torch.randn(6)
    torch.testing.assert_close(biasact.bias_relu(x, bias), torch.relu(x + bias))


def test_shape_mismatch_is_an_error():
    with pytest.raises(RuntimeError, match="last dimension"):
        biasact.bias_relu(torch.zeros(2, 3), torch.zeros(4))


def test_registered_as_a_torch_op():
    assert hasattr(torch.ops.biasact, "bias_relu")
    assert biasact._LIBRARY.endswith(".so")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_matches_torch():
    assert biasact.has_cuda_kernel(), "built without the CUDA kernel on a machine with a GPU"
    x = torch.randn(64, 129, device="cuda")
    bias = torch.randn(129, device="cuda")
    torch.testing.assert_close(biasact.bias_relu(x, bias), torch.relu(x + bias))
