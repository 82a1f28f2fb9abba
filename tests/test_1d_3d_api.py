"""Issue 19's 1-D and 3-D API: conv1d_backward, conv_transpose1d, conv_transpose3d, max_pool1d and
avg_pool1d (+ backward), nn.Conv1D / MaxPool1D / AvgPool1D.

PyTorch (float64 autograd) is the reference on random configurations; conv_transpose3d is also
checked against its naive twin (tests/naive.py) and every transposed convolution against the
adjoint identity with its forward, which needs no reference at all.  Bad arguments are clear
errors raised before any kernel runs.
"""
import numpy as np
import pytest

import fastconv
from fastconv import nn
from nn_gradcheck import check_layer_gradients
from tests import naive

FLOATS = [np.float32, np.float64]
SEEDS = range(12)


def _torch():
    return pytest.importorskip("torch")


def _t(array, requires_grad=False):
    torch = _torch()
    return torch.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def _close(got, expected, magnitude, dtype, factor=1.0):
    """|got - expected| within a rounding bound scaled by the sum of absolute terms (``magnitude``,
    the same computation on absolute values): float32 sums lose a few ulps per term."""
    scale = float(np.max(np.abs(magnitude), initial=0.0)) + 1.0
    tol = (2e-5 if dtype == np.float32 else 1e-12) * factor * scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


# --- random configurations -----------------------------------------------------------------------
def _conv1d_config(rng):
    """(input shape, weight shape, kwargs) of a valid conv1d call, torch's argument forms."""
    groups = int(rng.choice([1, 1, 2, 3]))
    channels = groups * int(rng.integers(1, 4))
    out_channels = groups * int(rng.integers(1, 4))
    kernel = int(rng.integers(1, 6))
    dilation = int(rng.integers(1, 4))
    stride = int(rng.integers(1, 4))
    kwargs = {"stride": stride, "dilation": dilation, "groups": groups}
    choice = rng.integers(4)
    if choice == 0 and stride == 1:
        kwargs["padding"] = "same"
        pad = 0
    elif choice == 1:
        kwargs["padding"] = "valid"
        pad = 0
    else:
        pad = int(rng.integers(0, 4))
        kwargs["padding"] = pad
    span = dilation * (kernel - 1) + 1
    length = max(span - 2 * pad, pad + 1, 1) + int(rng.integers(0, 10))
    if pad and rng.random() < 0.4:
        kwargs["padding_mode"] = str(rng.choice(["reflect", "replicate", "circular"]))
    shape = (int(rng.integers(1, 4)), channels, length)
    if rng.random() < 0.2:
        shape = shape[1:]
    return shape, (out_channels, channels // groups, kernel), kwargs


def _torch_conv1d(x, w, b, kwargs):
    F = _torch().nn.functional
    kwargs = dict(kwargs)
    mode = kwargs.pop("padding_mode", "zeros")
    if mode != "zeros":
        pad = kwargs.pop("padding")
        x = F.pad(x, (pad, pad), mode=mode)
    return F.conv1d(x, w, b, **kwargs)


def _transpose_config(rng, dims):
    """(input shape, weight shape, kwargs) of a valid conv_transpose{dims}d call: output_padding
    below stride or dilation per axis, often above padding (the forward's negative padding)."""
    groups = int(rng.choice([1, 1, 2]))
    channels = groups * int(rng.integers(1, 3))
    per_group = int(rng.integers(1, 3))
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 4 if dims == 3 else 6, dims))
        stride = tuple(int(s) for s in rng.integers(1, 4, dims))
        dilation = tuple(int(d) for d in rng.integers(1, 3 if dims == 3 else 4, dims))
        padding = tuple(int(p) for p in rng.integers(0, 3, dims))
        extra = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        size = tuple(int(n) for n in rng.integers(1, 5 if dims == 3 else 10, dims))
        out = [(n - 1) * s - 2 * p + d * (k - 1) + e + 1
               for n, s, p, d, k, e in zip(size, stride, padding, dilation, kernel, extra)]
        if min(out) >= 1:
            break
    form = (lambda v: v[0]) if dims == 1 else (lambda v: v)
    kwargs = {"stride": form(stride), "padding": form(padding), "output_padding": form(extra),
              "dilation": form(dilation), "groups": groups}
    shape = (int(rng.integers(1, 3)), channels) + size
    if rng.random() < 0.2:
        shape = shape[1:]
    return shape, (channels, per_group) + kernel, kwargs


def _cropped(out, shape):
    assert len(out.shape) == len(shape) and all(n >= m for n, m in zip(out.shape, shape))
    return out[tuple(slice(0, n) for n in shape)]


# --- conv1d_backward -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv1d_backward_matches_torch_autograd(seed, dtype):
    rng = np.random.default_rng(seed)
    shape, wshape, kwargs = _conv1d_config(rng)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    out = fastconv.conv1d(x, w, **kwargs)
    grad = rng.standard_normal(out.shape).astype(dtype)
    got = fastconv.conv1d_backward(grad, x, w, **kwargs)

    def autograd(x_, w_, grad_):
        x_t, w_t = _t(x_, True), _t(w_, True)
        b_t = _t(np.zeros(wshape[0]), True)
        out_t = _torch_conv1d(x_t, w_t, b_t, kwargs)
        assert tuple(out_t.shape) == out.shape
        out_t.backward(_t(grad_))
        return [t.grad.numpy() for t in (x_t, w_t, b_t)]

    expected = autograd(x, w, grad)
    magnitudes = autograd(np.abs(x), np.abs(w), np.abs(grad))
    for name, value, reference, magnitude in zip(("input", "weight", "bias"), got, expected,
                                                 magnitudes):
        assert value.shape == reference.shape, name
        assert value.dtype == dtype and value.flags.c_contiguous, name
        _close(value, reference, magnitude, dtype, factor=20)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "fft"])
def test_conv1d_backward_on_every_backend(algorithm):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 23))
    w = rng.standard_normal((6, 2, 4))
    kwargs = dict(stride=2, padding=3, dilation=2, groups=2)
    grad = rng.standard_normal(fastconv.conv1d(x, w, **kwargs).shape)
    got = fastconv.conv1d_backward(grad, x, w, algorithm=algorithm, **kwargs)
    # the 1-D problem is the 2-D one with a height-1 plane: the naive 2-D twin is the oracle
    expected = naive.conv2d_backward(grad[:, :, None], x[:, :, None], w[:, :, None], stride=(1, 2),
                                     padding=(0, 3), dilation=(1, 2), groups=2)
    np.testing.assert_allclose(got[0], expected[0][:, :, 0], rtol=0, atol=1e-11)
    np.testing.assert_allclose(got[1], expected[1][:, :, 0], rtol=0, atol=1e-11)
    np.testing.assert_allclose(got[2], expected[2], rtol=0, atol=1e-11)


def test_conv1d_backward_needs_and_empty_batch():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 12)), rng.standard_normal((4, 3, 3))
    grad = rng.standard_normal((2, 4, 10))
    grad_input, grad_weight, grad_bias = fastconv.conv1d_backward(grad, x, w, needs=("weight",))
    assert grad_input is None and grad_bias is None
    full = fastconv.conv1d_backward(grad, x, w)
    np.testing.assert_array_equal(grad_weight, full[1])
    np.testing.assert_allclose(full[2], grad.sum(axis=(0, 2)), rtol=1e-12)
    empty = fastconv.conv1d_backward(np.ones((0, 4, 10)), np.ones((0, 3, 12)), w)
    assert empty[0].shape == (0, 3, 12)
    assert empty[1].shape == w.shape and not empty[1].any()
    assert empty[2].shape == (4,) and not empty[2].any()


# --- conv_transpose1d ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose1d_matches_torch(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    shape, wshape, kwargs = _transpose_config(rng, 1)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[1] * kwargs["groups"]).astype(dtype) if seed % 3 else None
    got = fastconv.conv_transpose1d(x, w, b, **kwargs)
    F = _torch().nn.functional
    bias = None if b is None else _t(b)
    expected = F.conv_transpose1d(_t(x), _t(w), bias, **kwargs).numpy()
    magnitude = F.conv_transpose1d(_t(np.abs(x)), _t(np.abs(w)),
                                   None if b is None else _t(np.abs(b)), **kwargs).numpy()
    assert got.shape == expected.shape and got.dtype == dtype and got.flags.c_contiguous
    _close(got, expected, magnitude, dtype, factor=20)


@pytest.mark.parametrize("seed", range(6))
def test_conv_transpose1d_is_conv1d_input_gradient(seed):
    """<conv1d(x, w), y> == <x, conv_transpose1d(y, w)>, the defining property (no reference)."""
    rng = np.random.default_rng(200 + seed)
    shape, wshape, kwargs = _transpose_config(rng, 1)
    y = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    transposed = fastconv.conv_transpose1d(y, w, **kwargs)
    forward = {key: kwargs[key] for key in ("stride", "padding", "dilation", "groups")}
    x = rng.standard_normal(transposed.shape)
    # output_padding >= stride (allowed below dilation) leaves the forward outputs past y's
    # length: the transposed convolution is the adjoint of the forward cropped to y
    out = _cropped(fastconv.conv1d(x, w, **forward), y.shape)
    np.testing.assert_allclose(np.vdot(out, y), np.vdot(x, transposed), rtol=1e-10, atol=1e-10)


# --- conv_transpose3d ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose3d_matches_naive_and_torch(seed, dtype):
    rng = np.random.default_rng(300 + seed)
    shape, wshape, kwargs = _transpose_config(rng, 3)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[1] * kwargs["groups"]).astype(dtype) if seed % 3 else None
    got = fastconv.conv_transpose3d(x, w, b, **kwargs)
    exact = naive.conv_transpose3d(x, w, b, **kwargs)
    magnitude = naive.conv_transpose3d(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                                       **kwargs)
    assert got.shape == exact.shape and got.dtype == dtype and got.flags.c_contiguous
    _close(got, exact, magnitude, dtype)
    F = _torch().nn.functional
    reference = F.conv_transpose3d(_t(x), _t(w), None if b is None else _t(b), **kwargs).numpy()
    np.testing.assert_allclose(exact, reference, rtol=0, atol=1e-11)


@pytest.mark.parametrize("kwargs", [
    dict(stride=2, output_padding=1),  # output_padding > padding on every axis
    dict(stride=(3, 1, 2), padding=(0, 1, 0), output_padding=(2, 0, 1)),
    dict(stride=1, dilation=3, output_padding=2),  # output_padding < dilation, stride 1
    dict(stride=2, padding=2, output_padding=1, groups=2),
])
def test_conv_transpose3d_output_padding_beyond_padding(kwargs, rng):
    x = rng.standard_normal((2, 2, 3, 2, 3))
    w = rng.standard_normal((2, 3, 2, 3, 2))
    b = rng.standard_normal(3 * kwargs.get("groups", 1))
    got = fastconv.conv_transpose3d(x, w, b, **kwargs)
    exact = naive.conv_transpose3d(x, w, b, **kwargs)
    assert got.shape == exact.shape
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_conv_transpose3d_is_conv3d_input_gradient(seed):
    rng = np.random.default_rng(400 + seed)
    shape, wshape, kwargs = _transpose_config(rng, 3)
    y = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    transposed = fastconv.conv_transpose3d(y, w, **kwargs)
    forward = {key: kwargs[key] for key in ("stride", "padding", "dilation", "groups")}
    x = rng.standard_normal(transposed.shape)
    full = fastconv.conv3d(x, w, **forward)
    out = _cropped(full, y.shape)
    np.testing.assert_allclose(np.vdot(out, y), np.vdot(x, transposed), rtol=1e-10, atol=1e-10)
    # and it is conv3d_backward's input gradient for y (zeros where the forward outputs more)
    grad_output = np.zeros(full.shape)
    grad_output[tuple(slice(0, n) for n in y.shape)] = y
    grad_input = fastconv.conv3d_backward(grad_output, x, w, needs=("input",), **forward)[0]
    np.testing.assert_allclose(transposed, grad_input, rtol=0, atol=1e-12)


def test_conv_transpose3d_non_finite_weight_matches_torch(rng):
    """A NaN/Inf tap takes direct3d's scatter path: NaN only where the definition has 0 * inf or
    inf - inf, as PyTorch."""
    x = rng.standard_normal((1, 2, 3, 3, 3))
    x[0, 0, 1, 1, 1] = 0.0
    w = rng.standard_normal((2, 2, 2, 2, 2))
    w[0, 1, 0, 1, 0] = np.inf
    w[1, 0, 1, 1, 1] = np.nan
    got = fastconv.conv_transpose3d(x, w, stride=2, padding=1, output_padding=1)
    F = _torch().nn.functional
    expected = F.conv_transpose3d(_t(x), _t(w), stride=2, padding=1, output_padding=1).numpy()
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    finite = np.isfinite(expected)
    assert finite.any() and not finite.all()
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-12)


def test_transposed_unbatched_and_empty_batches(rng):
    w1, w3 = rng.standard_normal((2, 3, 3)), rng.standard_normal((2, 3, 2, 2, 2))
    x1, x3 = rng.standard_normal((2, 5)), rng.standard_normal((2, 3, 3, 3))
    np.testing.assert_allclose(fastconv.conv_transpose1d(x1, w1, stride=2),
                               fastconv.conv_transpose1d(x1[None], w1, stride=2)[0], rtol=0, atol=0)
    np.testing.assert_allclose(fastconv.conv_transpose3d(x3, w3, stride=2),
                               naive.conv_transpose3d(x3, w3, stride=2), rtol=0, atol=1e-12)
    assert fastconv.conv_transpose1d(np.ones((0, 2, 5)), w1, stride=2).shape == (0, 3, 11)
    empty = fastconv.conv_transpose3d(np.ones((0, 2, 3, 3, 3), np.float32), w3.astype(np.float32))
    assert empty.shape == (0, 3, 4, 4, 4) and empty.dtype == np.float32


# --- 1-D pooling ---------------------------------------------------------------------------------
# (length, kernel_size, stride, padding, dilation, ceil_mode): edge cases of ceil_mode on purpose
POOL_EDGES = [
    (5, 2, 3, 1, 1, True),  # the ceil window would start in the right padding: dropped
    (5, 2, 2, 0, 1, True),  # a last partial window is kept
    (6, 3, 2, 1, 1, True),
    (4, 4, 4, 2, 1, True),
    (1, 1, 1, 0, 1, False),
    (7, 3, 1, 1, 3, False),
    (9, 2, 5, 1, 2, True),  # stride > kernel
    (3, 3, 1, 1, 1, True),  # window == input plus padding
]


def _pool_config(rng):
    kernel = int(rng.integers(1, 6))
    stride = None if rng.random() < 0.25 else int(rng.integers(1, 5))
    return (int(rng.integers(1, 20)), kernel, stride, int(rng.integers(0, kernel // 2 + 1)),
            int(rng.integers(1, 4)), bool(rng.integers(2)))


def _pool_cases():
    rng = np.random.default_rng(500)
    return POOL_EDGES + [_pool_config(rng) for _ in range(16)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", _pool_cases(), ids=str)
def test_max_pool1d_matches_torch(case, dtype):
    torch = _torch()
    F = torch.nn.functional
    length, kernel, stride, padding, dilation, ceil_mode = case
    rng = np.random.default_rng(length * 31 + kernel)
    x = rng.standard_normal((2, 3, length)).astype(dtype)
    args = (kernel, stride, padding, dilation, ceil_mode)
    x_t = _t(x, True)
    try:
        expected, expected_indices = F.max_pool1d(x_t, *args, return_indices=True)
    except RuntimeError:  # PyTorch refuses the geometry: so must fastconv, with a ValueError
        with pytest.raises(ValueError, match="max_pool1d"):
            fastconv.max_pool1d(x, *args)
        return
    values, indices = fastconv.max_pool1d(x, *args, return_indices=True)
    assert values.shape == tuple(expected.shape) and values.dtype == dtype
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(values, expected.detach().numpy().astype(dtype))
    inside = np.isfinite(values)  # a window of padding only: -inf, index -1 (see the README)
    np.testing.assert_array_equal(indices[inside], expected_indices.numpy()[inside])
    assert (indices[~inside] == -1).all()
    np.testing.assert_array_equal(fastconv.max_pool1d(x[0], *args), values[0])
    grad = rng.standard_normal(values.shape).astype(dtype)
    got = fastconv.max_pool1d_backward(grad, x, *args)
    assert got.shape == x.shape and got.dtype == dtype
    if inside.all():
        expected.backward(_t(grad))
        np.testing.assert_allclose(got, x_t.grad.numpy(), rtol=0,
                                   atol=1e-6 if dtype == np.float32 else 1e-14)
    else:
        assert got.sum() == pytest.approx(grad[inside].sum(), rel=1e-5)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", _pool_cases(), ids=str)
def test_avg_pool1d_matches_torch(case, dtype, count_include_pad):
    torch = _torch()
    F = torch.nn.functional
    length, kernel, stride, padding, _, ceil_mode = case
    rng = np.random.default_rng(length * 17 + kernel)
    x = rng.standard_normal((2, 3, length)).astype(dtype)
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    x_t = _t(x, True)
    try:
        expected = F.avg_pool1d(x_t, *args)
    except RuntimeError:
        with pytest.raises(ValueError, match="avg_pool1d"):
            fastconv.avg_pool1d(x, *args)
        return
    tol = dict(rtol=0, atol=1e-6 if dtype == np.float32 else 1e-14)
    got = fastconv.avg_pool1d(x, *args)
    assert got.shape == tuple(expected.shape) and got.dtype == dtype
    np.testing.assert_allclose(got, expected.detach().numpy(), **tol)
    grad = rng.standard_normal(got.shape).astype(dtype)
    expected.backward(_t(grad))
    grad_input = fastconv.avg_pool1d_backward(grad, x, *args)
    assert grad_input.shape == x.shape and grad_input.dtype == dtype
    np.testing.assert_allclose(grad_input, x_t.grad.numpy(), **tol)
    np.testing.assert_allclose(fastconv.avg_pool1d_backward(grad[1], x[1], *args), grad_input[1],
                               rtol=0, atol=0)


def test_pool1d_tuple_forms_and_empty_batch():
    x = np.arange(10.0).reshape(1, 1, 10)
    np.testing.assert_array_equal(fastconv.max_pool1d(x, (3,), (2,), (1,), (1,)),
                                  fastconv.max_pool1d(x, 3, 2, 1, 1))
    np.testing.assert_array_equal(fastconv.max_pool1d(x, 2), [[[1.0, 3.0, 5.0, 7.0, 9.0]]])
    np.testing.assert_array_equal(fastconv.avg_pool1d(x, 2), [[[0.5, 2.5, 4.5, 6.5, 8.5]]])
    values, indices = fastconv.max_pool1d(np.ones((0, 2, 7)), 3, return_indices=True)
    assert values.shape == indices.shape == (0, 2, 2)
    assert fastconv.avg_pool1d_backward(np.ones((0, 2, 2)), np.ones((0, 2, 7)), 3).shape == (0, 2, 7)


# --- layers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    dict(in_channels=2, out_channels=3, kernel_size=3),
    dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=2, kernel_size=(2,), padding=1, dilation=2, groups=2,
         bias=False),
    dict(in_channels=2, out_channels=2, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=3, out_channels=3, kernel_size=4, padding="same", groups=3),
])
def test_conv1d_layer_gradients(kwargs, rng):
    layer = nn.Conv1D(**kwargs, dtype=np.float64, rng=rng)
    checked = check_layer_gradients(layer, rng.standard_normal((2, kwargs["in_channels"], 9)), rng)
    assert "weights" in checked and "input" in checked
    assert ("bias" in checked) == kwargs.get("bias", True)


@pytest.mark.parametrize("layer", [nn.MaxPool1D(3, 2, 1, ceil_mode=True),
                                   nn.AvgPool1D(3, 2, 1, ceil_mode=True, count_include_pad=False),
                                   nn.AvgPool1D(2)], ids=repr)
def test_pool1d_layer_gradients(layer, rng):
    # values 0.05 apart: no max tie within a finite-difference step
    x = (rng.permutation(2 * 3 * 11) * 0.05).reshape(2, 3, 11)
    assert check_layer_gradients(layer, x, rng) == ["input"]


def test_conv1d_layer_matches_torch_and_keeps_the_protocol():
    torch = _torch()
    layer = nn.Conv1D(4, 6, 3, stride=2, padding=1, groups=2, dtype=np.float64, rng=0)
    reference = torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.weights))
        reference.bias.copy_(torch.from_numpy(layer.bias))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 13))
    x_t = torch.tensor(x, requires_grad=True)
    out_t = reference(x_t)
    out = layer.forward(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=0, atol=1e-12)
    grad = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(layer.backward(grad), x_t.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.grad_w, reference.weight.grad.numpy(), rtol=0, atol=1e-11)
    np.testing.assert_allclose(layer.grad_b, reference.bias.grad.numpy(), rtol=0, atol=1e-11)
    layer.input_grad = False
    layer.forward(x)
    assert layer.backward(grad) is None and layer.grad_w.any()


def test_layers_dtype_rule_shapes_and_a_small_model(rng):
    layer = nn.Conv1D(2, 3, 5, padding=2)
    bound = 1 / np.sqrt(2 * 5)  # PyTorch's init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert layer.weights.shape == (3, 2, 5) and layer.weights.dtype == np.float32
    assert np.abs(layer.weights).max() <= bound and np.abs(layer.bias).max() <= bound
    x = rng.standard_normal((4, 2, 16)).astype(np.float32)
    with pytest.raises(TypeError, match="float64"):
        layer.forward(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        layer.forward(x[0])
    with pytest.raises(ValueError, match="input channels"):
        layer.forward(x[:, :1])
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv1D(2, 3, (3, 3))
    with pytest.raises(ValueError, match=r"MaxPool1D expects input of shape \(N, C, L\)"):
        nn.MaxPool1D(2).forward(x[:, :, None])
    model = nn.Sequential(layer, nn.ReLU(), nn.MaxPool1D(2), nn.AvgPool1D(3, ceil_mode=True),
                          nn.Flatten(), nn.Linear(3 * 3, 5))
    out = model.forward(x)
    assert out.shape == (4, 5) and out.dtype == np.float32
    grad_input = model.backward(np.ones_like(out))
    assert grad_input.shape == x.shape and grad_input.dtype == np.float32
    assert np.isfinite(grad_input).all() and layer.grad_w.any()


# --- bad arguments -------------------------------------------------------------------------------
def _hostile():
    x1, w1, g1 = np.ones((1, 2, 8)), np.ones((3, 2, 3)), np.ones((1, 3, 6))
    x3, w3 = np.ones((1, 2, 4, 4, 4)), np.ones((2, 3, 2, 2, 2))
    F = fastconv
    return [
        ("conv1d_backward/input 4-D", F.conv1d_backward, (g1, x1[None], w1), {}, ValueError,
         r"input must be 3-D \(N, C, L\)"),
        ("conv1d_backward/weight 4-D", F.conv1d_backward, (g1, x1, w1[None]), {}, ValueError,
         r"weight must be 3-D"),
        ("conv1d_backward/grad shape", F.conv1d_backward, (np.ones((1, 3, 5)), x1, w1), {},
         ValueError, r"grad_output has shape \(1, 3, 5\).*\(1, 3, 6\)"),
        ("conv1d_backward/grad 0-d", F.conv1d_backward, (np.float64(1.0), x1, w1), {}, ValueError,
         "grad_output"),
        ("conv1d_backward/channels", F.conv1d_backward, (g1, np.ones((1, 3, 8)), w1), {},
         ValueError, "channels"),
        ("conv1d_backward/stride pair", F.conv1d_backward, (g1, x1, w1), {"stride": (1, 1)},
         ValueError, "stride must be an int or a 1-tuple"),
        ("conv1d_backward/dilation 0", F.conv1d_backward, (g1, x1, w1), {"dilation": 0},
         ValueError, "dilation"),
        ("conv1d_backward/needs", F.conv1d_backward, (g1, x1, w1), {"needs": ("grad",)},
         ValueError, "needs"),
        ("conv_transpose1d/input 4-D", F.conv_transpose1d, (x1[None], np.ones((2, 3, 3))), {},
         ValueError, r"input must be 3-D"),
        ("conv_transpose1d/channels", F.conv_transpose1d, (x1, np.ones((3, 3, 3))), {},
         ValueError, r"expects 3 input channels.*\(1, 2, 8\) has 2"),
        ("conv_transpose1d/output_padding", F.conv_transpose1d, (x1, np.ones((2, 3, 3))),
         {"stride": 2, "output_padding": 2}, ValueError, "output_padding.*length"),
        ("conv_transpose1d/output_padding float", F.conv_transpose1d, (x1, np.ones((2, 3, 3))),
         {"output_padding": 0.5}, TypeError, "output_padding"),
        ("conv_transpose1d/padding string", F.conv_transpose1d, (x1, np.ones((2, 3, 3))),
         {"padding": "same"}, TypeError, "padding"),
        ("conv_transpose1d/negative output", F.conv_transpose1d, (x1, np.ones((2, 3, 3))),
         {"padding": 9}, ValueError, r"output would be -?\d+ for input \(1, 2, 8\)"),
        ("conv_transpose1d/bias", F.conv_transpose1d, (x1, np.ones((2, 3, 3)), np.ones(2)), {},
         ValueError, "bias"),
        ("conv_transpose1d/groups", F.conv_transpose1d, (x1, np.ones((2, 3, 3))), {"groups": 3},
         ValueError, "groups"),
        ("conv_transpose3d/input 3-D", F.conv_transpose3d, (x3[0, 0], w3), {}, ValueError,
         r"input must be 5-D"),
        ("conv_transpose3d/weight 4-D", F.conv_transpose3d, (x3, w3[0]), {}, ValueError,
         r"weight must be 5-D"),
        ("conv_transpose3d/channels", F.conv_transpose3d, (np.ones((1, 3, 4, 4, 4)), w3), {},
         ValueError, "channels"),
        ("conv_transpose3d/output_padding", F.conv_transpose3d, (x3, w3),
         {"stride": (2, 2, 1), "output_padding": (0, 0, 1)}, ValueError, "output_padding.*width"),
        ("conv_transpose3d/stride pair", F.conv_transpose3d, (x3, w3), {"stride": (1, 2)},
         ValueError, "stride"),
        ("conv_transpose3d/complex", F.conv_transpose3d, (x3.astype(complex), w3), {}, TypeError,
         "input"),
        ("conv_transpose3d/empty", F.conv_transpose3d, (np.ones((1, 2, 0, 4, 4)), w3), {},
         ValueError, "input"),
        ("max_pool1d/input 4-D", F.max_pool1d, (x1[None], 2), {}, ValueError,
         r"input must be 3-D \(N, C, L\)"),
        ("max_pool1d/kernel pair", F.max_pool1d, (x1, (2, 2)), {}, ValueError,
         "kernel_size must be an int or a 1-tuple"),
        ("max_pool1d/padding over half", F.max_pool1d, (x1, 2), {"padding": 2}, ValueError,
         "padding 2 must be at most half of kernel_size 2"),
        ("max_pool1d/too small", F.max_pool1d, (x1, 9), {}, ValueError, "too small"),
        ("max_pool1d/ceil_mode", F.max_pool1d, (x1, 2), {"ceil_mode": 1}, TypeError, "ceil_mode"),
        ("max_pool1d_backward/grad shape", F.max_pool1d_backward, (np.ones((1, 2, 3)), x1, 2), {},
         ValueError, r"grad_output has shape \(1, 2, 3\).*\(1, 2, 4\)"),
        ("avg_pool1d/stride 0", F.avg_pool1d, (x1, 2), {"stride": 0}, ValueError, "stride"),
        ("avg_pool1d/input complex", F.avg_pool1d, (x1.astype(complex), 2), {}, TypeError, "input"),
        ("avg_pool1d_backward/grad 4-D", F.avg_pool1d_backward, (np.ones((1, 2, 1, 4)), x1, 2), {},
         ValueError, "grad_output"),
    ]


def _tripwire(*args, **kwargs):
    raise AssertionError("a kernel was reached with arguments that should have been refused")


@pytest.mark.parametrize("entry", _hostile(), ids=lambda entry: entry[0])
def test_bad_arguments_are_refused_before_any_kernel(entry, monkeypatch):
    """Every path from these functions to a kernel is replaced by a tripwire: the error must come
    from validation, and name the argument."""
    from fastconv import dispatch, gradients, pooling
    from fastconv.backends import direct3d

    monkeypatch.setattr(dispatch, "choose_gradients", _tripwire)
    monkeypatch.setattr(dispatch, "choose_backward", _tripwire)
    monkeypatch.setattr(gradients, "_run_transpose", _tripwire)
    monkeypatch.setattr(direct3d, "backward_input", _tripwire)
    for name in ("_run_max_pool", "_run_max_pool_backward", "_run_avg_pool",
                 "_run_avg_pool_backward"):
        monkeypatch.setattr(pooling, name, _tripwire)
    _, function, args, kwargs, error, pattern = entry
    with pytest.raises(error, match=pattern):
        function(*args, **kwargs)


def test_tripwires_are_on_the_paths_the_valid_calls_take(monkeypatch):
    """The tripwires above would catch a kernel run: a valid call of each function trips one."""
    from fastconv import dispatch, gradients, pooling
    from fastconv.backends import direct3d

    monkeypatch.setattr(dispatch, "choose_gradients", _tripwire)
    monkeypatch.setattr(gradients, "_run_transpose", _tripwire)
    monkeypatch.setattr(direct3d, "backward_input", _tripwire)
    for name in ("_run_max_pool", "_run_max_pool_backward", "_run_avg_pool",
                 "_run_avg_pool_backward"):
        monkeypatch.setattr(pooling, name, _tripwire)
    x1, w1, g1 = np.ones((1, 2, 8)), np.ones((3, 2, 3)), np.ones((1, 3, 6))
    calls = [
        (fastconv.conv1d_backward, (g1, x1, w1)),
        (fastconv.conv_transpose1d, (x1, np.ones((2, 3, 3)))),
        (fastconv.conv_transpose3d, (np.ones((1, 2, 4, 4, 4)), np.ones((2, 3, 2, 2, 2)))),
        (fastconv.max_pool1d, (x1, 2)),
        (fastconv.max_pool1d_backward, (np.ones((1, 2, 4)), x1, 2)),
        (fastconv.avg_pool1d, (x1, 2)),
        (fastconv.avg_pool1d_backward, (np.ones((1, 2, 4)), x1, 2)),
    ]
    for function, args in calls:
        with pytest.raises(AssertionError, match="kernel was reached"):
            function(*args)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv2d_layer_takes_padding_mode_like_conv1d_and_conv3d(mode):
    """nn.Conv2D has PyTorch Conv2d's padding_mode, as Conv1D and Conv3D do: forward and every
    gradient equal torch's."""
    torch = _torch()
    layer = nn.Conv2D(3, 4, 3, stride=2, padding=2, padding_mode=mode, dtype=np.float64, rng=0)
    reference = torch.nn.Conv2d(3, 4, 3, stride=2, padding=2, padding_mode=mode, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.weights))
        reference.bias.copy_(torch.from_numpy(layer.bias))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 8))
    x_t = torch.tensor(x, requires_grad=True)
    out_t = reference(x_t)
    out = layer.forward(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=0, atol=1e-12)
    grad = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(layer.backward(grad), x_t.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.grad_w, reference.weight.grad.numpy(), rtol=0, atol=1e-11)
    np.testing.assert_allclose(layer.grad_b, reference.bias.grad.numpy(), rtol=0, atol=1e-11)
