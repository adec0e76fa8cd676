import pairwise_ext
import pytest
import torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "m", "d"), [(1, 1, 1), (5, 7, 3), (40, 9, 16)])
def test_matches_cdist(n, m, d, dtype):
    gen = torch.Generator().manual_seed(n * 1000 + m * 10 + d)
    a = torch.randn(n, d, generator=gen, dtype=dtype)
    b = torch.randn(m, d, generator=gen, dtype=dtype)
    expected = torch.cdist(a, b).pow(2)
    torch.testing.assert_close(pairwise_ext.pairwise_sq_dist(a, b), expected,
                               rtol=1e-4, atol=1e-5)


def test_column_mismatch_is_an_error():
    with pytest.raises(RuntimeError, match="differ in columns"):
        pairwise_ext.pairwise_sq_dist(torch.zeros(2, 3), torch.zeros(2, 4))


def test_built_against_the_running_torch():
    assert pairwise_ext.__torch_build_version__ == torch.__version__.split("+")[0]


def test_module_is_per_python():
    import sys

    suffix = f".cpython-{sys.version_info[0]}{sys.version_info[1]}-"
    assert suffix in pairwise_ext._C.__file__, pairwise_ext._C.__file__
