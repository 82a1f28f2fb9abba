"""conv2d_backward and conv_transpose2d: every backend against the naive twin, torch autograd,
and float64 finite differences; bad grad_output shapes."""
import numpy as np
import pytest

import fastconv
from tests import naive
from tests.nn_gradcheck import numerical_gradient
from tests.test_conv2d import CASES, _case_id
from tests.tolerances import assert_gradient_matches

BACKENDS = ["direct", "im2col", "fft"]


def _problem(case, dtype, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    out_shape = naive.conv2d(x, w, **kwargs).shape
    grad = rng.standard_normal(out_shape).astype(dtype)
    return x, w, grad, kwargs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backward_matches_naive(case, backend, dtype, rng):
    x, w, grad, kwargs = _problem(case, dtype, rng)
    got = fastconv.conv2d_backward(grad, x, w, algorithm=backend, **kwargs)
    exact = naive.conv2d_backward(grad, x, w, **kwargs)
    magnitude = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w), **kwargs)
    bound_backend = "fft" if backend == "auto" else backend
    for name, value, want, scale, like in zip(("input", "weight", "bias"), got, exact, magnitude,
                                              (x, w, grad[:, :, 0, 0][0])):
        assert value.dtype == dtype and value.flags.c_contiguous, name
        assert value.shape == like.shape, name
        assert_gradient_matches(value, want, scale, dtype, bound_backend, what=f"grad_{name}")


TORCH_CASES = [CASES[i] for i in (0, 3, 7, 9, 12, 15, 17, 20, 23, 24, 25, 27)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=_case_id)
def test_backward_matches_torch_autograd(case, backend, rng):
    torch = pytest.importorskip("torch")
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[0])
    x_t, w_t, b_t = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = torch.nn.Conv2d(shape[1], wshape[0], wshape[2:], bias=True, dtype=torch.float64,
                          **kwargs)._conv_forward(x_t, w_t, b_t)
    grad = rng.standard_normal(tuple(out.shape))
    out.backward(torch.tensor(grad))
    got = fastconv.conv2d_backward(grad, x, w, algorithm=backend, **kwargs)
    for value, want in zip(got, (x_t.grad, w_t.grad, b_t.grad)):
        np.testing.assert_allclose(value, want.numpy(), rtol=1e-10, atol=1e-11)


GRADCHECK_CASES = [
    ((1, 2, 5, 6), (2, 2, 3, 2), {"stride": 2, "padding": 1}),
    ((2, 2, 6, 6), (2, 1, 2, 2), {"groups": 2, "stride": 3}),  # stride > kernel
    ((1, 1, 7, 6), (1, 1, 2, 2), {"dilation": 2, "padding": (1, 2)}),
    ((1, 2, 5, 5), (1, 2, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((1, 1, 5, 4), (2, 1, 3, 3), {"padding": (2, 1), "padding_mode": "circular"}),
    ((1, 1, 4, 5), (1, 1, 2, 3), {"padding": 1, "padding_mode": "replicate"}),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=_case_id)
def test_backward_finite_differences(case, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[0])
    probe = rng.standard_normal(fastconv.conv2d(x, w, **kwargs).shape)

    def loss():  # <probe, conv2d(x, w, b)>: its gradient w.r.t. the output is ``probe``
        return float(np.sum(probe * fastconv.conv2d(x, w, b, algorithm="direct", **kwargs)))

    grad_x, grad_w, grad_b = fastconv.conv2d_backward(probe, x, w, **kwargs)
    np.testing.assert_allclose(grad_x, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_w, numerical_gradient(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_b, numerical_gradient(loss, b), rtol=1e-6, atol=1e-7)


def test_input_gradient_is_the_flipped_full_convolution(rng):
    """The notes' derivation: stride 1, no padding: grad_input = full convolution of grad_output
    with the kernel rotated 180 degrees (their NumPy code forgot the flip)."""
    import scipy.signal

    x = rng.standard_normal((1, 1, 6, 7))
    w = rng.standard_normal((1, 1, 3, 2))
    grad = rng.standard_normal((1, 1, 4, 6))
    grad_x, _, _ = fastconv.conv2d_backward(grad, x, w, needs=("input",))
    expected = scipy.signal.correlate2d(grad[0, 0], w[0, 0, ::-1, ::-1], mode="full")
    np.testing.assert_allclose(grad_x[0, 0], expected, rtol=1e-12, atol=1e-12)
    unflipped = scipy.signal.correlate2d(grad[0, 0], w[0, 0], mode="full")
    assert not np.allclose(grad_x[0, 0], unflipped)


def test_needs_selects_gradients_and_unbatched_works(rng):
    x = rng.standard_normal((3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    grad = rng.standard_normal((4, 8, 8))
    grad_x, grad_w, grad_b = fastconv.conv2d_backward(grad, x, w, padding=1, needs=("weight",))
    assert grad_x is None and grad_b is None
    exact = naive.conv2d_backward(grad, x, w, padding=1)
    np.testing.assert_allclose(grad_w, exact[1], rtol=1e-12, atol=1e-12)
    grad_x, grad_w, grad_b = fastconv.conv2d_backward(grad, x, w, padding=1, needs=["input", "bias"])
    assert grad_w is None and grad_x.shape == (3, 8, 8)
    np.testing.assert_allclose(grad_x, exact[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_b, exact[2], rtol=1e-12, atol=1e-12)
    assert fastconv.conv2d_backward(grad, x, w, padding=1, needs=()) == (None, None, None)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("needs", [("input",), ("weight",), ("weight", "bias")])
def test_each_gradient_alone_on_every_backend(backend, needs, rng):
    """conv2d_backward chooses each gradient's backend separately, so every backend must compute
    either gradient alone — including im2col's no-unfold path (8+ channels per group, stride 1)."""
    x = rng.standard_normal((2, 8, 9, 9))
    w = rng.standard_normal((6, 8, 3, 3))
    grad = rng.standard_normal((2, 6, 9, 9))
    got = fastconv.conv2d_backward(grad, x, w, padding=1, needs=needs, algorithm=backend)
    exact = naive.conv2d_backward(grad, x, w, padding=1)
    for name, value, want in zip(("input", "weight", "bias"), got, exact):
        if name in needs:
            np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-10)
        else:
            assert value is None


def test_inputs_untouched_noncontiguous_readonly(rng):
    x = np.asfortranarray(rng.standard_normal((2, 3, 9, 8)))
    w = rng.standard_normal((4, 3, 3, 3))[:, :, ::-1]
    grad = rng.standard_normal((2, 4, 16, 9)).transpose(0, 1, 3, 2)[:, :, :, ::2]
    for array in (x, w, grad):
        array.flags.writeable = False
    copies = [a.copy() for a in (x, w, grad)]
    for backend in BACKENDS:
        got = fastconv.conv2d_backward(grad, x, w, padding=1, algorithm=backend)
        exact = naive.conv2d_backward(grad, x, w, padding=1)
        for value, want in zip(got, exact):
            np.testing.assert_allclose(value, want, rtol=1e-11, atol=1e-11)
    for array, copy in zip((x, w, grad), copies):
        np.testing.assert_array_equal(array, copy)


def test_auto_keeps_nan_local(rng):
    """An FFT would smear one NaN over every gradient; auto must not pick it then."""
    x = rng.standard_normal((1, 2, 32, 32))
    w = rng.standard_normal((2, 2, 9, 9))
    grad = rng.standard_normal((1, 2, 24, 24))
    grad[0, 0, 0, 0] = np.nan
    grad_x, _, _ = fastconv.conv2d_backward(grad, x, w, needs=("input",))
    assert np.isnan(grad_x[0, :, :9, :9]).all()
    assert np.isfinite(grad_x[0, :, 9:, :]).all() and np.isfinite(grad_x[0, :, :, 9:]).all()


@pytest.mark.parametrize("bad_shape", [(2, 4, 8, 7), (2, 5, 8, 8), (1, 4, 8, 8), (4, 8, 8)])
def test_grad_output_shape_mismatch_is_a_clear_error(bad_shape, rng):
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"grad_output has shape .* forward output"):
        fastconv.conv2d_backward(np.zeros(bad_shape), x, w, padding=1)


def test_bad_arguments(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((2, 2, 3, 3))
    grad = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match="needs"):
        fastconv.conv2d_backward(grad, x, w, needs=("inputs",))
    with pytest.raises(ValueError, match="algorithm"):
        fastconv.conv2d_backward(grad, x, w, algorithm="winograd")
    with pytest.raises(ValueError, match="groups"):
        fastconv.conv2d_backward(grad, x, w, groups=3)


def test_separable_defers_to_another_backend(rng):
    x = rng.standard_normal((1, 2, 8, 8))
    w = rng.standard_normal((3, 2, 3, 3))
    grad = rng.standard_normal((1, 3, 6, 6))
    got = fastconv.conv2d_backward(grad, x, w, algorithm="separable")
    for value, want in zip(got, naive.conv2d_backward(grad, x, w)):
        np.testing.assert_allclose(value, want, rtol=1e-11, atol=1e-11)


# --- conv_transpose2d ---------------------------------------------------------------------------
TRANSPOSE_CASES = [
    ((2, 3, 5, 6), (3, 4, 3, 3), {}),
    ((1, 2, 4, 4), (2, 3, 1, 1), {}),
    ((1, 2, 5, 4), (2, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((1, 2, 4, 5), (2, 1, 2, 2), {"stride": 3}),  # stride > kernel: holes in the output
    ((1, 2, 4, 4), (2, 2, 3, 2), {"dilation": 2, "output_padding": 1}),  # output_padding < dilation
    ((2, 4, 3, 5), (4, 2, 3, 3), {"groups": 2, "stride": (2, 1), "padding": (2, 1)}),
    ((1, 4, 5, 5), (4, 1, 3, 3), {"groups": 4, "padding": 1}),  # depthwise
    ((1, 1, 2, 2), (1, 1, 5, 5), {"padding": 2}),  # kernel larger than input
    ((1, 2, 6, 6), (2, 2, 4, 4), {"stride": 2, "padding": 3, "output_padding": (1, 0)}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=_case_id)
def test_conv_transpose2d_matches_naive_and_torch(case, dtype, rng):
    shape, wshape, kwargs = case
    groups = kwargs.get("groups", 1)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[1] * groups).astype(dtype)
    got = fastconv.conv_transpose2d(x, w, b, **kwargs)
    assert got.dtype == dtype
    exact = naive.conv_transpose2d(x, w, b, **kwargs)
    magnitude = naive.conv_transpose2d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert got.shape == exact.shape
    assert_gradient_matches(got, exact, magnitude, dtype, "fft")
    torch = pytest.importorskip("torch")
    reference = torch.nn.functional.conv_transpose2d(
        torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
        torch.tensor(b, dtype=torch.float64), **kwargs)
    np.testing.assert_allclose(exact, reference.numpy(), rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_is_the_adjoint_of_conv2d(rng):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>: the defining property, checked with
    finite differences' cheaper cousin on a strided, dilated, grouped problem."""
    x = rng.standard_normal((2, 4, 11, 10))
    w = rng.standard_normal((6, 2, 3, 2))
    kwargs = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    y = rng.standard_normal(fastconv.conv2d(x, w, **kwargs).shape)
    out_shape = fastconv.conv_transpose2d(y, w, **kwargs).shape
    extra = (x.shape[2] - out_shape[2], x.shape[3] - out_shape[3])
    transposed = fastconv.conv_transpose2d(y, w, output_padding=extra, **kwargs)
    assert transposed.shape == x.shape
    np.testing.assert_allclose(np.vdot(fastconv.conv2d(x, w, **kwargs), y), np.vdot(x, transposed),
                               rtol=1e-12)


def test_conv_transpose2d_finite_differences(rng):
    x = rng.standard_normal((1, 2, 3, 4))
    w = rng.standard_normal((2, 2, 3, 2))
    kwargs = dict(stride=2, padding=1, output_padding=1)
    probe = rng.standard_normal(fastconv.conv_transpose2d(x, w, **kwargs).shape)
    # conv_transpose2d is linear in x: its gradient w.r.t. x is conv2d of the probe.
    grad_x = fastconv.conv2d(probe, w, stride=2, padding=1)

    def loss():
        return float(np.sum(probe * fastconv.conv_transpose2d(x, w, **kwargs)))

    np.testing.assert_allclose(grad_x, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)


def test_conv_transpose2d_unbatched_and_errors(rng):
    x = rng.standard_normal((2, 4, 4))
    w = rng.standard_normal((2, 3, 3, 3))
    got = fastconv.conv_transpose2d(x, w, stride=2)
    np.testing.assert_allclose(got, naive.conv_transpose2d(x, w, stride=2), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="output_padding must be smaller"):
        fastconv.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="input channels"):
        fastconv.conv_transpose2d(x, rng.standard_normal((3, 3, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        fastconv.conv_transpose2d(x, w, bias=np.zeros(4))
    with pytest.raises(ValueError, match="output would be"):
        fastconv.conv_transpose2d(x, w, padding=4)


@pytest.mark.parametrize("backend", ["im2col", "fft"])
def test_backward_in_workspace_chunks(backend, rng):
    """A tiny workspace cap forces im2col to work in row chunks and fft in sample chunks."""
    x = rng.standard_normal((3, 4, 40, 36))
    w = rng.standard_normal((6, 2, 3, 3))
    kwargs = dict(stride=(1, 2), padding=1, groups=2)
    grad = rng.standard_normal(fastconv.conv2d(x, w, **kwargs).shape)
    exact = naive.conv2d_backward(grad, x, w, **kwargs)
    saved = fastconv.get_workspace_limit()
    fastconv.set_workspace_limit(1 << 16)
    try:
        from fastconv._params import make_conv_params
        from fastconv.backends import im2col

        params = make_conv_params(x, w, None, **kwargs)[0]
        assert im2col.rows_per_chunk(params) < params.out_h  # the cap really splits the work
        got = fastconv.conv2d_backward(grad, x, w, algorithm=backend, **kwargs)
    finally:
        fastconv.set_workspace_limit(saved)
    for value, want in zip(got, exact):
        np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-10)


def test_backend_without_backward_pass_is_a_clear_error(rng):
    x = rng.standard_normal((1, 2, 8, 8))
    w = rng.standard_normal((3, 2, 3, 3))
    grad = np.ones((1, 3, 8, 8))
    with pytest.raises(ValueError, match="'winograd' has no backward pass"):
        fastconv.conv2d_backward(grad, x, w, padding=1, algorithm="winograd")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [
    {"padding": 1},
    {"padding": (2, 0), "dilation": (2, 1)},
    {"padding": "same", "groups": 2},
    {"padding": 1, "padding_mode": "circular"},
])
def test_im2col_shifted_taps_backward(kwargs, dtype, rng):
    """>= 8 channels per group and stride 1: im2col's no-unfold backward path."""
    x = rng.standard_normal((3, 16, 9, 10)).astype(dtype)
    w = rng.standard_normal((6, 16 // kwargs.get("groups", 1), 3, 3)).astype(dtype)
    grad = rng.standard_normal(naive.conv2d(x, w, **kwargs).shape).astype(dtype)
    got = fastconv.conv2d_backward(grad, x, w, algorithm="im2col", **kwargs)
    expected = naive.conv2d_backward(grad, x, w, **kwargs)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for got_part, expected_part in zip(got, expected):
        scale = np.max(np.abs(expected_part))
        np.testing.assert_allclose(got_part, expected_part, rtol=0, atol=rtol * scale)


def test_im2col_backward_with_nan_input_matches_the_definition(rng):
    """The no-unfold path multiplies dropped columns by zeros; on non-finite data the exact unfold
    path runs instead, so NaN lands only where the definition puts it."""
    x = rng.standard_normal((1, 8, 7, 7))
    x[0, 3, 0, 6] = np.nan  # right edge: read by the dropped columns of the no-unfold path
    w = rng.standard_normal((4, 8, 3, 3))
    grad = rng.standard_normal((1, 4, 5, 5))
    _, grad_w, _ = fastconv.conv2d_backward(grad, x, w, algorithm="im2col")
    _, expected_w, _ = naive.conv2d_backward(grad, x, w)
    np.testing.assert_array_equal(np.isnan(grad_w), np.isnan(expected_w))


@pytest.mark.parametrize("stride, padding", [(1, 1), (1, 2), (2, 1)])
def test_input_gradient_with_an_infinite_weight_matches_pytorch(stride, padding, rng):
    """``auto`` keeps the input gradient off direct's zero-framed correlation when a weight is
    infinite: 0 * Inf there would put NaN where the definition has no product at all."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((1, 2, 7, 7))
    w = rng.standard_normal((3, 2, 3, 3))
    w[1, 0, 0, 0] = np.inf
    grad = rng.standard_normal(torch.nn.functional.conv2d(
        torch.tensor(x), torch.tensor(w), stride=stride, padding=padding).shape)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.conv2d(tx, torch.tensor(w), stride=stride, padding=padding).backward(
        torch.tensor(grad))
    expected = tx.grad.numpy()
    got = fastconv.conv2d_backward(grad, x, w, stride=stride, padding=padding)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=1e-10)
    # conv_transpose2d is the same computation (the input gradient of this conv2d)
    transposed = fastconv.conv_transpose2d(grad, w, stride=stride, padding=padding)
    np.testing.assert_array_equal(np.isnan(transposed), np.isnan(expected))
    np.testing.assert_allclose(transposed[finite], expected[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride, padding, where", [(1, 0, (2, 6)), (1, 1, (6, 6)), (2, 1, (3, 6)),
                                                    (1, 0, (6, 0))])
def test_weight_gradient_with_an_infinite_input_matches_pytorch(stride, padding, where, rng):
    """``auto`` keeps the weight gradient off direct's widened output gradient when the input holds
    Inf: its zeros over the discarded columns meet the input's last columns (0 * Inf = NaN where
    the definition has no product); PyTorch's gradient is finite there."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 2, 7, 7))
    x[1, 1][where] = np.inf
    w = rng.standard_normal((3, 2, 3, 3))
    grad = rng.standard_normal(torch.nn.functional.conv2d(
        torch.tensor(x), torch.tensor(w), stride=stride, padding=padding).shape)
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(torch.tensor(x), tw, stride=stride, padding=padding).backward(
        torch.tensor(grad))
    expected = tw.grad.numpy()
    got = fastconv.conv2d_backward(grad, x, w, stride=stride, padding=padding)[1]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    assert finite.any()
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=1e-10)
