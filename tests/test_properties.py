"""Property tests: random shapes and parameters, every backend that accepts a case vs the naive twin.

Shapes stay small (a handful of rows and channels) so that an example costs milliseconds; the
geometry is drawn so that every example is a valid problem (no rejection sampling).  Array values
come from a drawn seed: hypothesis explores the geometry, NumPy fills in the data.

Profiles (tests/conftest.py): "ci" by default, "thorough" with FASTCONV_HYPOTHESIS_PROFILE=thorough.
"""
import numpy as np
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

import fastconv
import fastconv._params
from tests import naive
from tests.tolerances import assert_gradient_matches, assert_matches

FLOAT_DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**32 - 1)
BACKENDS = ("direct", "im2col", "fft")


def _pads_for(padding, kernel, dilation):
    """(before, after) per axis as PyTorch resolves ``padding``."""
    return naive.padding_amounts(padding, kernel, dilation)


def _axis_size(draw, out_size, stride, dilated_kernel, pad_before, pad_after):
    """An input size giving at least ``out_size`` outputs (plus a remainder the stride skips)."""
    needed = (out_size - 1) * stride + dilated_kernel - pad_before - pad_after
    return max(1, needed + draw(st.integers(0, stride - 1)))


@st.composite
def conv_problems(draw, padding_modes=("zeros", "reflect", "replicate", "circular")):
    """kwargs for conv2d with input/weight shapes: groups, stride, dilation, every padding form."""
    groups = draw(st.integers(1, 3))
    channels_per_group = draw(st.integers(1, 3))
    out_per_group = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding_choices = [st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                       st.just("valid")]
    if stride == (1, 1):
        padding_choices.append(st.just("same"))
    padding = draw(st.one_of(padding_choices))
    padding_mode = draw(st.sampled_from(padding_modes)) if padding != "valid" else "zeros"
    top, bottom, left, right = _pads_for(padding, kernel, dilation)
    dilated = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    in_h = _axis_size(draw, draw(st.integers(1, 5)), stride[0], dilated[0], top, bottom)
    in_w = _axis_size(draw, draw(st.integers(1, 5)), stride[1], dilated[1], left, right)
    # reflect needs padding < size, circular padding <= size: grow the input until it holds
    if padding_mode == "reflect":
        in_h, in_w = max(in_h, top + 1, bottom + 1), max(in_w, left + 1, right + 1)
    elif padding_mode == "circular":
        in_h, in_w = max(in_h, top, bottom), max(in_w, left, right)
    return dict(
        input_shape=(batch, groups * channels_per_group, in_h, in_w),
        weight_shape=(groups * out_per_group, channels_per_group) + kernel,
        kwargs=dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                    padding_mode=padding_mode),
    )


def _norms(a, b):
    """``||a||_2 * ||b||_2`` in float64: the scale of an FFT's rounding error (tests/tolerances.py)."""
    return float(np.linalg.norm(np.ravel(a).astype(np.float64))
                 * np.linalg.norm(np.ravel(b).astype(np.float64)))


def _rank_one_weight(rng, shape):
    out_channels, channels, kernel_h, kernel_w = shape
    col = rng.standard_normal((out_channels, channels, kernel_h, 1))
    row = rng.standard_normal((out_channels, channels, 1, kernel_w))
    return col * row


@given(problem=conv_problems(), dtype=FLOAT_DTYPES, with_bias=st.booleans(),
       rank_one=st.booleans(), unbatched=st.booleans(), seed=SEEDS)
def test_conv2d_every_backend_matches_naive(problem, dtype, with_bias, rank_one, unbatched, seed):
    rng = np.random.default_rng(seed)
    kwargs = problem["kwargs"]
    x = rng.standard_normal(problem["input_shape"]).astype(dtype)
    weight_shape = problem["weight_shape"]
    w = (_rank_one_weight(rng, weight_shape) if rank_one else rng.standard_normal(weight_shape))
    w = w.astype(dtype)
    bias = rng.standard_normal(weight_shape[0]).astype(dtype) if with_bias else None
    if unbatched:
        x = x[0]
    exact = naive.conv2d(x, w, bias, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), None if bias is None else np.abs(bias), **kwargs)
    winograd_eligible = (
        weight_shape[2:] == (3, 3)
        and fastconv._params.as_pair(kwargs.get("stride", 1), "stride", minimum=1) == (1, 1)
        and fastconv._params.as_pair(kwargs.get("dilation", 1), "dilation", minimum=1) == (1, 1)
    )
    names = (BACKENDS + (("separable",) if rank_one else ())
             + (("winograd",) if winograd_eligible else ()) + ("auto",))
    # auto may pick any eligible backend: hold it to the loosest bound among them
    auto_bound = "winograd" if winograd_eligible else "fft"
    for name in names:
        note(f"algorithm={name}")
        got = fastconv.conv2d(x, w, bias, algorithm=name, **kwargs)
        assert got.dtype == dtype and got.shape == exact.shape
        assert_matches(got, exact, magnitude, dtype, auto_bound if name == "auto" else name,
                       norms=_norms(x, w))


@given(problem=conv_problems(), dtype=FLOAT_DTYPES, seed=SEEDS)
# an output that sees only padding: exact 0, FFT rounding noise (see tests/tolerances.py)
@example(problem=dict(input_shape=(1, 1, 1, 1), weight_shape=(1, 1, 1, 1),
                      kwargs=dict(stride=(1, 2), padding=1, dilation=(1, 1), groups=1,
                                  padding_mode="zeros")),
         dtype=np.float32, seed=0)
def test_conv2d_backward_every_backend_matches_naive(problem, dtype, seed):
    rng = np.random.default_rng(seed)
    kwargs = problem["kwargs"]
    x = rng.standard_normal(problem["input_shape"]).astype(dtype)
    w = rng.standard_normal(problem["weight_shape"]).astype(dtype)
    out_shape = naive.conv2d(x, w, **kwargs).shape
    grad = rng.standard_normal(out_shape).astype(dtype)
    exact = naive.conv2d_backward(grad, x, w, **kwargs)
    magnitude = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w), **kwargs)
    for name in BACKENDS + ("auto",):
        note(f"algorithm={name}")
        got = fastconv.conv2d_backward(grad, x, w, algorithm=name, **kwargs)
        bound = "fft" if name == "auto" else name
        for what, value, want, scale, norms in zip(
            ("grad_input", "grad_weight"), got, exact, magnitude, (_norms(grad, w), _norms(grad, x))
        ):
            assert value.dtype == dtype and value.shape == want.shape
            assert_gradient_matches(value, want, scale, dtype, bound, what, norms=norms)
        # grad_bias is a plain sum with a float64 accumulator: the direct bound holds for every backend
        assert_gradient_matches(got[2], exact[2], magnitude[2], dtype, "direct", "grad_bias")


@st.composite
def transpose_problems(draw):
    groups = draw(st.integers(1, 3))
    in_per_group = draw(st.integers(1, 3))
    out_per_group = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    in_hw = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    # the output (size - 1) * stride - 2 * pad + dilation * (R - 1) + output_padding + 1 must be >= 1
    padding = tuple(
        draw(st.integers(0, min(3, ((n - 1) * s + d * (k - 1) + extra) // 2)))
        for n, s, d, k, extra in zip(in_hw, stride, dilation, kernel, output_padding)
    )
    return dict(
        input_shape=(batch, groups * in_per_group) + in_hw,
        weight_shape=(groups * in_per_group, out_per_group) + kernel,
        kwargs=dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                    dilation=dilation),
    )


@given(problem=transpose_problems(), dtype=FLOAT_DTYPES, with_bias=st.booleans(), seed=SEEDS)
def test_conv_transpose2d_matches_naive(problem, dtype, with_bias, seed):
    rng = np.random.default_rng(seed)
    kwargs = problem["kwargs"]
    x = rng.standard_normal(problem["input_shape"]).astype(dtype)
    w = rng.standard_normal(problem["weight_shape"]).astype(dtype)
    out_channels = problem["weight_shape"][1] * kwargs["groups"]
    bias = rng.standard_normal(out_channels).astype(dtype) if with_bias else None
    exact = naive.conv_transpose2d(x, w, bias, **kwargs)
    magnitude = naive.conv_transpose2d(np.abs(x), np.abs(w),
                                       None if bias is None else np.abs(bias), **kwargs)
    got = fastconv.conv_transpose2d(x, w, bias, **kwargs)
    assert got.dtype == dtype and got.shape == exact.shape
    assert_gradient_matches(got, exact, magnitude, dtype, "fft", "conv_transpose2d",
                            norms=_norms(x, w))


# --- pooling ---------------------------------------------------------------------------------------
@st.composite
def pool_problems(draw, allow_padding=True, allow_dilation=True):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel) if allow_padding else (0, 0)
    dilation = ((draw(st.integers(1, 2)), draw(st.integers(1, 2))) if allow_dilation else (1, 1))
    ceil_mode = draw(st.booleans())
    effective_stride = kernel if stride is None else stride
    # at least one window must fit: size + 2 * pad >= dilation * (kernel - 1) + 1
    size = tuple(
        max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 2 * s + 1))
        for k, s, p, d in zip(kernel, effective_stride, padding, dilation)
    )
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + size
    kwargs = dict(kernel_size=kernel, stride=stride, ceil_mode=ceil_mode)
    if allow_padding:
        kwargs["padding"] = padding
    if allow_dilation:
        kwargs["dilation"] = dilation
    return shape, kwargs


def _distinct_values(rng, shape, dtype):
    """Distinct, exactly representable values: max pooling has no ties to break."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size // 2).reshape(shape).astype(dtype)


@given(problem=pool_problems(), dtype=FLOAT_DTYPES, seed=SEEDS)
# a dilated window that holds only padding routes no gradient
@example(problem=((1, 1, 1, 1), dict(kernel_size=(1, 2), stride=None, ceil_mode=False,
                                     padding=(0, 1), dilation=(1, 2))),
         dtype=np.float32, seed=0)
def test_max_pool2d_and_backward_match_naive(problem, dtype, seed):
    rng = np.random.default_rng(seed)
    shape, kwargs = problem
    x = _distinct_values(rng, shape, dtype)
    out, indices = fastconv.max_pool2d(x, return_indices=True, **kwargs)
    want, want_indices = naive.max_pool2d(x, return_indices=True, **kwargs)
    np.testing.assert_array_equal(out, want.astype(dtype))  # a maximum is exact
    np.testing.assert_array_equal(indices, want_indices)
    grad = rng.standard_normal(out.shape).astype(dtype)
    got = fastconv.max_pool2d_backward(grad, x, **kwargs)
    _assert_routed_sum(got, naive.max_pool2d_backward(grad, x, **kwargs),
                       naive.max_pool2d_backward(np.abs(grad), x, **kwargs), dtype, kwargs)


def _assert_routed_sum(got, want, scale, dtype, kwargs):
    """A max-pooling gradient element sums the output gradients of the windows whose maximum it
    was (at most R*S of them): its rounding error is bounded by R*S*eps times the sum of their
    magnitudes, ``scale`` (cancellation makes a bound relative to the result itself wrong)."""
    kernel_h, kernel_w = kwargs["kernel_size"]
    bound = kernel_h * kernel_w * np.finfo(dtype).eps * scale
    np.testing.assert_array_less(np.abs(got - want), bound + np.finfo(dtype).tiny)


@given(problem=pool_problems(allow_dilation=False), dtype=FLOAT_DTYPES,
       count_include_pad=st.booleans(), divisor=st.one_of(st.none(), st.integers(1, 9)),
       seed=SEEDS)
def test_avg_pool2d_and_backward_match_naive(problem, dtype, count_include_pad, divisor, seed):
    rng = np.random.default_rng(seed)
    shape, kwargs = problem
    kwargs.update(count_include_pad=count_include_pad, divisor_override=divisor)
    x = rng.standard_normal(shape).astype(dtype)
    out = fastconv.avg_pool2d(x, **kwargs)
    want = naive.avg_pool2d(x, **kwargs)
    scale = naive.avg_pool2d(np.abs(x), **kwargs)
    taps = kwargs["kernel_size"][0] * kwargs["kernel_size"][1]
    eps = np.finfo(dtype).eps
    assert out.dtype == dtype
    np.testing.assert_array_less(np.abs(out - want), 2 * taps * eps * scale + np.finfo(dtype).tiny)
    grad = rng.standard_normal(out.shape).astype(dtype)
    got = fastconv.avg_pool2d_backward(grad, x, **kwargs)
    want = naive.avg_pool2d_backward(grad, x, **kwargs)
    scale = naive.avg_pool2d_backward(np.abs(grad), x, **kwargs)
    np.testing.assert_array_less(np.abs(got - want), 2 * taps * eps * scale + np.finfo(dtype).tiny)


@given(problem=pool_problems(allow_padding=False, allow_dilation=False), dtype=FLOAT_DTYPES,
       norm_type=st.sampled_from([1, 2, 3, 1.5, np.inf]), seed=SEEDS)
def test_lp_pool2d_and_backward_match_naive(problem, dtype, norm_type, seed):
    rng = np.random.default_rng(seed)
    shape, kwargs = problem
    # positive and away from zero: x ** p of a negative x is NaN for fractional p (and odd p can
    # give a negative window sum, whose 1/p-th power is NaN, as in PyTorch), and the p-norm's
    # gradient is singular where a whole window is zero
    x = rng.uniform(0.5, 2.0, shape).astype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    out = fastconv.lp_pool2d(x, norm_type, **kwargs)
    grad = rng.standard_normal(out.shape).astype(dtype)
    got = fastconv.lp_pool2d_backward(grad, x, norm_type, **kwargs)
    assert out.dtype == dtype and got.dtype == dtype
    if np.isinf(norm_type):  # PyTorch's limit: max pooling of |x| (x > 0 here)
        np.testing.assert_array_equal(out, naive.max_pool2d(x, **kwargs))
        _assert_routed_sum(got, naive.max_pool2d_backward(grad, x, **kwargs),
                           naive.max_pool2d_backward(np.abs(grad), x, **kwargs), dtype, kwargs)
        return
    np.testing.assert_allclose(out, naive.lp_pool2d(x, norm_type, **kwargs), rtol=rtol, atol=0)
    want = naive.lp_pool2d_backward(grad, x, norm_type, **kwargs)
    scale = naive.lp_pool2d_backward(np.abs(grad), x, norm_type, **kwargs)
    np.testing.assert_array_less(np.abs(got - want), 10 * rtol * np.abs(scale) + 1e-30)


# --- scipy.signal ------------------------------------------------------------------------------------
SIGNAL_DTYPES = [np.int16, np.uint8, np.int64, np.float32, np.float64, np.complex64, np.complex128]


@st.composite
def signal_problems(draw):
    mode = draw(st.sampled_from(["full", "same", "valid"]))
    boundary = draw(st.sampled_from(["fill", "wrap", "symm"]))
    in1 = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    in2 = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    if mode == "valid" and not (all(a >= b for a, b in zip(in1, in2))
                                or all(b >= a for a, b in zip(in1, in2))):
        in2 = (min(in1[0], in2[0]), min(in1[1], in2[1]))
    fillvalue = draw(st.sampled_from([0, 2])) if boundary == "fill" else 0
    dtype1, dtype2 = draw(st.sampled_from(SIGNAL_DTYPES)), draw(st.sampled_from(SIGNAL_DTYPES))
    return in1, in2, mode, boundary, fillvalue, np.dtype(dtype1), np.dtype(dtype2)


def _signal_data(rng, shape, dtype):
    if dtype.kind in "iu":
        low = 0 if dtype.kind == "u" else -20
        return rng.integers(low, 20, shape).astype(dtype)
    values = rng.standard_normal(shape)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


@given(problem=signal_problems(), function=st.sampled_from(["correlate2d", "convolve2d"]),
       rank_one=st.booleans(), seed=SEEDS)
# found by the thorough run: a zero row in a rank-1 kernel (see tests/tolerances.py)
@example(problem=((1, 6), (4, 2), "full", "fill", 0, np.dtype(np.float32), np.dtype(np.float32)),
         function="correlate2d", rank_one=True, seed=810)
def test_signal_every_backend_matches_naive(problem, function, rank_one, seed):
    rng = np.random.default_rng(seed)
    in1_shape, in2_shape, mode, boundary, fillvalue, dtype1, dtype2 = problem
    in1 = _signal_data(rng, in1_shape, dtype1)
    in2 = _signal_data(rng, in2_shape, dtype2)
    if rank_one:  # a separable kernel
        # integer-valued factors in [0, 16): products are exact in every dtype drawn (uint8 and
        # float32 included), so the kernel is exactly rank 1 whatever the result dtype
        col = rng.integers(0, 16, (in2_shape[0], 1))
        row = rng.integers(0, 16, (1, in2_shape[1]))
        in2 = (col * row).astype(dtype2)
    result_dtype = np.result_type(in1, in2)
    exact = getattr(naive, function)(in1, in2, mode, boundary, fillvalue)
    magnitude = getattr(naive, function)(np.abs(in1), np.abs(in2), mode, boundary, abs(fillvalue))
    # the FFT's norm term (tests/tolerances.py) for the padded in1: every padded sample is bounded
    # by max(|in1|, |fillvalue|)
    padded_size = (in1_shape[0] + 2 * in2_shape[0]) * (in1_shape[1] + 2 * in2_shape[1])
    norms = (np.sqrt(padded_size) * max(float(np.max(np.abs(in1))), abs(fillvalue))
             * float(np.linalg.norm(np.abs(in2).astype(np.float64))))
    names = ["auto", "direct", "fft"]
    if result_dtype.kind in "fc":
        names.append("im2col")
    swapped = mode == "valid" and in1_shape != in2_shape and all(
        b >= a for a, b in zip(in1_shape, in2_shape))
    if result_dtype.kind == "f" and rank_one and not swapped:  # swapped: in1 is the kernel
        names.append("separable")
    for name in names:
        note(f"algorithm={name}")
        got = getattr(fastconv, function)(in1, in2, mode, boundary, fillvalue, algorithm=name)
        assert got.dtype == result_dtype and got.shape == exact.shape
        if result_dtype.kind in "iu":
            # the float64 twin is exact here (|sums| < 2**53); scipy wraps modulo 2**bits, as this cast
            np.testing.assert_array_equal(got, exact.real.astype(np.int64).astype(result_dtype))
        else:
            real_dtype = np.finfo(result_dtype).dtype
            assert_matches(got, exact, magnitude, real_dtype, "fft" if name == "auto" else name,
                           norms=norms)


@pytest.mark.parametrize("profile", ["ci", "thorough"])
def test_profiles_are_registered(profile):
    from hypothesis import settings

    loaded = settings.get_profile(profile)
    assert loaded.deadline is None
    assert loaded.max_examples >= (10_000 if profile == "thorough" else 100)
