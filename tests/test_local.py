"""tiled_conv2d / local_conv2d and their backward: naive twin, identities, properties, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv
from tests import naive
from tests.tolerances import assert_matches

# (input shape, (K, C, R, S), tiles or "local", kwargs): awkward cases on purpose.
CASES = [
    ((2, 3, 9, 11), (4, 3, 3, 3), (2, 3), {}),
    ((1, 1, 7, 7), (1, 1, 1, 1), (1, 1), {}),                          # 1x1, batch 1
    ((2, 4, 6, 5), (3, 4, 1, 1), "local", {}),
    ((1, 2, 8, 9), (3, 2, 3, 3), (2, 2), {"stride": 2}),
    ((1, 2, 10, 10), (3, 2, 3, 3), "local", {"stride": 3, "padding": 1}),
    ((1, 2, 11, 9), (2, 2, 2, 3), (3, 1), {"stride": (3, 2)}),
    ((1, 2, 9, 9), (2, 2, 2, 2), "local", {"stride": 4}),              # stride > kernel
    ((3, 3, 8, 8), (5, 3, 3, 3), (4, 4), {"padding": 1}),
    ((1, 2, 7, 9), (2, 2, 3, 2), (5, 4), {"padding": (2, 0)}),
    ((1, 2, 8, 8), (3, 2, 4, 4), (2, 3), {"padding": "same"}),
    ((1, 1, 6, 6), (2, 1, 6, 6), "local", {}),                          # kernel == input
    ((1, 1, 5, 5), (1, 1, 7, 7), "local", {"padding": 2}),              # kernel > input
    ((2, 3, 7, 13), (2, 3, 1, 5), (7, 3), {}),
]


def _case_id(case):
    shape, kshape, tiles, kwargs = case
    extra = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"x{shape}-k{kshape}-t{tiles}" + (f"-{extra}" if extra else "")


def _output_size(shape, kshape, kwargs):
    padding = kwargs.get("padding", 0)
    if padding == "same":
        return shape[-2:]
    return fastconv.conv_output_shape(shape[-2:], kshape[-2:], kwargs.get("stride", 1), padding)


def _make_case(case, dtype, rng, bias_kind):
    shape, kshape, tiles, kwargs = case
    if tiles == "local":
        tiles = _output_size(shape, kshape, kwargs)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(tuple(tiles) + kshape).astype(dtype)
    bias = {"none": None, "shared": rng.standard_normal(kshape[0]),
            "tiled": rng.standard_normal(tuple(tiles) + kshape[:1])}[bias_kind]
    bias = None if bias is None else bias.astype(dtype)
    return x, w, bias, kwargs, case[2] == "local"


@pytest.mark.parametrize("bias_kind", ["none", "shared", "tiled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_matches_naive(case, dtype, bias_kind, rng):
    x, w, bias, kwargs, local = _make_case(case, dtype, rng, bias_kind)
    op = fastconv.local_conv2d if local else fastconv.tiled_conv2d
    got = op(x, w, bias, **kwargs)
    assert got.dtype == dtype and got.flags.c_contiguous
    exact = naive.tiled_conv2d(x, w, bias, **kwargs)
    magnitude = naive.tiled_conv2d(np.abs(x), np.abs(w), None if bias is None else np.abs(bias), **kwargs)
    assert got.shape == exact.shape
    assert_matches(got, exact, magnitude, dtype, "direct")


@pytest.mark.parametrize("bias_kind", ["none", "shared", "tiled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backward_matches_naive(case, dtype, bias_kind, rng):
    x, w, bias, kwargs, local = _make_case(case, dtype, rng, bias_kind)
    op = fastconv.local_conv2d_backward if local else fastconv.tiled_conv2d_backward
    grad_out = rng.standard_normal(naive.tiled_conv2d(x, w, **kwargs).shape).astype(dtype)
    got = op(grad_out, x, w, bias, **kwargs)
    exact = naive.tiled_conv2d_backward(grad_out, x, w, bias, **kwargs)
    magnitude = naive.tiled_conv2d_backward(np.abs(grad_out), np.abs(x), np.abs(w), bias, **kwargs)
    for name, got_grad, exact_grad, size in zip(("input", "weight", "bias"), got, exact, magnitude):
        if bias is None and name == "bias":
            assert got_grad is None
            continue
        assert got_grad.shape == exact_grad.shape, name
        assert got_grad.dtype == dtype, name
        assert_matches(got_grad, exact_grad, size, dtype, "direct")


def test_tiles_of_one_equal_conv2d(rng):
    x = rng.standard_normal((2, 3, 10, 9))
    conv_weight = rng.standard_normal((4, 3, 3, 2))
    bias = rng.standard_normal(4)
    for kwargs in ({}, {"stride": 2, "padding": 1}, {"stride": (1, 3), "padding": (0, 2)}):
        got = fastconv.tiled_conv2d(x, conv_weight[None, None], bias, **kwargs)
        np.testing.assert_allclose(got, fastconv.conv2d(x, conv_weight, bias, **kwargs),
                                   rtol=1e-12, atol=1e-12)


def test_tiles_equal_to_output_is_local_conv2d(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((5, 4, 2, 3, 3, 3))  # (out_h, out_w, K, C, R, S) at stride 2, padding 1
    bias = rng.standard_normal((5, 4, 2))
    tiled = fastconv.tiled_conv2d(x, w, bias, stride=2, padding=1)
    local = fastconv.local_conv2d(x, w, bias, stride=2, padding=1)
    np.testing.assert_array_equal(tiled, local)
    grad_out = rng.standard_normal(local.shape)
    for tiled_grad, local_grad in zip(
        fastconv.tiled_conv2d_backward(grad_out, x, w, bias, stride=2, padding=1),
        fastconv.local_conv2d_backward(grad_out, x, w, bias, stride=2, padding=1),
    ):
        np.testing.assert_array_equal(tiled_grad, local_grad)


def test_local_conv_kernels_really_are_unshared(rng):
    """Changing the kernel of one output position changes that output only."""
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((4, 4, 3, 2, 3, 3))
    before = fastconv.local_conv2d(x, w)
    w2 = w.copy()
    w2[1, 2] += 1.0
    changed = fastconv.local_conv2d(x, w2) != before
    assert changed[0, :, 1, 2].all()
    changed[0, :, 1, 2] = False
    assert not changed.any()


def test_tiles_one_gradients_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 8, 7))
    conv_weight = rng.standard_normal((4, 3, 3, 3))
    bias = rng.standard_normal(4)
    grad_out = rng.standard_normal((2, 4, 4, 4))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, conv_weight, bias))
    torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1).backward(torch.tensor(grad_out))
    grad_x, grad_w, grad_b = fastconv.tiled_conv2d_backward(
        grad_out, x, conv_weight[None, None], bias, stride=2, padding=1)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_w[0, 0], tw.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_b, tb.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_unbatched_and_needs(rng):
    x = rng.standard_normal((3, 6, 6))
    w = rng.standard_normal((2, 2, 4, 3, 3, 3))
    bias = rng.standard_normal(4)
    out = fastconv.tiled_conv2d(x, w, bias, padding=1)
    assert out.shape == (4, 6, 6)
    np.testing.assert_allclose(out, naive.tiled_conv2d(x, w, bias, padding=1), rtol=1e-12, atol=1e-12)
    grad_out = rng.standard_normal(out.shape)
    grad_x, grad_w, grad_b = fastconv.tiled_conv2d_backward(grad_out, x, w, bias, padding=1,
                                                            needs=("weight",))
    assert grad_x is None and grad_b is None and grad_w.shape == w.shape
    grad_x, grad_w, grad_b = fastconv.tiled_conv2d_backward(grad_out, x, w, bias, padding=1,
                                                            needs="input")
    assert grad_x.shape == x.shape and grad_w is None and grad_b is None


def test_awkward_memory_layouts_and_inputs_untouched(rng):
    base = rng.standard_normal((2, 3, 12, 10))
    x = base[:, :, ::2, :]  # non-contiguous
    w = np.asfortranarray(rng.standard_normal((3, 4, 2, 3, 3, 3)))
    x.flags.writeable = False
    w.flags.writeable = False
    x_before, w_before = x.copy(), w.copy()
    out = fastconv.tiled_conv2d(x, w, padding=1)
    fastconv.tiled_conv2d_backward(np.ones_like(out), x, w, padding=1)
    np.testing.assert_allclose(out, naive.tiled_conv2d(x, w, padding=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(w, w_before)


def test_nan_stays_in_the_windows_that_see_it(rng):
    x = rng.standard_normal((1, 1, 7, 7))
    x[0, 0, 0, 0] = np.nan
    out = fastconv.local_conv2d(x, rng.standard_normal((5, 5, 1, 1, 3, 3)))
    assert np.isnan(out[0, 0, 0, 0])
    assert np.isfinite(out[0, 0, 1:, :]).all() and np.isfinite(out[0, 0, :, 1:]).all()


def test_int_input_computes_in_float64(rng):
    x = rng.integers(-3, 4, (1, 2, 5, 5))
    w = rng.integers(-3, 4, (3, 3, 2, 2, 3, 3))
    out = fastconv.local_conv2d(x, w)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, naive.tiled_conv2d(x, w))


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 3), channels=st.integers(1, 3), out_channels=st.integers(1, 3),
    in_h=st.integers(1, 8), in_w=st.integers(1, 8), kernel_h=st.integers(1, 4),
    kernel_w=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2),
    tile_h=st.integers(1, 4), tile_w=st.integers(1, 4), seed=st.integers(0, 2**16),
)
def test_backward_is_the_adjoint_of_forward(batch, channels, out_channels, in_h, in_w, kernel_h,
                                            kernel_w, stride, padding, tile_h, tile_w, seed):
    """<grad_out, f(x, w)> = <grad_input, x> = <grad_weight, w> for the bias-free (bilinear) op."""
    out_h = (in_h + 2 * padding - kernel_h) // stride + 1
    out_w = (in_w + 2 * padding - kernel_w) // stride + 1
    if out_h < 1 or out_w < 1:
        return
    tile_h, tile_w = min(tile_h, out_h), min(tile_w, out_w)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, in_h, in_w))
    w = rng.standard_normal((tile_h, tile_w, out_channels, channels, kernel_h, kernel_w))
    out = fastconv.tiled_conv2d(x, w, stride=stride, padding=padding)
    assert out.shape == (batch, out_channels, out_h, out_w)
    grad_out = rng.standard_normal(out.shape)
    grad_x, grad_w, _ = fastconv.tiled_conv2d_backward(grad_out, x, w, stride=stride, padding=padding)
    pairing = np.sum(grad_out * out)
    scale = np.sum(np.abs(grad_out) * naive.tiled_conv2d(np.abs(x), np.abs(w), stride=stride,
                                                         padding=padding)) + 1e-300
    assert abs(np.sum(grad_x * x) - pairing) <= 1e-12 * scale
    assert abs(np.sum(grad_w * w) - pairing) <= 1e-12 * scale


@pytest.mark.parametrize("call,match", [
    (lambda x, w: fastconv.tiled_conv2d(x[0, 0], w), "4-D"),
    (lambda x, w: fastconv.tiled_conv2d(x, w[0]), "6-D"),
    (lambda x, w: fastconv.tiled_conv2d(x[:, :2], w), "input channels"),
    (lambda x, w: fastconv.tiled_conv2d(x, np.zeros((7, 1, 4, 3, 3, 3))), "exceeds the output"),
    (lambda x, w: fastconv.local_conv2d(x, w), r"output size \(6, 6\)"),
    (lambda x, w: fastconv.tiled_conv2d(x, w, np.zeros(5)), "bias must have shape"),
    (lambda x, w: fastconv.tiled_conv2d(x, np.zeros((1, 1, 4, 3, 9, 9))), "larger than the padded"),
    (lambda x, w: fastconv.tiled_conv2d(x, w, stride=0), "stride"),
    (lambda x, w: fastconv.tiled_conv2d(x, w, padding=-1), "padding"),
    (lambda x, w: fastconv.tiled_conv2d_backward(np.zeros((2, 4, 5, 6)), x, w), "grad_output"),
    (lambda x, w: fastconv.tiled_conv2d_backward(np.zeros((2, 4, 6, 6)), x, w, needs=("inputs",)),
     "needs"),
])
def test_bad_arguments_raise_value_error(call, match):
    x = np.zeros((2, 3, 8, 8))
    w = np.zeros((2, 2, 4, 3, 3, 3))
    with pytest.raises(ValueError, match=match):
        call(x, w)


def test_complex_input_raises_type_error():
    with pytest.raises(TypeError, match="input"):
        fastconv.local_conv2d(np.zeros((1, 1, 3, 3), complex), np.zeros((1, 1, 1, 1, 3, 3)))
