"""max_pool3d / avg_pool3d and their backward passes against the naive twins (tests/naive.py) and
PyTorch (values, indices, gradients, errors)."""
import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import fastconv
from tests import naive

# (input shape, kwargs) for max pooling; awkward cases on purpose
MAX_CASES = [
    ((2, 3, 4, 6, 5), {"kernel_size": 2}),
    ((1, 2, 5, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 1, 5, 5, 5), {"kernel_size": (1, 2, 3), "stride": (1, 3, 1)}),
    ((1, 2, 7, 6, 8), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((1, 2, 7, 8, 7), {"kernel_size": 2, "dilation": (2, 1, 3), "padding": 1}),
    ((2, 1, 4, 4, 4), {"kernel_size": 4}),  # window == input
    ((1, 2, 3, 5, 4), {"kernel_size": 1, "stride": 2}),  # stride > kernel
    ((1, 2, 6, 7, 5), {"kernel_size": (2, 3, 2), "stride": 1, "padding": (1, 1, 0),
                       "ceil_mode": True}),
]

AVG_CASES = [
    ((2, 3, 4, 6, 5), {"kernel_size": 2}),
    ((1, 2, 5, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 2, 5, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ((1, 2, 7, 6, 8), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((1, 2, 7, 6, 8), {"kernel_size": (2, 3, 3), "stride": 2, "padding": (1, 1, 0),
                       "ceil_mode": True, "count_include_pad": False}),
    ((1, 1, 5, 5, 5), {"kernel_size": (1, 2, 3), "stride": (1, 3, 1), "divisor_override": 5}),
    ((2, 1, 4, 4, 4), {"kernel_size": 4}),
]


def _case_id(case):
    return f"{case[0]}-{case[1]}"


def _data(shape, dtype):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)


def _tol(dtype):
    return dict(rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool3d_matches_naive(case, dtype):
    shape, kwargs = case
    x = _data(shape, dtype)
    values, indices = fastconv.max_pool3d(x, return_indices=True, **kwargs)
    expected_values, expected_indices = naive.max_pool3d(x, **kwargs)
    assert values.dtype == dtype and values.shape == expected_values.shape
    np.testing.assert_array_equal(values, expected_values.astype(dtype))
    np.testing.assert_array_equal(indices, expected_indices)
    grad = _data(values.shape, dtype)
    np.testing.assert_allclose(fastconv.max_pool3d_backward(grad, x, **kwargs),
                               naive.max_pool3d_backward(grad, x, **kwargs), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", AVG_CASES, ids=_case_id)
def test_avg_pool3d_matches_naive(case, dtype):
    shape, kwargs = case
    x = _data(shape, dtype)
    got = fastconv.avg_pool3d(x, **kwargs)
    expected = naive.avg_pool3d(x, **kwargs)
    assert got.dtype == dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    grad = _data(got.shape, dtype)
    np.testing.assert_allclose(fastconv.avg_pool3d_backward(grad, x, **kwargs),
                               naive.avg_pool3d_backward(grad, x, **kwargs), **_tol(dtype))


@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool3d_matches_torch(case):
    torch = pytest.importorskip("torch")
    shape, kwargs = case
    x = _data(shape, np.float64)
    x_t = torch.tensor(x, requires_grad=True)
    values_t, indices_t = torch.nn.functional.max_pool3d(x_t, return_indices=True, **kwargs)
    values, indices = fastconv.max_pool3d(x, return_indices=True, **kwargs)
    np.testing.assert_array_equal(values, values_t.detach().numpy())
    np.testing.assert_array_equal(indices, indices_t.numpy())
    grad = _data(values.shape, np.float64)
    values_t.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(fastconv.max_pool3d_backward(grad, x, **kwargs),
                               x_t.grad.numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("case", AVG_CASES, ids=_case_id)
def test_avg_pool3d_matches_torch(case):
    torch = pytest.importorskip("torch")
    shape, kwargs = case
    x = _data(shape, np.float64)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.avg_pool3d(x_t, **kwargs)
    np.testing.assert_allclose(fastconv.avg_pool3d(x, **kwargs), out_t.detach().numpy(),
                               rtol=1e-13, atol=1e-14)
    grad = _data(tuple(out_t.shape), np.float64)
    out_t.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(fastconv.avg_pool3d_backward(grad, x, **kwargs), x_t.grad.numpy(),
                               rtol=1e-13, atol=1e-14)


def test_max_pool3d_ties_nan_and_infinity():
    """Ties go to the first maximum in window order, a NaN takes over, -inf samples still win over
    the padding."""
    x = np.random.default_rng(4).integers(0, 3, (1, 2, 4, 5, 6)).astype(np.float64)
    x[0, 0, 1, 1, 1] = np.nan
    x[0, 1] = -np.inf
    kwargs = {"kernel_size": 3, "stride": 2, "padding": 1}
    values, indices = fastconv.max_pool3d(x, return_indices=True, **kwargs)
    expected_values, expected_indices = naive.max_pool3d(x, **kwargs)
    np.testing.assert_array_equal(values, expected_values)  # NaN == NaN for this assertion
    np.testing.assert_array_equal(indices, expected_indices)
    assert np.isnan(values[0, 0]).any() and (values[0, 1] == -np.inf).all()
    assert (indices >= 0).all()


def test_unbatched_empty_batch_and_dtypes():
    x = _data((2, 4, 5, 6), np.float32)  # unbatched (C, D, H, W)
    out = fastconv.avg_pool3d(x, 2)
    assert out.shape == (2, 2, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, naive.avg_pool3d(x[None], 2)[0], rtol=1e-6)
    grad = fastconv.max_pool3d_backward(np.ones(out.shape, np.float32), x, 2)
    assert grad.shape == x.shape and grad.sum() == out.size
    empty = np.zeros((0, 2, 4, 5, 6))
    assert fastconv.max_pool3d(empty, 2).shape == (0, 2, 2, 2, 3)
    assert fastconv.avg_pool3d_backward(np.zeros((0, 2, 2, 2, 3)), empty, 2).shape == empty.shape
    assert fastconv.max_pool3d(np.ones((1, 1, 2, 2, 2), np.int32), 2).dtype == np.float64


@pytest.mark.parametrize("function, shape, kwargs, error, message", [
    ("max_pool3d", (2, 3, 4), {"kernel_size": 2}, ValueError, r"input must be 5-D.*\(2, 3, 4\)"),
    ("avg_pool3d", (1, 1, 4, 4, 4), {"kernel_size": (2, 2)}, ValueError, r"kernel_size.*3-tuple"),
    ("max_pool3d", (1, 1, 4, 4, 4), {"kernel_size": 0}, ValueError, r"kernel_size must be positive"),
    ("max_pool3d", (1, 1, 4, 4, 4), {"kernel_size": 2, "stride": 0}, ValueError, r"stride"),
    ("avg_pool3d", (1, 1, 4, 4, 4), {"kernel_size": 2, "padding": 2}, ValueError,
     r"padding .* at most half"),
    ("max_pool3d", (1, 1, 4, 4, 4), {"kernel_size": 2, "padding": -1}, ValueError, r"padding"),
    ("max_pool3d", (1, 1, 2, 4, 4), {"kernel_size": 3}, ValueError, r"too small"),
    ("max_pool3d", (1, 0, 4, 4, 4), {"kernel_size": 2}, ValueError, r"must not be empty"),
    ("avg_pool3d", (1, 1, 4, 4, 4), {"kernel_size": 2, "divisor_override": 0}, ValueError,
     r"divisor_override"),
    ("max_pool3d", (1, 1, 4, 4, 4), {"kernel_size": 2, "ceil_mode": 1}, TypeError, r"ceil_mode"),
    ("max_pool3d", (1, 1, 4, 4, 4), {"kernel_size": 2.0}, TypeError, r"kernel_size"),
])
def test_bad_input_is_a_clear_error(function, shape, kwargs, error, message):
    with pytest.raises(error, match=message):
        getattr(fastconv, function)(np.ones(shape), **kwargs)
    with pytest.raises(error, match=message):
        getattr(fastconv, function + "_backward")(np.ones((1,)), np.ones(shape), **kwargs)


def test_bad_gradient_and_dtype():
    x = np.ones((1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"grad_output has shape \(1, 1, 2, 2\).*\(1, 1, 2, 2, 2\)"):
        fastconv.avg_pool3d_backward(np.ones((1, 1, 2, 2)), x, 2)
    with pytest.raises(TypeError, match="max_pool3d: input is complex"):
        fastconv.max_pool3d(x.astype(complex), 2)


@st.composite
def pool3d_problems(draw, with_dilation):
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(3))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(3))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(3)) if with_dilation else (1, 1, 1)
    size = tuple(d * (k - 1) + 1 - 2 * p + draw(st.integers(0, 3))
                 for k, p, d in zip(kernel, padding, dilation))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + tuple(max(1, n) for n in size)
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding,
                  ceil_mode=draw(st.booleans()))
    if with_dilation:
        kwargs["dilation"] = dilation
    return shape, kwargs


@settings(max_examples=40)
@given(problem=pool3d_problems(with_dilation=True), seed=st.integers(0, 2**32 - 1))
def test_property_max_pool3d(problem, seed):
    shape, kwargs = problem
    note(f"{shape} {kwargs}")
    x = np.random.default_rng(seed).integers(-3, 4, shape).astype(np.float64)  # ties on purpose
    values, indices = fastconv.max_pool3d(x, return_indices=True, **kwargs)
    expected_values, expected_indices = naive.max_pool3d(x, **kwargs)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)
    grad = np.random.default_rng(seed + 1).standard_normal(values.shape)
    np.testing.assert_allclose(fastconv.max_pool3d_backward(grad, x, **kwargs),
                               naive.max_pool3d_backward(grad, x, **kwargs), rtol=1e-13,
                               atol=1e-14)


@settings(max_examples=40)
@given(problem=pool3d_problems(with_dilation=False), seed=st.integers(0, 2**32 - 1),
       count_include_pad=st.booleans(), divisor_override=st.sampled_from([None, 1, 7]))
def test_property_avg_pool3d(problem, seed, count_include_pad, divisor_override):
    shape, kwargs = problem
    kwargs = dict(kwargs, count_include_pad=count_include_pad, divisor_override=divisor_override)
    note(f"{shape} {kwargs}")
    x = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_allclose(fastconv.avg_pool3d(x, **kwargs), naive.avg_pool3d(x, **kwargs),
                               rtol=1e-13, atol=1e-14)
    grad = np.random.default_rng(seed + 1).standard_normal(fastconv.avg_pool3d(x, **kwargs).shape)
    np.testing.assert_allclose(fastconv.avg_pool3d_backward(grad, x, **kwargs),
                               naive.avg_pool3d_backward(grad, x, **kwargs), rtol=1e-13,
                               atol=1e-14)


def test_small_3d_network_matches_torch():
    """Conv3D -> ReLU -> MaxPool3D -> AvgPool3D -> Flatten -> Linear in fastconv.nn against the same
    network in PyTorch with copied parameters: output, input gradient, parameter gradients."""
    torch = pytest.importorskip("torch")
    from fastconv import nn
    model = nn.Sequential(nn.Conv3D(2, 4, 3, padding=1, dtype=np.float64, rng=0), nn.ReLU(),
                          nn.MaxPool3D(2), nn.AvgPool3D((1, 2, 2), ceil_mode=True), nn.Flatten(),
                          nn.Linear(4 * 2 * 1 * 2, 3, dtype=np.float64, rng=1))
    conv, linear = model.layers[0], model.layers[-1]
    reference = torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1, dtype=torch.float64), torch.nn.ReLU(),
        torch.nn.MaxPool3d(2), torch.nn.AvgPool3d((1, 2, 2), ceil_mode=True), torch.nn.Flatten(),
        torch.nn.Linear(16, 3, dtype=torch.float64))
    with torch.no_grad():
        for ours, theirs in ((conv, reference[0]), (linear, reference[5])):
            theirs.weight.copy_(torch.from_numpy(ours.weights))
            theirs.bias.copy_(torch.from_numpy(ours.bias))
    x = np.random.default_rng(3).standard_normal((2, 2, 4, 5, 6))
    x_t = torch.tensor(x, requires_grad=True)
    out_t = reference(x_t)
    out = model.forward(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    grad = np.random.default_rng(4).standard_normal(out.shape)
    out_t.backward(torch.from_numpy(grad))
    grad_input = model.backward(grad)
    np.testing.assert_allclose(grad_input, x_t.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grad_w, reference[0].weight.grad.numpy(), rtol=1e-11,
                               atol=1e-12)
    np.testing.assert_allclose(conv.grad_b, reference[0].bias.grad.numpy(), rtol=1e-11, atol=1e-12)
    with pytest.raises(ValueError, match=r"MaxPool3D expects input of shape \(N, C, D, H, W\)"):
        nn.MaxPool3D(2).forward(x[0])
