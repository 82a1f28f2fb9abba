"""correlate2d / convolve2d: scipy.signal's behaviour (values, dtypes, errors) on every backend.

Float and complex results are checked against the float64/complex128 naive twin with the documented
bounds of tests/tolerances.py (complex: a few more roundings per multiply-add, so 4x the bound of
the component dtype); integer results must equal scipy.signal's bit for bit.  scipy.signal is the
reference for dtypes, shapes and errors.
"""
import numpy as np
import pytest
import scipy.signal

import fastconv
from tests import naive
from tests.tolerances import RELATIVE

FUNCTIONS = ["correlate2d", "convolve2d"]
MODES = ["full", "same", "valid"]
BOUNDARIES = ["fill", "wrap", "symm"]
FLOAT_DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # full-range values: sums overflow and must wrap exactly as scipy's integer loop does
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


def _assert_close_to_naive(got, function, in1, in2, mode, boundary, fillvalue, backend):
    exact = getattr(naive, function)(in1, in2, mode, boundary, fillvalue)
    magnitude = np.abs(getattr(naive, function)(np.abs(in1), np.abs(in2), mode, boundary,
                                                abs(fillvalue)))
    dtype = np.dtype(got.dtype)
    component = np.dtype(np.float32 if dtype in (np.complex64, np.float32) else np.float64)
    rel = RELATIVE[(component.name, "fft" if backend == "auto" else backend)]
    if dtype.kind == "c":
        rel *= 4
    scale = np.max(magnitude, initial=0.0) if backend in ("fft", "auto") else magnitude
    bound = rel * scale + np.finfo(component).tiny
    error = np.abs(got.astype(exact.dtype) - exact)
    assert np.all(error <= bound), (
        f"{function} {mode} {boundary} {backend} {dtype}: max error {error.max():.3g}, "
        f"bound {np.max(bound):.3g}"
    )


def _check_against_scipy(function, in1, in2, mode, boundary, fillvalue, backend):
    expected = getattr(scipy.signal, function)(in1, in2, mode, boundary, fillvalue)
    got = getattr(fastconv, function)(in1, in2, mode, boundary, fillvalue, algorithm=backend)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert got.flags.c_contiguous
    if got.dtype.kind in "iu":
        np.testing.assert_array_equal(got, expected)
    else:
        _assert_close_to_naive(got, function, in1, in2, mode, boundary, fillvalue, backend)
    return got


# --- scipy's documented examples (TestConvolve2d / TestCorrelate2d) ----------------------------
A = [[1, 2, 3], [3, 4, 5]]
B = [[2, 3, 4], [4, 5, 6]]


@pytest.mark.parametrize("backend", ["direct", "fft", "auto"])
@pytest.mark.parametrize("function,kwargs,expected", [
    ("convolve2d", {}, [[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]]),
    ("convolve2d", {"fillvalue": 1},
     [[24, 26, 31, 34, 32], [28, 40, 62, 64, 52], [32, 46, 67, 62, 48]]),
    ("convolve2d", {"boundary": "wrap"},
     [[80, 80, 74, 80, 80], [68, 68, 62, 68, 68], [80, 80, 74, 80, 80]]),
    ("convolve2d", {"boundary": "symm"},
     [[34, 30, 44, 62, 66], [52, 48, 62, 80, 84], [82, 78, 92, 110, 114]]),
    ("correlate2d", {}, [[6, 17, 32, 23, 12], [22, 50, 82, 54, 26], [12, 25, 38, 23, 10]]),
    ("correlate2d", {"boundary": "wrap"},
     [[64, 64, 70, 64, 64], [76, 76, 82, 76, 76], [64, 64, 70, 64, 64]]),
    ("correlate2d", {"mode": "same", "boundary": "symm"}, [[64, 82, 96], [82, 100, 114]]),
])
def test_documented_examples(function, kwargs, expected, backend):
    got = getattr(fastconv, function)(A, B, algorithm=backend, **kwargs)
    assert got.dtype == np.array(A).dtype  # Python ints: scipy's result is the integer type
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", ["direct", "fft"])
@pytest.mark.parametrize("swap", [False, True])
def test_valid_mode_either_input_larger(swap, backend):
    e = [[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]]
    f = [[1, 2, 3], [3, 4, 5]]
    first, second = (f, e) if swap else (e, f)
    np.testing.assert_array_equal(
        fastconv.convolve2d(first, second, "valid", algorithm=backend), [[62, 80, 98, 116, 134]]
    )
    np.testing.assert_array_equal(
        fastconv.correlate2d(first, second, "valid", algorithm=backend),
        scipy.signal.correlate2d(first, second, "valid"),
    )


@pytest.mark.parametrize("backend", ["direct", "fft"])
def test_valid_mode_complex(backend):
    e = [[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]]
    f = np.array([[1, 2, 3], [3, 4, 5]], dtype=complex) + 1j
    expected = [[62 + 24j, 80 + 30j, 98 + 36j, 116 + 42j, 134 + 48j]]
    for first, second in ((e, f), (f, e)):
        got = fastconv.convolve2d(first, second, "valid", algorithm=backend)
        assert got.dtype == np.complex128
        np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("backend", ["direct", "fft", "im2col"])
@pytest.mark.parametrize("mode", MODES)
def test_correlate2d_conjugates_in2(mode, backend, rng):
    in1 = _random(rng, (9, 8), np.complex128)
    in2 = _random(rng, (4, 3), np.complex128)
    got = _check_against_scipy("correlate2d", in1, in2, mode, "fill", 0, backend)
    # and it is not conv2d's unconjugated correlation
    unconjugated = naive.correlate2d(in1, np.conj(in2), mode)
    assert np.max(np.abs(got - unconjugated)) > 1e-3


def test_autocorrelation_peak_is_real_energy(rng):
    signal = _random(rng, (16, 16), np.complex128)
    auto = fastconv.correlate2d(signal, signal, "full")
    centre = auto[15, 15]
    np.testing.assert_allclose(centre, np.sum(np.abs(signal) ** 2), rtol=1e-12)


# --- randomised grid against scipy.signal -------------------------------------------------------
# (in1 shape, in2 shape): 1x1, kernel >= input, odd sizes, 1-D-like, kernel larger than the input in
# one dimension only, and sizes up to 300 / kernels up to 65.
SHAPES = [
    ((1, 1), (1, 1)),
    ((1, 7), (1, 3)),
    ((7, 5), (3, 3)),
    ((5, 6), (7, 4)),
    ((4, 9), (4, 9)),
    ((3, 4), (8, 11)),
    ((12, 10), (1, 4)),
    ((23, 17), (6, 5)),
    ((300, 11), (5, 2)),
    ((70, 66), (65, 61)),
]


def _shape_id(case):
    return f"{case[0][0]}x{case[0][1]}-k{case[1][0]}x{case[1][1]}"


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shapes", SHAPES, ids=_shape_id)
def test_auto_matches_scipy_every_dtype(shapes, mode, boundary, rng):
    shape1, shape2 = shapes
    if mode == "valid" and not (
        all(a >= b for a, b in zip(shape1, shape2)) or all(b >= a for a, b in zip(shape1, shape2))
    ):
        pytest.skip("valid needs one input to contain the other (error tested separately)")
    big = shape2[0] * shape2[1] > 1000
    dtypes = [np.complex128, np.int16] if big else FLOAT_DTYPES + INT_DTYPES
    for dtype in dtypes:
        in1 = _random(rng, shape1, dtype)
        in2 = _random(rng, shape2, dtype)
        fillvalue = 0 if dtype == np.float32 else 2
        for function in FUNCTIONS:
            _check_against_scipy(function, in1, in2, mode, boundary, fillvalue, "auto")


@pytest.mark.parametrize("backend", ["direct", "fft", "im2col"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shapes", [SHAPES[2], SHAPES[3], SHAPES[7], ((40, 37), (17, 19))],
                         ids=_shape_id)
def test_every_backend_matches_scipy(shapes, boundary, dtype, backend, rng):
    in1 = _random(rng, shapes[0], dtype)
    in2 = _random(rng, shapes[1], dtype)
    for mode in MODES:
        if mode == "valid" and shapes == SHAPES[3]:
            continue
        for function in FUNCTIONS:
            _check_against_scipy(function, in1, in2, mode, boundary, 1.5, backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
def test_separable_backend_on_rank1_kernel(mode, dtype, rng):
    in1 = _random(rng, (20, 17), dtype)
    in2 = np.outer(rng.standard_normal(5), rng.standard_normal(7)).astype(dtype)
    for boundary in BOUNDARIES:
        for function in FUNCTIONS:
            _check_against_scipy(function, in1, in2, mode, boundary, 0.5, "separable")


@pytest.mark.parametrize("backend", ["direct", "fft", "auto"])
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_results_are_exact(dtype, backend, rng):
    """Wrap-around like scipy's integer accumulation (8/16-bit full-range sums overflow); the FFT
    is used only when it provably rounds back exactly, and refuses otherwise."""
    in1 = _random(rng, (13, 11), dtype)
    in2 = _random(rng, (4, 5), dtype)
    for mode in MODES:
        for function in FUNCTIONS:
            if backend == "fft" and np.dtype(dtype).itemsize >= 4:
                # full-range 32/64-bit values: float64 rounding could be off by one -> refused
                with pytest.raises(ValueError, match="too large"):
                    getattr(fastconv, function)(in1, in2, mode, algorithm="fft")
                _check_against_scipy(function, in1 % 16, in2 % 16, mode, "fill", 3, "fft")
            else:
                _check_against_scipy(function, in1, in2, mode, "symm", 0, backend)


def test_large_int64_keeps_full_precision():
    # 2**60 + 1 is not representable in float64: a float path would return a wrong value
    in1 = np.array([[2 ** 60 + 1, 3], [5, 7]], dtype=np.int64)
    in2 = np.array([[1, 1], [1, 1]], dtype=np.int64)
    got = fastconv.correlate2d(in1, in2)
    np.testing.assert_array_equal(got, scipy.signal.correlate2d(in1, in2))
    assert got[1, 1] == 2 ** 60 + 16


@pytest.mark.parametrize("function", FUNCTIONS)
def test_mixed_dtypes_promote_like_scipy(function, rng):
    pairs = [(np.int8, np.uint8), (np.float32, np.int16), (np.float32, np.int64),
             (np.uint64, np.int64), (np.float32, np.complex64), (np.float64, np.complex64)]
    for dtype1, dtype2 in pairs:
        in1 = _random(rng, (6, 7), dtype1) % 50 if np.dtype(dtype1).kind in "iu" else _random(rng, (6, 7), dtype1)
        in2 = _random(rng, (3, 2), dtype2) % 50 if np.dtype(dtype2).kind in "iu" else _random(rng, (3, 2), dtype2)
        _check_against_scipy(function, in1, in2, "same", "wrap", 0, "auto")


def test_big_kernel_auto_uses_the_transform(rng):
    from fastconv import dispatch
    from fastconv._params import make_signal_params, signal_padding

    image = rng.standard_normal((512, 512))
    kernel = rng.standard_normal((31, 31))
    params = make_signal_params(image.shape, kernel.shape,
                                signal_padding("same", image.shape, kernel.shape, True), np.float64)
    decision = dispatch.choose_signal(params, image[None, None], kernel[None, None], "auto")
    assert decision.algorithm == "fft"
    got = fastconv.convolve2d(image, kernel, "same")
    np.testing.assert_allclose(got, scipy.signal.fftconvolve(image, kernel, "same"),
                               atol=1e-9 * np.abs(got).max())


def test_nan_input_never_goes_through_the_transform(rng):
    image = rng.standard_normal((200, 200))
    image[5, 7] = np.nan
    kernel = rng.standard_normal((31, 31))
    got = fastconv.convolve2d(image, kernel, "same")
    expected = scipy.signal.convolve2d(image, kernel, "same")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fillvalue", [np.nan, np.inf])
def test_non_finite_fillvalue_propagates(fillvalue, rng):
    in1 = rng.standard_normal((6, 6))
    in2 = rng.standard_normal((3, 3))
    got = fastconv.correlate2d(in1, in2, "same", fillvalue=fillvalue)
    expected = scipy.signal.correlate2d(in1, in2, "same", fillvalue=fillvalue)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(expected))
    np.testing.assert_allclose(got[2:-2, 2:-2], expected[2:-2, 2:-2], rtol=1e-12)


def test_fillvalue_conversion_like_scipy():
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    kernel = np.ones((2, 2), dtype=np.int32)
    for fillvalue in (1.5, [2], np.int16(3), 7):
        np.testing.assert_array_equal(
            fastconv.correlate2d(ints, kernel, fillvalue=fillvalue),
            scipy.signal.correlate2d(ints, kernel, fillvalue=fillvalue),
        )
    # fillvalue is not even looked at for the other boundaries
    np.testing.assert_array_equal(fastconv.correlate2d(ints, kernel, boundary="wrap", fillvalue=[1, 2]),
                                  scipy.signal.correlate2d(ints, kernel, boundary="wrap"))


def test_empty_inputs_like_scipy():
    for in1, in2, mode in [
        (np.zeros((0, 3)), np.ones((2, 2)), "full"),
        (np.zeros((0, 3)), np.ones((2, 2)), "same"),
        (np.ones((3, 3)), np.zeros((0, 3)), "full"),
        (np.ones((3, 3)), np.zeros((0, 3)), "valid"),
    ]:
        expected = scipy.signal.correlate2d(in1, in2, mode, fillvalue=2)
        got = fastconv.correlate2d(in1, in2, mode, fillvalue=2)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="non-empty in1"):
        fastconv.correlate2d(np.zeros((0, 3)), np.ones((2, 2)), boundary="wrap")


# --- inputs are never modified; any layout works ------------------------------------------------
def test_non_contiguous_read_only_inputs(rng):
    base = rng.standard_normal((30, 40))
    in1 = base[::2, 1::3]  # strided view
    in2 = np.asfortranarray(rng.standard_normal((4, 3)))
    in1.flags.writeable = False
    in2.flags.writeable = False
    before1, before2 = in1.copy(), in2.copy()
    for function in FUNCTIONS:
        for mode in MODES:
            _check_against_scipy(function, in1, in2, mode, "symm", 0, "auto")
    np.testing.assert_array_equal(in1, before1)
    np.testing.assert_array_equal(in2, before2)


# --- bad arguments: scipy's errors ----------------------------------------------------------------
@pytest.mark.parametrize("function", FUNCTIONS)
def test_errors_match_scipy(function):
    call = getattr(fastconv, function)
    with pytest.raises(ValueError, match="inputs must both be 2-D arrays"):
        call(np.ones(3), np.ones((2, 2)))
    with pytest.raises(ValueError, match="inputs must both be 2-D arrays"):
        call(np.ones((2, 2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="For 'valid' mode, one must be at least as large"):
        call(np.ones((3, 3)), np.ones((2, 4)), "valid")
    with pytest.raises(ValueError, match="Acceptable mode flags"):
        call(np.ones((3, 3)), np.ones((2, 2)), "bogus")
    with pytest.raises(ValueError, match="Acceptable boundary flags"):
        call(np.ones((3, 3)), np.ones((2, 2)), boundary="reflect")
    with pytest.raises(ValueError, match="must be scalar or an array with one element"):
        call([[1]], [[1, 2]], fillvalue=[1, 2])
    with pytest.raises(ValueError, match="cannot be an empty array"):
        call([[1]], [[1, 2]], fillvalue=[])
    with pytest.raises(ValueError, match="could not cast `fillvalue` directly"):
        call([[1]], [[1, 2]], fillvalue=1j)
    with pytest.raises(ValueError, match="could not cast `fillvalue` directly"):
        call([[1]], [[1, 2]], fillvalue=np.nan)
    for dtype in (np.bool_, np.float16, object):
        with pytest.raises(ValueError, match="not available for this type"):
            call(np.ones((3, 3), dtype=dtype), np.ones((2, 2), dtype=dtype))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        call(np.ones((3, 3)), np.ones((2, 2)), algorithm="no-such-algorithm")
    with pytest.raises(ValueError, match="winograd needs 3x3 kernels"):
        call(np.ones((3, 3)), np.ones((2, 2)), algorithm="winograd")
    with pytest.raises(ValueError, match="rank-1 kernel"):
        call(np.ones((5, 5)), np.arange(9.0).reshape(3, 3) ** 2, algorithm="separable")
    with pytest.raises(ValueError, match="separable backend factorises real kernels only"):
        call(np.ones((5, 5), complex), np.ones((3, 3), complex), algorithm="separable")
    with pytest.raises(ValueError, match="integer inputs must give scipy's exact"):
        call(np.ones((5, 5), int), np.ones((3, 3), int), algorithm="im2col")


def test_scipy_agrees_on_the_errors_we_copied():
    """The messages above are scipy's own: guard against drifting apart from the installed scipy."""
    with pytest.raises(ValueError, match="For 'valid' mode, one must be at least as large"):
        scipy.signal.correlate2d(np.ones((3, 3)), np.ones((2, 4)), "valid")
    with pytest.raises(ValueError, match="must be scalar or an array with one element"):
        scipy.signal.correlate2d([[1]], [[1, 2]], fillvalue=[1, 2])
    with pytest.raises(ValueError, match="not available for this type"):
        scipy.signal.correlate2d(np.ones((3, 3), bool), np.ones((2, 2), bool))


# --- auto on small and integer-valued float/complex problems (issue 18) -----------------------
# The run's cache directory is isolated (tests/conftest.py), so these pin the shipped cost model.
def _auto_decision(function, in1, in2, mode):
    from fastconv import dispatch
    from fastconv._params import make_signal_params, signal_padding

    in1, in2 = np.asarray(in1), np.asarray(in2)
    if mode == "valid" and in2.shape[0] >= in1.shape[0] and in2.shape[1] >= in1.shape[1]:
        in1, in2 = in2, in1  # scipy's swap, as fastconv.signal does
    dtype = np.result_type(in1, in2)
    pads = signal_padding(mode, in1.shape, in2.shape, function == "convolve2d")
    x = np.pad(in1.astype(dtype), ((pads[0], pads[1]), (pads[2], pads[3])))[None, None]
    params = make_signal_params(x.shape[2:], in2.shape, (0, 0, 0, 0), dtype)
    return dispatch.choose_signal(params, x, in2.astype(dtype)[None, None], "auto")


SCIPY_COMPLEX_CASES = [  # scipy's TestConvolve2d.test_valid_mode2 and test_valid_mode_complx
    ([[1 + 1j, 2 - 3j], [3 + 1j, 4 + 0j]], [[2 - 1j, 3 + 2j, 4 + 0j], [4 - 0j, 5 + 1j, 6 - 3j]],
     [[27 - 1j, 46 + 2j]]),
    ([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]],
     np.array([[1, 2, 3], [3, 4, 5]], dtype=np.complex128) + 1j,
     [[62 + 24j, 80 + 30j, 98 + 36j, 116 + 42j, 134 + 48j]]),
]


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("case", SCIPY_COMPLEX_CASES, ids=["2x2-2x3", "2x7-2x3"])
def test_tiny_complex_problems_run_direct_and_exactly(case, swap):
    """A fixed per-call cost is not scaled by the complex-arithmetic factor: a 2x7 plane went to the
    FFT (27 - 0.9999999999999991j instead of 27 - 1j)."""
    in1, in2, expected = case
    if swap:
        in1, in2 = in2, in1
    assert _auto_decision("convolve2d", in1, in2, "valid").algorithm == "direct"
    got = fastconv.convolve2d(in1, in2, "valid")
    np.testing.assert_array_equal(got, np.asarray(expected))
    np.testing.assert_array_equal(got, scipy.signal.convolve2d(in1, in2, "valid"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (8, 8), (16, 5)])
def test_tiny_problems_never_pick_the_transform(shape, dtype, rng):
    in1 = _random(rng, shape, dtype)
    in2 = _random(rng, (min(shape[0], 3), min(shape[1], 3)), dtype)
    for mode in MODES:
        assert _auto_decision("correlate2d", in1, in2, mode).algorithm == "direct", (shape, mode)


def _whole_numbers(rng, shape, dtype, high):
    values = rng.integers(-high, high, shape).astype(dtype)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.integers(-high, high, shape)
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_integer_valued_data_on_the_transform_is_rounded_to_the_exact_result(dtype, rng):
    """Big enough for the FFT, small enough values for the rounding bound: the transform runs in 64
    bits and is rounded, so auto gives the exact sums that scipy's direct loop gives."""
    image = _whole_numbers(rng, (256, 256), dtype, 256)
    kernel = _whole_numbers(rng, (31, 31), dtype, 8)
    decision = _auto_decision("convolve2d", image, kernel, "same")
    assert decision.algorithm == "fft" and decision.round_to_integers
    got = fastconv.convolve2d(image, kernel, "same")
    exact = scipy.signal.convolve2d(image.astype(np.result_type(dtype, np.complex128)
                                                 if np.dtype(dtype).kind == "c" else np.float64),
                                    kernel.astype(np.complex128 if np.dtype(dtype).kind == "c"
                                                  else np.float64), "same")
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, exact.astype(dtype))


def test_integer_valued_data_too_large_to_round_runs_direct(rng):
    """No rounding bound, no transform: the direct sum is exact for whole numbers below 2**53."""
    image = _whole_numbers(rng, (256, 256), np.float64, 2**20)
    kernel = _whole_numbers(rng, (31, 31), np.float64, 2**20)
    assert _auto_decision("correlate2d", image, kernel, "valid").algorithm == "direct"
    got = fastconv.correlate2d(image, kernel, "valid")
    np.testing.assert_array_equal(got, scipy.signal.correlate2d(image, kernel, "valid"))


def test_integer_valued_data_never_runs_separable(rng):
    """A box filter of ones is rank 1, but its SVD factors are irrational: 44.99999999 for 45."""
    image = _whole_numbers(rng, (128, 128), np.float64, 100)
    kernel = np.ones((7, 7))
    assert _auto_decision("correlate2d", image, kernel, "same").algorithm != "separable"
    np.testing.assert_array_equal(fastconv.correlate2d(image, kernel, "same"),
                                  scipy.signal.correlate2d(image, kernel, "same"))


def test_fractional_data_keeps_the_plain_transform(rng):
    image = rng.standard_normal((256, 256))
    kernel = rng.standard_normal((31, 31))
    decision = _auto_decision("convolve2d", image, kernel, "same")
    assert decision.algorithm == "fft" and not decision.round_to_integers


def test_integer_valued_scan():
    from fastconv.backends._common import all_integer_valued

    whole = np.arange(-5000.0, 5000.0)
    assert all_integer_valued(whole, whole.astype(np.complex64) * 1j)
    for bad in (0.5, np.nan, np.inf, -np.inf, 1e-300):
        for position in (0, 4095, 4096, whole.size - 1):  # either side of a scan block's edge
            values = whole.copy()
            values[position] = bad
            assert not all_integer_valued(values), (bad, position)
    complex_values = whole.astype(np.complex128)
    complex_values[7000] += 0.25j
    assert not all_integer_valued(complex_values)
    assert all_integer_valued(np.arange(10, dtype=np.int64))
