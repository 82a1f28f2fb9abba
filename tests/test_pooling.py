"""Pooling forward and backward: against the naive twins, torch autograd, finite differences;
PyTorch's ceil_mode / padding rules; bad inputs."""
import numpy as np
import pytest

import fastconv
from tests import naive
from tests.nn_gradcheck import numerical_gradient

# (input shape, kwargs) — awkward on purpose: 1x1, window == input, odd sizes, stride > kernel,
# padding, dilation, ceil_mode edge windows, batch 1, unbatched.
MAX_CASES = [
    ((2, 3, 8, 8), {"kernel_size": 2}),
    ((1, 2, 9, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 2, 9, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 1, 7, 7), {"kernel_size": 1}),
    ((1, 2, 5, 6), {"kernel_size": (5, 6)}),  # window == input
    ((2, 1, 10, 9), {"kernel_size": 2, "stride": 3}),  # stride > kernel
    ((1, 2, 10, 9), {"kernel_size": 2, "stride": 3, "ceil_mode": True}),
    ((1, 2, 11, 10), {"kernel_size": (2, 3), "stride": (3, 1), "dilation": 2, "padding": 1,
                      "ceil_mode": True}),
    ((1, 1, 12, 12), {"kernel_size": 3, "dilation": (3, 2)}),
    ((3, 7, 7), {"kernel_size": 2, "stride": 1, "padding": 1}),  # unbatched
    # the 2x2 / stride 2 kernels (fastconv._pool_tiles): odd sizes leave a row and a column out
    ((2, 3, 9, 7), {"kernel_size": 2, "stride": 2}),
    ((1, 5, 6), {"kernel_size": 2}),
    ((1, 2, 7, 9), {"kernel_size": 2, "ceil_mode": True}),  # an edge window: the general kernel
]
AVG_CASES = [
    (shape, {k: v for k, v in kwargs.items() if k != "dilation"}) for shape, kwargs in MAX_CASES
] + [((1, 2, 7, 8), {"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True})]
LP_CASES = [
    ((2, 3, 8, 8), {"kernel_size": 2}),
    ((1, 2, 9, 11), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((1, 1, 10, 9), {"kernel_size": (2, 3), "stride": (3, 1)}),
    ((2, 5, 5), {"kernel_size": 5}),
]


def _ids(case):
    shape, kwargs = case
    return f"x{shape}-" + ",".join(f"{k}={v}" for k, v in kwargs.items())


def _grad_for(out, rng):
    return rng.standard_normal(out.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", MAX_CASES, ids=_ids)
def test_max_pool_matches_naive(case, dtype, rng):
    shape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    out, indices = fastconv.max_pool2d(x, return_indices=True, **kwargs)
    exact, exact_indices = naive.max_pool2d(x, return_indices=True, **kwargs)
    assert out.dtype == dtype and indices.dtype == np.int64
    np.testing.assert_array_equal(out, exact.astype(dtype))
    np.testing.assert_array_equal(indices, exact_indices)
    grad = _grad_for(out, rng).astype(dtype)
    got = fastconv.max_pool2d_backward(grad, x, **kwargs)
    assert got.shape == x.shape and got.dtype == dtype
    want = naive.max_pool2d_backward(grad, x, **kwargs)
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"count_include_pad": False}, {"divisor_override": 3}])
@pytest.mark.parametrize("case", AVG_CASES, ids=_ids)
def test_avg_pool_matches_naive(case, options, dtype, rng):
    shape, kwargs = case
    kwargs = {**kwargs, **options}
    x = rng.standard_normal(shape).astype(dtype)
    out = fastconv.avg_pool2d(x, **kwargs)
    exact = naive.avg_pool2d(x, **kwargs)
    magnitude = naive.avg_pool2d(np.abs(x), **kwargs)
    tolerance = 16 * np.finfo(dtype).eps
    assert out.dtype == dtype and out.shape == exact.shape
    assert np.all(np.abs(out - exact) <= tolerance * magnitude + np.finfo(dtype).tiny)
    grad = _grad_for(out, rng).astype(dtype)
    got = fastconv.avg_pool2d_backward(grad, x, **kwargs)
    want = naive.avg_pool2d_backward(grad, x, **kwargs)
    scale = naive.avg_pool2d_backward(np.abs(grad), x, **kwargs)
    assert got.dtype == dtype
    assert np.all(np.abs(got - want) <= tolerance * scale + np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [1, 2, 3, 1.5])
@pytest.mark.parametrize("case", LP_CASES, ids=_ids)
def test_lp_pool_matches_naive(case, norm_type, dtype, rng):
    shape, kwargs = case
    x = rng.standard_normal(shape)
    if norm_type not in (1, 2):  # odd or fractional powers of negative numbers are NaN by definition
        x = np.abs(x) + 0.1
    x = x.astype(dtype)
    out = fastconv.lp_pool2d(x, norm_type, **kwargs)
    exact = naive.lp_pool2d(x, norm_type, **kwargs)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert out.dtype == dtype
    np.testing.assert_allclose(out, exact, rtol=rtol, atol=rtol)
    grad = _grad_for(out, rng).astype(dtype)
    got = fastconv.lp_pool2d_backward(grad, x, norm_type, **kwargs)
    want = naive.lp_pool2d_backward(grad, x, norm_type, **kwargs)
    np.testing.assert_allclose(got, want, rtol=rtol * 10, atol=rtol * 10)


def _torch_check(torch_fn, fast_fwd, fast_bwd, x, rng, **kwargs):
    torch = pytest.importorskip("torch")
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch_fn(x_t, **kwargs)
    grad = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(torch.tensor(grad))
    np.testing.assert_allclose(fast_fwd(x, **kwargs), out_t.detach().numpy(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(fast_bwd(grad, x, **kwargs), x_t.grad.numpy(), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("case", MAX_CASES, ids=_ids)
def test_max_pool_matches_torch(case, rng):
    torch = pytest.importorskip("torch")
    shape, kwargs = case
    x = rng.standard_normal(shape)
    x[..., 1, :] = x[..., 0, :]  # ties: the first maximum in window order wins
    _torch_check(torch.nn.functional.max_pool2d, fastconv.max_pool2d, fastconv.max_pool2d_backward,
                 x, rng, **kwargs)
    _, indices = fastconv.max_pool2d(x, return_indices=True, **kwargs)
    _, torch_indices = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(indices, torch_indices.numpy())


@pytest.mark.parametrize("options", [{}, {"count_include_pad": False}, {"divisor_override": 5}])
@pytest.mark.parametrize("case", AVG_CASES, ids=_ids)
def test_avg_pool_matches_torch(case, options, rng):
    torch = pytest.importorskip("torch")
    shape, kwargs = case
    _torch_check(torch.nn.functional.avg_pool2d, fastconv.avg_pool2d, fastconv.avg_pool2d_backward,
                 rng.standard_normal(shape), rng, **kwargs, **options)


@pytest.mark.parametrize("norm_type", [1, 2, 3, 1.5, float("inf"), -float("inf")])
@pytest.mark.parametrize("case", LP_CASES, ids=_ids)
def test_lp_pool_matches_torch(case, norm_type, rng):
    torch = pytest.importorskip("torch")
    shape, kwargs = case
    x = rng.standard_normal(shape)
    if norm_type in (3, 1.5):
        x = np.abs(x) + 0.1
    _torch_check(lambda t, **k: torch.nn.functional.lp_pool2d(t, norm_type, **k),
                 lambda a, **k: fastconv.lp_pool2d(a, norm_type, **k),
                 lambda g, a, **k: fastconv.lp_pool2d_backward(g, a, norm_type, **k),
                 x, rng, **kwargs)


def test_max_pool_nan_and_padding_semantics(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((1, 1, 6, 6))
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 4:, 4:] = -np.inf  # a window of -inf (padding must not win over it)
    got, indices = fastconv.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    want, want_indices = torch.nn.functional.max_pool2d(torch.tensor(x), 3, stride=2, padding=1,
                                                        return_indices=True)
    np.testing.assert_array_equal(got, want.numpy())  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(indices, want_indices.numpy())
    assert np.isnan(got[0, 0, 0, :2]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_2x2_max_pool_special_values_match_torch_and_the_general_kernel(dtype, rng):
    """The 2x2 kernels' selects must keep PyTorch's rules exactly: ties to the first in window
    order, a NaN always takes over (the last NaN wins), -inf windows, +inf, and an odd last row/column out of every window."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
    x[0, 0, 0, :4] = [1.0, 1.0, np.nan, 2.0]  # tie; NaN after a larger value
    x[0, 0, 1, :4] = [1.0, np.nan, 5.0, np.nan]  # two NaN in one window: the last wins
    x[0, 1, 2:4, 2:4] = -np.inf
    x[1, 2, 4:6, 6:8] = [[np.inf, 3.0], [np.inf, -np.inf]]
    x[1, 0, 6:8, 0:2] = [[0.0, -0.0], [-0.0, 0.0]]
    got, indices = fastconv.max_pool2d(x, 2, return_indices=True)
    want, want_indices = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_array_equal(indices, want_indices.numpy())
    exact, exact_indices = naive.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(got, exact)
    np.testing.assert_array_equal(indices, exact_indices)
    grad = rng.standard_normal(got.shape).astype(dtype)
    x_t = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(x_t, 2).backward(torch.tensor(grad))
    np.testing.assert_array_equal(fastconv.max_pool2d_backward(grad, x, 2), x_t.grad.numpy())
    # no-indices forward takes a different (plain max) route: same values, NaN included
    np.testing.assert_array_equal(fastconv.max_pool2d(x, 2), want.numpy())


FD_CASES = [
    ("max", {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 1, "ceil_mode": True}),
    ("max", {"kernel_size": 2, "stride": 3, "dilation": 2}),
    ("avg", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg", {"kernel_size": 2, "stride": 3, "count_include_pad": False}),
    ("avg", {"kernel_size": (3, 2), "padding": (1, 1), "divisor_override": 4}),
    ("lp", {"norm_type": 2, "kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ("lp", {"norm_type": 1.5, "kernel_size": 2, "stride": 3}),
]


@pytest.mark.parametrize("kind,kwargs", FD_CASES)
def test_finite_differences(kind, kwargs, rng):
    x = rng.standard_normal((2, 2, 7, 8))
    if kind == "lp":
        x = np.abs(x) + 0.5
        norm_type = kwargs.pop("norm_type")
        forward = lambda a: fastconv.lp_pool2d(a, norm_type, **kwargs)  # noqa: E731
        backward = lambda g, a: fastconv.lp_pool2d_backward(g, a, norm_type, **kwargs)  # noqa
    else:
        forward = lambda a: getattr(fastconv, f"{kind}_pool2d")(a, **kwargs)  # noqa: E731
        backward = lambda g, a: getattr(fastconv, f"{kind}_pool2d_backward")(g, a, **kwargs)  # noqa
    probe = rng.standard_normal(forward(x).shape)
    got = backward(probe, x)
    numeric = numerical_gradient(lambda: np.sum(probe * forward(x)), x)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)


def test_ceil_mode_follows_pytorch_rule():
    # H=5, k=2, s=2, p=1: ceil gives 4 windows, but the 4th would start at 5 = H + p (right
    # padding), so PyTorch drops it.
    x = np.zeros((1, 1, 5, 5))
    assert fastconv.max_pool2d(x, 2, 2, padding=1, ceil_mode=True).shape == (1, 1, 3, 3)
    assert fastconv.avg_pool2d(np.zeros((1, 1, 6, 6)), 4, 3, ceil_mode=True).shape == (1, 1, 2, 2)


def test_inputs_untouched_noncontiguous_readonly(rng):
    x = np.asfortranarray(rng.standard_normal((2, 3, 9, 8)))[:, :, ::-1]
    x.flags.writeable = False
    copy = x.copy()
    out = fastconv.max_pool2d(x, 2)
    grad = rng.standard_normal(out.shape)[..., ::-1].copy()[..., ::-1]
    np.testing.assert_array_equal(out, naive.max_pool2d(x, 2))
    np.testing.assert_array_equal(fastconv.max_pool2d_backward(grad, x, 2),
                                  naive.max_pool2d_backward(grad, x, 2))
    np.testing.assert_allclose(fastconv.avg_pool2d_backward(grad, x, 2),
                               naive.avg_pool2d_backward(grad, x, 2), rtol=1e-15)
    np.testing.assert_array_equal(x, copy)


def test_bad_arguments(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    with pytest.raises(ValueError, match="at most half"):
        fastconv.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="at most half"):
        fastconv.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="too small"):
        fastconv.max_pool2d(x, 7)
    with pytest.raises(ValueError, match="4-D"):
        fastconv.avg_pool2d(np.zeros((6, 6)), 2)
    with pytest.raises(ValueError, match="kernel_size"):
        fastconv.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="divisor_override"):
        fastconv.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="norm_type"):
        fastconv.lp_pool2d(x, 0, 2)
    with pytest.raises(ValueError, match=r"grad_output has shape \(1, 2, 3, 2\)"):
        fastconv.max_pool2d_backward(np.zeros((1, 2, 3, 2)), x, 2)
    with pytest.raises(ValueError, match="grad_output has shape"):
        fastconv.avg_pool2d_backward(np.zeros((2, 3, 3)), x, 2)
    with pytest.raises(ValueError, match="grad_output has shape"):
        fastconv.lp_pool2d_backward(np.zeros((1, 2, 4, 4)), x, 2, 2)
    with pytest.raises(TypeError):
        fastconv.max_pool2d(x.astype(complex), 2)
