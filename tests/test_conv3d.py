"""conv3d, conv3d_backward and nn.Conv3D: torch.nn.functional.conv3d's semantics (values, shapes,
dtypes, errors).

The forward is checked against the naive twin (tests/naive.py) with the direct backend's documented
error bound, and against PyTorch; the gradients against PyTorch autograd in float64, whose
gradients of |g|, |x|, |w| give the magnitude the bound is relative to.  Non-zero padding modes are
PyTorch's ``F.pad`` followed by an unpadded conv3d, which is what ``nn.Conv3d`` does.
"""
import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import fastconv
from fastconv.nn import Conv3D
from tests import naive
from tests.tolerances import assert_gradient_matches, assert_matches

# (input shape, weight shape, kwargs): awkward cases on purpose.  Output-channel counts cover full
# four-channel blocks, partial ones (3, 5, 7) and groups whose block is partial.
CASES = [
    ((2, 3, 5, 6, 7), (4, 3, 3, 3, 3), {}),
    ((1, 1, 4, 4, 4), (1, 1, 1, 1, 1), {}),  # 1x1x1
    ((1, 2, 3, 4, 5), (3, 2, 3, 4, 5), {}),  # kernel == input: one output
    ((2, 2, 7, 6, 9), (5, 2, 2, 3, 2), {"stride": 2}),
    ((1, 2, 9, 8, 7), (2, 2, 2, 2, 2), {"stride": (3, 2, 3)}),  # stride > kernel
    ((1, 2, 4, 7, 6), (4, 2, 2, 2, 2), {"stride": (2, 1, 1)}),  # depth stride on the flat path
    ((1, 2, 9, 9, 9), (3, 2, 3, 2, 3), {"dilation": 2, "padding": 1}),
    ((1, 2, 9, 10, 11), (3, 2, 3, 2, 3), {"stride": 2, "dilation": 2, "padding": 1}),
    ((1, 2, 10, 9, 11), (2, 2, 3, 3, 2), {"stride": (2, 3, 2), "dilation": (3, 2, 1),
                                          "padding": (2, 1, 0)}),
    ((2, 4, 5, 6, 5), (6, 2, 3, 3, 3), {"groups": 2, "padding": (1, 0, 2)}),
    ((1, 6, 5, 5, 6), (6, 1, 3, 3, 3), {"groups": 6, "padding": "same"}),  # depthwise
    ((1, 4, 5, 6, 5), (8, 1, 2, 3, 2), {"groups": 4, "padding": "same", "dilation": (1, 2, 3)}),
    ((1, 3, 5, 6, 7), (2, 3, 3, 3, 3), {"padding": "valid", "stride": (1, 1, 2)}),
    ((1, 5, 3, 4, 5), (7, 5, 1, 3, 3), {"padding": (0, 1, 1)}),
    ((2, 2, 5, 6, 7), (3, 2, 3, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((1, 2, 4, 5, 6), (3, 2, 3, 2, 3), {"padding": (1, 2, 3), "padding_mode": "replicate",
                                        "stride": 2}),
    ((1, 2, 4, 5, 6), (5, 2, 2, 3, 3), {"padding": (4, 1, 2), "padding_mode": "circular"}),
    ((1, 2, 5, 4, 6), (2, 2, 2, 2, 3), {"padding": "same", "padding_mode": "reflect"}),
]


def _case_id(case):
    shape, wshape, kwargs = case
    return f"{shape}-{wshape}-{kwargs}"


def _data(case, dtype):
    shape, wshape, _ = case
    rng = np.random.default_rng(sum(shape) * 31 + sum(wshape))
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    return x, w, b


def _torch_pads(kwargs, kernel):
    """F.pad's (left, right, top, bottom, front, back) for a non-zero padding mode."""
    dilation = naive.triple(kwargs.get("dilation", 1))
    (front, back), (top, bottom), (left, right) = naive.conv3d_padding_amounts(
        kwargs["padding"], kernel, dilation)
    return (left, right, top, bottom, front, back)


def _torch_conv3d(torch, x, w, b, kwargs):
    """PyTorch's conv3d on float64 tensors (those given may require grad)."""
    F = torch.nn.functional
    kwargs = dict(kwargs)
    mode = kwargs.pop("padding_mode", "zeros")
    if mode != "zeros":
        x = F.pad(x, _torch_pads(kwargs, tuple(w.shape[2:])), mode=mode)
        kwargs.pop("padding")
    return F.conv3d(x, w, b, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_matches_naive(case, dtype):
    x, w, b = _data(case, dtype)
    kwargs = case[2]
    got = fastconv.conv3d(x, w, b, **kwargs)
    exact = naive.conv3d(x, w, b, **kwargs)
    magnitude = naive.conv3d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert got.shape == exact.shape and got.dtype == dtype and got.flags.c_contiguous
    assert_matches(got, exact, magnitude, dtype, "direct")


# PyTorch warns that it copies the input for an even kernel with padding='same'
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_matches_torch(case):
    torch = pytest.importorskip("torch")
    x, w, b = _data(case, np.float64)
    got = fastconv.conv3d(x, w, b, **case[2])
    expected = _torch_conv3d(torch, *(torch.from_numpy(a) for a in (x, w, b)), case[2]).numpy()
    assert got.shape == expected.shape
    magnitude = naive.conv3d(np.abs(x), np.abs(w), np.abs(b), **case[2])
    # both sides round: twice the bound against the exact value
    np.testing.assert_array_less(np.abs(got - expected), 2e-13 * magnitude + 1e-300)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backward_matches_torch_autograd(case, dtype):
    torch = pytest.importorskip("torch")
    x, w, b = _data(case, np.float64)
    kwargs = case[2]
    grad = np.random.default_rng(7).standard_normal(
        naive.conv3d(x, w, b, **kwargs).shape)

    def torch_gradients(x, w, b, grad):
        tensors = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
        _torch_conv3d(torch, *tensors, kwargs).backward(torch.from_numpy(grad))
        return [t.grad.numpy() for t in tensors]

    exact = torch_gradients(x, w, b, grad)
    magnitude = torch_gradients(np.abs(x), np.abs(w), np.abs(b), np.abs(grad))
    got = fastconv.conv3d_backward(grad.astype(dtype), x.astype(dtype), w.astype(dtype), **kwargs)
    for name, value, want, scale in zip(("grad_input", "grad_weight", "grad_bias"), got, exact,
                                        magnitude):
        assert value.shape == want.shape and value.dtype == dtype, name
        assert_gradient_matches(value, want, scale, dtype, "direct", what=name)


def test_backward_needs_and_unbatched():
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 6))  # unbatched (C, D, H, W)
    w = np.random.default_rng(4).standard_normal((3, 2, 2, 3, 2))
    got = fastconv.conv3d(x, w, padding=1)
    assert got.shape == (3, 5, 5, 7)
    np.testing.assert_allclose(got, naive.conv3d(x, w, padding=1), rtol=0, atol=1e-12)
    grad = np.ones(got.shape)
    grad_input, grad_weight, grad_bias = fastconv.conv3d_backward(grad, x, w, padding=1,
                                                                  needs=("input",))
    assert grad_weight is None and grad_bias is None and grad_input.shape == x.shape
    batched = fastconv.conv3d_backward(grad[None], x[None], w, padding=1)
    np.testing.assert_allclose(grad_input, batched[0][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(batched[2], np.full(3, grad[0].size), rtol=1e-15)
    assert fastconv.conv3d_backward(grad, x, w, padding=1, needs="bias")[:2] == (None, None)


def test_empty_batch():
    x, w, b = np.zeros((0, 2, 4, 5, 6), np.float32), np.ones((3, 2, 2, 2, 2), np.float32), np.ones(3)
    out = fastconv.conv3d(x, w, b.astype(np.float32), padding=1)
    assert out.shape == (0, 3, 5, 6, 7) and out.dtype == np.float32
    grad_input, grad_weight, grad_bias = fastconv.conv3d_backward(
        np.zeros(out.shape, np.float32), x, w, padding=1)
    assert grad_input.shape == x.shape and grad_input.dtype == np.float32
    np.testing.assert_array_equal(grad_weight, np.zeros(w.shape))
    np.testing.assert_array_equal(grad_bias, np.zeros(3))


def test_dtypes_and_inputs_not_modified():
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (1, 2, 4, 4, 4))
    w = rng.standard_normal((2, 2, 2, 2, 2)).astype(np.float32)
    copies = x.copy(), w.copy()
    got = fastconv.conv3d(x, w, padding=1, padding_mode="circular")
    assert got.dtype == np.float64  # integers compute in float64, as conv2d
    np.testing.assert_allclose(got, naive.conv3d(x, w, padding=1, padding_mode="circular"),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(w, copies[1])
    assert fastconv.conv3d(x.astype(np.float32), w).dtype == np.float32
    assert fastconv.conv3d(x.astype(np.float16), w.astype(np.float16)).dtype == np.float32
    read_only = x.astype(np.float32)
    read_only.flags.writeable = False
    np.testing.assert_allclose(fastconv.conv3d(read_only, w, padding=1, padding_mode="reflect"),
                               naive.conv3d(read_only, w, padding=1, padding_mode="reflect"),
                               rtol=0, atol=1e-5)
    non_contiguous = np.asfortranarray(rng.standard_normal((1, 2, 5, 4, 6)))[..., ::2]
    np.testing.assert_allclose(fastconv.conv3d(non_contiguous, w.astype(np.float64)),
                               naive.conv3d(non_contiguous, w), rtol=0, atol=1e-12)


def test_non_finite_values_propagate_as_the_definition():
    """Zero padding times an infinite tap is NaN (0 * inf), as in PyTorch."""
    x = np.ones((1, 1, 3, 3, 3))
    x[0, 0, 1, 1, 1] = np.nan
    w = np.ones((1, 1, 2, 2, 2))
    w[0, 0, 0, 0, 0] = np.inf
    got = fastconv.conv3d(x, w, padding=1)
    with np.errstate(invalid="ignore"):  # the twin's 0 * inf, on purpose
        exact = naive.conv3d(x, w, padding=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    np.testing.assert_array_equal(got[np.isfinite(exact)], exact[np.isfinite(exact)])
    assert np.isnan(got).any() and np.isinf(got).any()


def test_layer_matches_torch_conv3d():
    torch = pytest.importorskip("torch")
    layer = Conv3D(4, 6, (2, 3, 3), stride=(1, 2, 1), padding=1, groups=2, dtype=np.float64, rng=0)
    reference = torch.nn.Conv3d(4, 6, (2, 3, 3), stride=(1, 2, 1), padding=1, groups=2,
                                dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.weights))
        reference.bias.copy_(torch.from_numpy(layer.bias))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 5, 6, 7))
    x_t = torch.tensor(x, requires_grad=True)
    out_t = reference(x_t)
    out = layer.forward(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=0, atol=1e-12)
    grad = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(grad))
    grad_input = layer.backward(grad)
    np.testing.assert_allclose(grad_input, x_t.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.grad_w, reference.weight.grad.numpy(), rtol=0, atol=1e-11)
    np.testing.assert_allclose(layer.grad_b, reference.bias.grad.numpy(), rtol=0, atol=1e-11)
    lr = 0.1
    expected_weights = layer.weights - lr * layer.grad_w
    layer.update(lr)
    np.testing.assert_allclose(layer.weights, expected_weights, rtol=0, atol=0)
    layer.zero_grad()
    assert not layer.grad_w.any() and not layer.grad_b.any()
    layer.input_grad = False
    layer.forward(x)
    assert layer.backward(grad) is None and layer.grad_w.any()


def test_layer_defaults_and_dtype_rule():
    layer = Conv3D(2, 3, 3, padding="same", padding_mode="replicate", rng=1)
    bound = 1 / np.sqrt(2 * 27)  # PyTorch's init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert layer.weights.shape == (3, 2, 3, 3, 3) and layer.weights.dtype == np.float32
    assert np.abs(layer.weights).max() <= bound and np.abs(layer.bias).max() <= bound
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(
        layer.forward(x),
        naive.conv3d(x, layer.weights, layer.bias, padding="same", padding_mode="replicate"),
        rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="float64"):
        layer.forward(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\)"):
        layer.forward(x[0])
    with pytest.raises(ValueError, match="kernel_size"):
        Conv3D(2, 3, (3, 3))


@pytest.mark.parametrize("input_shape, weight_shape, kwargs, error, message", [
    ((2, 3, 4), (4, 3, 1, 1, 1), {}, ValueError, r"input must be 5-D .*4-D.*\(2, 3, 4\)"),
    ((2, 3, 4, 5, 6, 7), (4, 3, 1, 1, 1), {}, ValueError, r"input must be 5-D"),
    ((1, 3, 4, 5, 6), (4, 3, 3, 3), {}, ValueError, r"weight must be 5-D .*\(4, 3, 3, 3\)"),
    ((1, 3, 4, 5, 6), (4, 2, 1, 1, 1), {}, ValueError, r"expects 2 input channels.*has 3"),
    ((1, 4, 4, 5, 6), (4, 1, 1, 1, 1), {"groups": 3}, ValueError, r"groups=3 must divide"),
    ((1, 4, 4, 5, 6), (6, 1, 1, 1, 1), {"groups": 4}, ValueError, r"groups=4 must divide the out"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"groups": 0}, ValueError, r"groups"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"groups": 1.5}, TypeError, r"groups"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"padding": -1}, ValueError, r"padding must be >= 0"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"padding": (1, 1)}, ValueError, r"padding.*3-tuple"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"padding": "full"}, ValueError, r"padding"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"stride": 0}, ValueError, r"stride must be positive"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"stride": 1.0}, TypeError, r"stride"),
    ((1, 2, 4, 5, 6), (2, 2, 1, 1, 1), {"dilation": (1, 0, 1)}, ValueError, r"dilation"),
    ((1, 2, 4, 5, 6), (2, 2, 3, 3, 3), {"stride": 2, "padding": "same"}, ValueError,
     r"'same'.*strided"),
    ((1, 2, 4, 5, 6), (2, 2, 5, 3, 3), {}, ValueError, r"larger than the padded input"),
    ((1, 2, 4, 5, 6), (2, 2, 3, 3, 3), {"dilation": (1, 3, 1)}, ValueError, r"larger than the pad"),
    ((1, 2, 4, 5, 6), (2, 2, 3, 3, 3), {"padding": 4, "padding_mode": "reflect"}, ValueError,
     r"reflect"),
    ((1, 2, 4, 5, 6), (2, 2, 3, 3, 3), {"padding": 5, "padding_mode": "circular"}, ValueError,
     r"circular"),
    ((1, 2, 4, 5, 6), (2, 2, 3, 3, 3), {"padding_mode": "mirror"}, ValueError, r"padding_mode"),
    ((1, 0, 4, 5, 6), (2, 0, 3, 3, 3), {}, ValueError, r"must not be empty"),
    ((1, 2, 4, 0, 6), (2, 2, 1, 1, 1), {}, ValueError, r"input must not be empty"),
])
def test_bad_input_is_a_clear_error(input_shape, weight_shape, kwargs, error, message):
    with pytest.raises(error, match=message):
        fastconv.conv3d(np.ones(input_shape), np.ones(weight_shape), **kwargs)
    with pytest.raises(error, match=message):
        fastconv.conv3d_backward(np.ones((1,)), np.ones(input_shape), np.ones(weight_shape),
                                 **kwargs)


def test_bad_dtypes_bias_and_gradient_shape():
    x, w = np.ones((1, 2, 4, 5, 6)), np.ones((3, 2, 2, 2, 2))
    with pytest.raises(TypeError, match="conv3d: input is complex"):
        fastconv.conv3d(x.astype(complex), w)
    with pytest.raises(TypeError, match="conv3d: weight is complex"):
        fastconv.conv3d_backward(np.ones((1, 3, 3, 4, 5)), x, w.astype(np.complex64))
    with pytest.raises(TypeError, match="weight must be a real numeric array"):
        fastconv.conv3d(x, w.astype(str))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        fastconv.conv3d(x, w, np.ones(2))
    with pytest.raises(ValueError, match=r"grad_output has shape \(1, 3, 3, 4, 4\).*\(1, 3, 3, 4, 5\)"):
        fastconv.conv3d_backward(np.ones((1, 3, 3, 4, 4)), x, w)
    with pytest.raises(ValueError, match="needs"):
        fastconv.conv3d_backward(np.ones((1, 3, 3, 4, 5)), x, w, needs=("inputs",))


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_forward_pieces_straddling_rows(monkeypatch, chunk):
    """The stride-1 path cuts each output slice into chunks of flat positions; chunks that start
    and end mid-row (and in the dropped columns) must tile the output exactly."""
    from fastconv.backends import direct3d
    monkeypatch.setattr(direct3d, "chunk_positions", lambda itemsize: chunk)
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((2, 3, 4, 9, 11)), rng.standard_normal((6, 3, 2, 3, 4)), \
        rng.standard_normal(6)
    got = fastconv.conv3d(x, w, b, padding=(1, 0, 2), dilation=(1, 2, 1))
    exact = naive.conv3d(x, w, b, padding=(1, 0, 2), dilation=(1, 2, 1))
    magnitude = naive.conv3d(np.abs(x), np.abs(w), np.abs(b), padding=(1, 0, 2), dilation=(1, 2, 1))
    assert_matches(got, exact, magnitude, np.float64, "direct")


def test_weight_gradient_with_non_finite_input_matches_torch():
    """An Inf in the input: the weight gradient must not pick up 0 * Inf from positions past a row
    (the widened stride-1 path is only taken on finite input)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((1, 2, 4, 5, 6)), rng.standard_normal((3, 2, 2, 2, 2))
    # the last column, unpadded: only tap s=1 reads it, but the widened path's dropped column
    # would read it with tap s=0 (times a zero)
    x[0, 1, 2, 2, 5] = np.inf
    grad = rng.standard_normal((1, 3, 5, 6, 5))
    x_t, w_t = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv3d(x_t, w_t, padding=(1, 1, 0)).backward(torch.from_numpy(grad))
    _, grad_weight, _ = fastconv.conv3d_backward(grad, x, w, padding=(1, 1, 0))
    expected = w_t.grad.numpy()
    np.testing.assert_array_equal(np.isnan(grad_weight), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(grad_weight), np.isinf(expected))
    finite = np.isfinite(expected)
    assert finite.any() and not finite.all()
    np.testing.assert_allclose(grad_weight[finite], expected[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "padding": 1}, {"dilation": (1, 2, 1)}])
def test_input_gradient_with_non_finite_weight_matches_torch(kwargs):
    """An Inf tap: the input gradient holds NaN/Inf exactly where PyTorch's does (no 0 * Inf from
    the zeros that frame the output gradient)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    x, w = rng.standard_normal((2, 2, 5, 6, 7)), rng.standard_normal((4, 2, 2, 3, 2))
    w[1, 0, 0, 0, 0], w[2, 1, 1, 2, 1] = np.inf, -np.inf
    x_t, w_t = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = torch.nn.functional.conv3d(x_t, w_t, **kwargs)
    grad = rng.standard_normal(tuple(out.shape))
    out.backward(torch.from_numpy(grad))
    grad_input = fastconv.conv3d_backward(grad, x, w, needs="input", **kwargs)[0]
    expected = x_t.grad.numpy()
    np.testing.assert_array_equal(np.isnan(grad_input), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(grad_input), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(grad_input[finite], expected[finite], rtol=1e-12, atol=1e-12)
    assert not np.isfinite(expected).all()


@st.composite
def conv3d_problems(draw):
    """(input shape, weight shape, kwargs) of a valid conv3d problem: every geometry, every
    padding form and mode; the input grown until the padding mode's rule and the kernel fit."""
    groups = draw(st.integers(1, 2))
    channels_per_group, out_per_group = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(3))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(3))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(3))
    choices = [st.integers(0, 2), st.tuples(*(st.integers(0, 2),) * 3), st.just("valid")]
    if stride == (1, 1, 1):
        choices.append(st.just("same"))
    padding = draw(st.one_of(choices))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    pads = naive.conv3d_padding_amounts(padding, kernel, dilation)
    size = []
    for (before, after), k, d, s in zip(pads, kernel, dilation, stride):
        smallest = max(1, d * (k - 1) + 1 - before - after, before + 1, after + 1)
        size.append(smallest + draw(st.integers(0, 2 * s)))
    shape = (draw(st.integers(1, 2)), groups * channels_per_group, *size)
    wshape = (groups * out_per_group, channels_per_group, *kernel)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  padding_mode=mode)
    return shape, wshape, kwargs


@settings(max_examples=60)
@given(problem=conv3d_problems(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**32 - 1))
def test_property_forward_and_adjoint_gradients(problem, dtype, seed):
    """Forward vs the twin; gradients through the adjoint identities, which hold for any linear
    map: <conv3d(x, w), g> = <x, grad_input> and <conv3d(x, w) - bias part, g> = <w, grad_weight>."""
    shape, wshape, kwargs = problem
    note(f"{shape} {wshape} {kwargs}")
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(shape).astype(dtype), rng.standard_normal(wshape).astype(dtype)
    out = fastconv.conv3d(x, w, **kwargs)
    exact = naive.conv3d(x, w, **kwargs)
    assert_matches(out, exact, naive.conv3d(np.abs(x), np.abs(w), **kwargs), dtype, "direct")
    grad = rng.standard_normal(out.shape).astype(dtype)
    grad_input, grad_weight, grad_bias = fastconv.conv3d_backward(grad, x, w, **kwargs)
    inner = np.vdot(exact, grad.astype(np.float64))
    scale = np.vdot(naive.conv3d(np.abs(x), np.abs(w), **kwargs), np.abs(grad)) + 1e-300
    rel = 1e-4 if dtype == np.float32 else 1e-12
    assert abs(np.vdot(x.astype(np.float64), grad_input) - inner) <= rel * scale
    assert abs(np.vdot(w.astype(np.float64), grad_weight) - inner) <= rel * scale
    np.testing.assert_allclose(grad_bias, grad.astype(np.float64).sum(axis=(0, 2, 3, 4)),
                               rtol=rel, atol=rel * np.abs(grad).sum())
