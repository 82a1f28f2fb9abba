"""weighted_avg_pool2d and its backward: naive twin, sigma -> inf limit, Jacobian, bad input."""
import numpy as np
import pytest

import fastconv
from fastconv.weighted_pooling import gaussian_weights
from tests import naive
from tests.tolerances import assert_matches

# (input shape, kernel_size, stride, padding, sigma)
CASES = [
    ((2, 3, 9, 11), 3, None, 0, 1.0),
    ((1, 1, 7, 7), 1, None, 0, 0.5),                 # 1x1 window
    ((1, 2, 8, 9), 3, 1, 1, (0.7, 2.0)),
    ((2, 2, 10, 10), (2, 3), (2, 1), (1, 1), 1.5),
    ((1, 2, 9, 9), 2, 4, 0, 1.0),                    # stride > kernel
    ((1, 1, 5, 5), 5, 1, 2, 1.2),                    # kernel == input
    ((1, 1, 4, 4), 6, 1, 3, 2.0),                    # kernel > input, fits with padding
    ((3, 2, 13, 7), (5, 1), (3, 1), (2, 0), float("inf")),
]


def _case_id(case):
    shape, kernel, stride, padding, sigma = case
    return f"x{shape}-k{kernel}-s{stride}-p{padding}-sigma{sigma}"


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_matches_naive(case, dtype, count_include_pad, rng):
    shape, kernel, stride, padding, sigma = case
    x = rng.standard_normal(shape).astype(dtype)
    got = fastconv.weighted_avg_pool2d(x, kernel, stride, padding, sigma,
                                       count_include_pad=count_include_pad)
    assert got.dtype == dtype and got.flags.c_contiguous
    exact = naive.weighted_avg_pool2d(x, kernel, stride, padding, sigma, count_include_pad)
    magnitude = naive.weighted_avg_pool2d(np.abs(x), kernel, stride, padding, sigma, count_include_pad)
    assert got.shape == exact.shape
    assert_matches(got, exact, magnitude, dtype, "direct")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backward_is_the_transposed_jacobian(case, count_include_pad, rng):
    """The operator is linear: its Jacobian's columns are the naive twin applied to unit images."""
    shape, kernel, stride, padding, sigma = case
    shape = (1, 1) + shape[2:]
    size = int(np.prod(shape))
    jacobian = np.stack([
        naive.weighted_avg_pool2d(np.eye(size)[i].reshape(shape), kernel, stride, padding, sigma,
                                  count_include_pad).ravel()
        for i in range(size)
    ], axis=1)
    grad_out = rng.standard_normal(naive.weighted_avg_pool2d(np.zeros(shape), kernel, stride, padding,
                                                             sigma, count_include_pad).shape)
    got = fastconv.weighted_avg_pool2d_backward(grad_out, np.zeros(shape), kernel, stride, padding,
                                                sigma, count_include_pad=count_include_pad)
    np.testing.assert_allclose(got.ravel(), jacobian.T @ grad_out.ravel(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_infinite_sigma_is_avg_pool2d(kernel, stride, padding, count_include_pad, rng):
    x = rng.standard_normal((2, 3, 9, 8))
    expected = fastconv.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad)
    np.testing.assert_allclose(
        expected, naive.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad),
        rtol=1e-13, atol=1e-14,
    )
    exact_limit = fastconv.weighted_avg_pool2d(x, kernel, stride, padding, sigma=np.inf,
                                               count_include_pad=count_include_pad)
    np.testing.assert_allclose(exact_limit, expected, rtol=1e-13, atol=1e-14)
    large_sigma = fastconv.weighted_avg_pool2d(x, kernel, stride, padding, sigma=1e4,
                                               count_include_pad=count_include_pad)
    np.testing.assert_allclose(large_sigma, expected, rtol=1e-6, atol=1e-7)
    # ...and the gradient tends to avg_pool2d's
    grad_out = rng.standard_normal(expected.shape)
    grad_wide = fastconv.weighted_avg_pool2d_backward(grad_out, x, kernel, stride, padding, np.inf,
                                                      count_include_pad=count_include_pad)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    pooled = torch.nn.functional.avg_pool2d(tx, kernel, stride, padding,
                                            count_include_pad=count_include_pad)
    pooled.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(exact_limit, pooled.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad_wide, tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_small_sigma_picks_the_centre_pixel(rng):
    x = rng.standard_normal((1, 2, 6, 7))
    np.testing.assert_allclose(fastconv.weighted_avg_pool2d(x, 3, 1, 1, sigma=0.05), x, rtol=1e-12)


def test_weights_are_a_normalised_centred_gaussian():
    window = gaussian_weights((5, 3), sigma=(1.0, 2.0))
    assert window.shape == (5, 3)
    assert abs(window.sum() - 1) < 1e-15
    np.testing.assert_allclose(window, window[::-1, ::-1])  # symmetric about the centre
    assert window.argmax() == np.ravel_multi_index((2, 1), (5, 3))
    np.testing.assert_allclose(window[1, 1] / window[2, 1], np.exp(-0.5))  # one sigma_h away


def test_unbatched_non_contiguous_read_only(rng):
    base = rng.standard_normal((3, 14, 9)).astype(np.float32)
    x = base[:, ::2, :]
    x.flags.writeable = False
    before = x.copy()
    got = fastconv.weighted_avg_pool2d(x, 3, 2, 1, 0.8)
    assert got.shape == (3, 4, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, naive.weighted_avg_pool2d(x, 3, 2, 1, 0.8), rtol=2e-6, atol=1e-6)
    grad = fastconv.weighted_avg_pool2d_backward(np.ones_like(got), x, 3, 2, 1, 0.8)
    assert grad.shape == x.shape and grad.dtype == np.float32
    np.testing.assert_array_equal(x, before)


def test_nan_propagates_only_to_windows_that_see_it(rng):
    x = rng.standard_normal((1, 1, 8, 8))
    x[0, 0, 0, 0] = np.nan
    out = fastconv.weighted_avg_pool2d(x, 2, 2)
    assert np.isnan(out[0, 0, 0, 0]) and np.isfinite(out[0, 0].ravel()[1:]).all()


@pytest.mark.parametrize("kwargs,error,match", [
    ({"kernel_size": 3, "padding": 2}, ValueError, "half of kernel_size"),
    ({"kernel_size": 3, "sigma": 0.0}, ValueError, "sigma"),
    ({"kernel_size": 3, "sigma": float("nan")}, ValueError, "sigma"),
    ({"kernel_size": 3, "sigma": True}, TypeError, "sigma"),
    ({"kernel_size": 3, "sigma": (1.0, 2.0, 3.0)}, ValueError, "sigma"),
    ({"kernel_size": 9}, ValueError, "larger than the padded"),
    ({"kernel_size": 0}, ValueError, "kernel_size"),
    ({"kernel_size": 2, "stride": 0}, ValueError, "stride"),
    ({"kernel_size": 2, "count_include_pad": "yes"}, TypeError, "count_include_pad"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastconv.weighted_avg_pool2d(np.zeros((1, 2, 6, 6)), **kwargs)


def test_backward_checks_grad_output_shape():
    with pytest.raises(ValueError, match="grad_output"):
        fastconv.weighted_avg_pool2d_backward(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 6, 6)), 2)
