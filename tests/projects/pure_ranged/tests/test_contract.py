import pytest
import shapecheck
import torch


@shapecheck.contract(x="b, n", w="n, m")
def project(x, w):
    return x @ w


def test_matching_shapes_pass_through():
    x, w = torch.randn(2, 3), torch.randn(3, 4)
    torch.testing.assert_close(project(x, w), x @ w)


def test_inconsistent_dimension_is_named():
    with pytest.raises(shapecheck.ShapeError, match="n is 5, but 3 elsewhere"):
        project(torch.randn(2, 3), torch.randn(5, 4))


def test_rank_and_dtype():
    @shapecheck.contract(points="n, 3: float32")
    def centroid(points):
        return points.mean(0)

    assert centroid(torch.ones(4, 3)).shape == (3,)
    with pytest.raises(shapecheck.ShapeError, match="dimension 3 expected"):
        centroid(torch.ones(4, 2))
    with pytest.raises(shapecheck.ShapeError, match="dtype float32 expected"):
        centroid(torch.ones(4, 3, dtype=torch.float64))


def test_unknown_parameter_is_refused():
    with pytest.raises(TypeError, match="unknown parameters"):
        shapecheck.contract(y="n")(lambda x: x)


def test_torch_version_helper():
    assert shapecheck.torch_at_least("2.4")
    assert not shapecheck.torch_at_least("99.0")
