"""Non-finite values and the documented error bounds on long reductions.

NaN and Inf must come out exactly where the direct definition puts them, whichever backend ``auto``
picks.  A transform mixes every input into every output, so ``auto`` never runs the FFT on
non-finite data; ``algorithm="fft"`` on such data is the caller's explicit choice, and its result is
documented below (non-finite values spread over every output of the affected planes).

Zero padding and Inf: the definition multiplies a padded zero by the weight, and ``0 * inf`` is
NaN.  PyTorch and scipy.signal follow IEEE here and so does fastconv, on every backend: an infinite
tap turns every output whose window overlaps the padding into NaN (checked against torch below).
The kernels skip implicit padding, so conv2d materialises the zeros when the weight is not finite
(and conv2d_backward when grad_output is not finite and grad_weight is wanted).
"""
import numpy as np
import pytest

import fastconv
from tests import naive
from tests.tolerances import assert_matches

ELEMENTWISE_BACKENDS = ("direct", "im2col")


def _sprinkle(rng, array, count=3):
    """``array`` with NaN, +Inf and -Inf at random positions."""
    array = array.copy()
    flat = array.reshape(-1)
    positions = rng.choice(flat.size, size=min(count * 3, flat.size), replace=False)
    for position, value in zip(positions, [np.nan, np.inf, -np.inf] * count):
        flat[position] = value
    return array


def assert_same_non_finite(got, exact, dtype, backend, magnitude):
    """NaN exactly where ``exact`` is NaN, the same infinities, and finite values within bounds."""
    got = np.asarray(got, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    infinite = np.isinf(exact)
    np.testing.assert_array_equal(got[infinite], exact[infinite])
    finite = np.isfinite(exact)
    assert np.isfinite(got[finite]).all()
    assert_matches(got[finite], exact[finite], magnitude[finite], dtype, backend)


CASES = [
    ((1, 3, 12, 12), (4, 3, 3, 3), {"padding": 1}),
    ((2, 4, 10, 11), (4, 2, 3, 2), {"groups": 2, "stride": 2, "dilation": 2, "padding": 2}),
    ((1, 2, 9, 9), (2, 2, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((1, 1, 40, 40), (1, 1, 17, 17), {}),  # auto would pick the FFT for finite data
]


@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_non_finite_like_the_definition(case, where, dtype, rng):
    x_shape, w_shape, kwargs = case
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    if where == "input":
        x = _sprinkle(rng, x)
    else:
        w = _sprinkle(rng, w, count=1)
    with np.errstate(invalid="ignore"):
        exact = naive.conv2d(x, w, **kwargs)
        magnitude = naive.conv2d(np.abs(x), np.abs(w), **kwargs)
    assert not np.isfinite(exact).all()
    for name in ELEMENTWISE_BACKENDS + ("auto",):
        got = fastconv.conv2d(x, w, algorithm=name, **kwargs)
        assert_same_non_finite(got, exact, dtype, "direct" if name == "auto" else name, magnitude)


def test_explicit_fft_on_nan_spreads_over_the_plane(rng):
    """Documented behaviour of the caller's explicit choice: one NaN in a plane makes every output
    it contributes to NaN (the transform mixes all samples), not just the windows touching it."""
    x = rng.standard_normal((1, 1, 16, 16))
    w = rng.standard_normal((1, 1, 5, 5))
    x[0, 0, 0, 0] = np.nan
    direct = fastconv.conv2d(x, w, algorithm="direct")
    spread = fastconv.conv2d(x, w, algorithm="fft")
    assert np.isnan(direct).sum() == 1
    assert np.isnan(spread).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_weight_times_zero_padding_is_nan_like_torch(dtype):
    torch = pytest.importorskip("torch")
    x = np.ones((1, 1, 5, 6), dtype=dtype)
    w = np.ones((1, 1, 3, 3), dtype=dtype)
    w[0, 0, 0, 0] = np.inf
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1,
                                          stride=(1, 2)).numpy()
    for name in ("direct", "im2col", "auto"):
        got = fastconv.conv2d(x, w, padding=1, stride=(1, 2), algorithm=name)
        np.testing.assert_array_equal(got, expected)  # NaN in the top row and left column


@pytest.mark.parametrize("where", ["grad_output", "input", "weight"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_backward_non_finite_like_the_definition(where, dtype, rng):
    kwargs = {"padding": 1, "stride": 2, "groups": 2}
    x = rng.standard_normal((2, 4, 9, 9)).astype(dtype)
    w = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    g = rng.standard_normal((2, 4, 5, 5)).astype(dtype)
    if where == "grad_output":
        g = _sprinkle(rng, g, count=1)
    elif where == "input":
        x = _sprinkle(rng, x, count=1)
    else:
        w = _sprinkle(rng, w, count=1)
    with np.errstate(invalid="ignore"):
        exact = naive.conv2d_backward(g, x, w, **kwargs)
    for name in ELEMENTWISE_BACKENDS + ("auto",):
        got = fastconv.conv2d_backward(g, x, w, algorithm=name, **kwargs)
        for value, want in zip(got, exact):
            np.testing.assert_array_equal(np.isnan(value), np.isnan(want))
            np.testing.assert_array_equal(value[np.isinf(want)], want[np.isinf(want)])


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
def test_correlate2d_auto_non_finite_like_the_definition(mode, boundary, rng):
    in1 = _sprinkle(rng, rng.standard_normal((48, 40)))
    in2 = rng.standard_normal((15, 15))  # large enough that auto picks the FFT for finite data
    got = fastconv.correlate2d(in1, in2, mode, boundary)
    with np.errstate(invalid="ignore"):
        exact = naive.correlate2d(in1, in2, mode, boundary)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    np.testing.assert_array_equal(got[np.isinf(exact)], exact[np.isinf(exact)])


# --- accuracy on long reductions -------------------------------------------------------------------
# The reference is the float64 direct backend (itself bounded by 1e-13 against the naive twin in
# test_conv2d.py and test_properties.py): the naive twin's Python loops would take minutes here.
LONG_REDUCTIONS = [
    ("fft", (1, 256, 28, 28), (2, 256, 13, 13)),
    ("fft", (1, 512, 20, 20), (2, 512, 11, 11)),
    ("im2col", (1, 512, 12, 12), (4, 512, 3, 3)),     # C*R*S = 4608
    ("im2col", (1, 1024, 10, 10), (4, 1024, 3, 3)),   # C*R*S = 9216
    ("im2col", (1, 64, 24, 24), (4, 64, 9, 9)),       # C*R*S = 5184
    ("direct", (1, 512, 12, 12), (4, 512, 3, 3)),
]


@pytest.mark.parametrize("backend, x_shape, w_shape", LONG_REDUCTIONS)
def test_float32_bounds_hold_on_long_reductions(backend, x_shape, w_shape, rng):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    exact = fastconv.conv2d(x32.astype(np.float64), w32.astype(np.float64), algorithm="direct")
    magnitude = fastconv.conv2d(np.abs(x32).astype(np.float64), np.abs(w32).astype(np.float64),
                                algorithm="direct")
    got = fastconv.conv2d(x32, w32, algorithm=backend)
    assert got.dtype == np.float32
    assert_matches(got, exact, magnitude, np.float32, backend)
