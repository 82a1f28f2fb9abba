"""The N-d scipy.signal API (convolve, correlate, fftconvolve, oaconvolve, choose_conv_method).

Values are checked against the plain-NumPy twins in tests/naive.py (float64/complex128 or wrapping
int64 accumulation) with the documented bounds of tests/tolerances.py; scipy.signal is the
reference for shapes, dtypes, the valid-mode swap and errors, and integer results of the direct
method must equal scipy's bit for bit.
"""
import warnings

import numpy as np
import pytest
import scipy.signal

import fastconv
from fastconv.dispatch import nd as nd_choice
from fastconv.backends import direct_nd, fft_nd
from tests import naive
from tests.tolerances import RELATIVE

MODES = ["full", "same", "valid"]
METHODS = ["direct", "fft", "auto"]
VALUE_DTYPES = [np.float32, np.float64, np.complex64, np.complex128, np.int16, np.int64, np.uint8]


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(info.min, -50), min(info.max, 50)
        return rng.integers(low, high, shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


def _component(dtype):
    return "float32" if np.dtype(dtype) in (np.float32, np.complex64) else "float64"


def _assert_matches_naive(got, exact, magnitude, method):
    """``got`` within the documented bound of the exact result: per element for the direct sum,
    against the largest magnitude for the FFT (its error spreads over the output)."""
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, exact.astype(got.dtype))
        return
    backend = "direct" if method == "direct" else "fft"
    # complex products take a few more roundings per multiply-add: 4x the component's bound
    rel = RELATIVE[(_component(got.dtype), backend)] * (4 if got.dtype.kind == "c" else 1)
    scale = magnitude if backend == "direct" else magnitude.max(initial=0)
    err = np.abs(got.astype(np.complex128) - exact)
    assert np.all(err <= rel * scale + np.finfo(np.float64).tiny), (
        f"max error {err.max()} over bound {rel} x magnitude")


def _shapes(rng, ndim, count):
    for _ in range(count):
        s1 = tuple(int(n) for n in rng.integers(1, {1: 40, 2: 12, 3: 7, 4: 5}[ndim], ndim))
        s2 = tuple(int(n) for n in rng.integers(1, {1: 12, 2: 6, 3: 4, 4: 3}[ndim], ndim))
        yield (s1, s2) if rng.random() < 0.8 else (s2, s1)  # sometimes the kernel is larger


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", VALUE_DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("function", ["convolve", "correlate"])
def test_convolve_correlate_match_the_definition_and_scipy(function, method, dtype, ndim):
    rng = np.random.default_rng([ndim, VALUE_DTYPES.index(dtype), METHODS.index(method)])
    twin = {"convolve": naive.convolve_nd, "correlate": naive.correlate_nd}[function]
    for s1, s2 in _shapes(rng, ndim, 6):
        in1, in2 = _random(rng, s1, dtype), _random(rng, s2, dtype)
        for mode in MODES:
            try:
                expected = getattr(scipy.signal, function)(in1, in2, mode, method)
            except ValueError as error:  # valid mode with neither input containing the other
                with pytest.raises(ValueError, match="For 'valid' mode"):
                    getattr(fastconv, function)(in1, in2, mode, method)
                assert "valid" in str(error)
                continue
            got = getattr(fastconv, function)(in1, in2, mode, method)
            assert got.shape == expected.shape and got.dtype == expected.dtype, (s1, s2, mode)
            assert got.flags.c_contiguous
            exact = twin(in1, in2, mode)
            magnitude = np.abs(twin(np.abs(in1), np.abs(in2), mode))
            if got.dtype.kind in "iu" and method == "direct":
                np.testing.assert_array_equal(got, expected)  # scipy's wrapped integers
            if got.dtype.kind in "iu" and method != "direct":
                # scipy rounds an FFT for integers; small values make that exact
                np.testing.assert_array_equal(got, exact.astype(got.dtype))
            else:
                _assert_matches_naive(got, exact, magnitude, method)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64])
@pytest.mark.parametrize("ndim", [1, 3])
def test_direct_integers_wrap_exactly_as_scipy(dtype, ndim):
    rng = np.random.default_rng(ndim)
    info = np.iinfo(dtype)
    s1, s2 = ((50,), (9,)) if ndim == 1 else ((6, 5, 7), (3, 2, 4))
    in1 = rng.integers(info.min, info.max, s1, dtype=dtype, endpoint=True)
    in2 = rng.integers(info.min, info.max, s2, dtype=dtype, endpoint=True)
    for mode in MODES:
        for function in ("convolve", "correlate"):
            got = getattr(fastconv, function)(in1, in2, mode, "direct")
            expected = getattr(scipy.signal, function)(in1, in2, mode, "direct")
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("function", ["fftconvolve", "oaconvolve"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.int32])
def test_frequency_domain_functions_match_scipy_with_axes(function, dtype):
    rng = np.random.default_rng(7)
    cases = [
        ((5000,), (33,), None), ((33,), (5000,), None), ((300, 40), (7, 5), None),
        ((40, 300), (5, 9), [1]), ((200, 3, 50), (9, 1, 4), None), ((200, 3, 50), (9, 1, 4), [0, 2]),
        ((7, 2000), (7, 30), -1), ((1, 600), (4, 20), 1), ((6, 1, 90), (1, 5, 9), (0, 2)),
        ((30, 30, 30), (5, 5, 5), None), ((9, 9), (9, 9), None),
    ]
    for s1, s2, axes in cases:
        in1, in2 = _random(rng, s1, dtype), _random(rng, s2, dtype)
        for mode in MODES:
            try:
                expected = getattr(scipy.signal, function)(in1, in2, mode, axes)
            except ValueError as error:
                with pytest.raises(ValueError, match=str(error).split("(")[0][:40]):
                    getattr(fastconv, function)(in1, in2, mode, axes)
                continue
            got = getattr(fastconv, function)(in1, in2, mode, axes)
            assert got.shape == expected.shape and got.dtype == expected.dtype, (s1, s2, axes, mode)
            rel = RELATIVE[(_component(got.dtype), "fft")] * 4
            scale = np.abs(expected).max(initial=1.0)
            np.testing.assert_allclose(got, expected, rtol=0, atol=rel * scale * 10)


def test_overlap_add_blocks_the_long_input_and_matches_the_whole_transform():
    rng = np.random.default_rng(3)
    signal, kernel = rng.standard_normal(20000), rng.standard_normal(101)
    blocks = nd_choice.overlap_add_blocks(signal.shape, kernel.shape, [0], np.float64)
    assert 0 in blocks and blocks[0].step < signal.size  # really cut into pieces
    pieces = fft_nd.convolve_full(signal, kernel, [0], blocks)
    whole = fft_nd.convolve_full(signal, kernel, [0], {})
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-11 * np.abs(whole).max())
    # the kernel longer than the signal: in2 is cut instead
    blocks = nd_choice.overlap_add_blocks(kernel.shape, signal.shape, [0], np.float64)
    assert blocks[0].split_first is False
    np.testing.assert_allclose(fft_nd.convolve_full(kernel, signal, [0], blocks), whole,
                               rtol=0, atol=1e-11 * np.abs(whole).max())


_LONG_SIGNAL_SCRIPT = """
import json, resource, sys
import numpy as np
import fastconv

taps = int(sys.argv[1])
rng = np.random.default_rng(taps)
# the same code paths on a small problem first: compiled kernels loaded before the baseline
fastconv.oaconvolve(rng.standard_normal(50 * taps + 1000, dtype=np.float32),
                    rng.standard_normal(taps, dtype=np.float32), mode="same")
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
signal = rng.standard_normal(10_000_000, dtype=np.float32)  # no float64 temporary
kernel = rng.standard_normal(taps, dtype=np.float32)
out = fastconv.oaconvolve(signal, kernel, mode="same")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# spot checks against the definition (float64 dot products of the windows)
start = (taps - 1) // 2
reversed_kernel = kernel[::-1].astype(np.float64)
checks = []
for i in (0, 1, taps // 2, 5_000_000, signal.size - 1):
    lo = i + start - (taps - 1)
    window = np.zeros(taps)
    src_lo, src_hi = max(lo, 0), min(lo + taps, signal.size)
    window[src_lo - lo:src_hi - lo] = signal[src_lo:src_hi]
    checks.append((float(out[i]), float(window @ reversed_kernel),
                   float(np.abs(window) @ np.abs(reversed_kernel))))
print(json.dumps({"extra_bytes": (peak - baseline) * 1024, "signal_bytes": signal.nbytes,
                  "shape": out.shape, "dtype": str(out.dtype), "checks": checks}))
"""


@pytest.mark.parametrize("taps", [3, 100_000])
def test_oaconvolve_handles_a_long_signal_within_a_few_copies_of_it(taps):
    """10**7 float32 samples: the peak resident memory of the call (ru_maxrss in a fresh process,
    so allocations inside compiled code count too) stays within a few copies of the signal."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _LONG_SIGNAL_SCRIPT, str(taps)],
                            capture_output=True, text=True, timeout=600, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [10_000_000] and report["dtype"] == "float32"
    # the signal itself and the output are two copies; the rest must stay a fraction of one
    assert report["extra_bytes"] < 3 * report["signal_bytes"], report["extra_bytes"]
    for got, exact, scale in report["checks"]:
        assert abs(got - exact) <= 2e-5 * max(scale, 1e-3) * np.sqrt(np.log2(taps) + 1) * 4


def test_direct_kernel_on_awkward_shapes_matches_the_definition():
    rng = np.random.default_rng(11)
    for s1, s2 in [((1,), (1,)), ((1, 1, 1), (1, 1, 1)), ((2, 1, 3, 1), (2, 1, 3, 1)),
                   ((3, 4), (5, 7)), ((1, 9), (1, 9)), ((17,), (17,)), ((4, 4, 4, 4), (2, 3, 1, 2))]:
        for dtype in (np.float32, np.float64, np.complex128, np.int32):
            in1, in2 = _random(rng, s1, dtype), _random(rng, s2, dtype)
            for mode in MODES:
                got = fastconv.correlate(in1, in2, mode, "direct")
                exact = naive.correlate_nd(in1, in2, mode)
                _assert_matches_naive(got, exact, np.abs(naive.correlate_nd(np.abs(in1), np.abs(in2), mode)),
                                      "direct")


def test_tap_offsets_and_flat_length():
    offsets = direct_nd.tap_offsets((5, 6, 7), (2, 1, 3))
    assert offsets.tolist() == [0, 1, 2, 42, 43, 44]
    # the last valid output (2, 4, 3) of a (3, 5, 4)-valid output in a (5, 6, 7) array
    assert direct_nd.flat_length((5, 6, 7), (4, 6, 5)) == 3 * 42 + 5 * 7 + 4 + 1


# --- special inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize("function", ["convolve", "correlate", "fftconvolve", "oaconvolve"])
def test_zero_dimensional_inputs_multiply(function):
    got = getattr(fastconv, function)(np.array(3 + 2j), np.array(2 - 1j))
    expected = getattr(scipy.signal, function)(np.array(3 + 2j), np.array(2 - 1j))
    assert got == expected and np.asarray(got).dtype == np.asarray(expected).dtype


@pytest.mark.parametrize("function", ["fftconvolve", "oaconvolve"])
def test_empty_inputs_give_scipys_empty_array(function):
    for s1, s2 in [((0,), (3,)), ((4, 0), (2, 2)), ((3, 3), (0, 1))]:
        got = getattr(fastconv, function)(np.ones(s1), np.ones(s2))
        expected = getattr(scipy.signal, function)(np.ones(s1), np.ones(s2))
        assert got.shape == expected.shape and got.dtype == expected.dtype


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("function", ["convolve", "correlate"])
def test_empty_inputs_give_an_empty_array_of_the_result_dtype(function, method):
    # scipy raises an error from inside its kernels here; fastconv returns what fftconvolve does
    for s1, s2, dtype in [((0,), (3,), np.float32), ((4, 0), (2, 2), np.int16)]:
        got = getattr(fastconv, function)(np.ones(s1, dtype), np.ones(s2, dtype), method=method)
        assert got.shape == (0,) and got.dtype == dtype


def test_valid_mode_swaps_the_larger_input_in_like_scipy():
    rng = np.random.default_rng(5)
    small, big = _random(rng, (2, 3, 2), np.complex128), _random(rng, (4, 5, 3), np.complex128)
    for function in ("convolve", "correlate"):
        for method in METHODS:
            got = getattr(fastconv, function)(small, big, "valid", method)
            expected = getattr(scipy.signal, function)(small, big, "valid", method)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_bool_and_float16_work_in_any_dimension():
    rng = np.random.default_rng(2)
    a, b = rng.random((6, 5)) < 0.3, rng.random((3, 2)) < 0.5
    got = fastconv.convolve(a, b, method="direct")
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, naive.convolve_nd(a.astype(int), b.astype(int)) != 0)
    assert fastconv.choose_conv_method(a, b) == "direct"
    x, w = rng.standard_normal((9, 8)).astype(np.float16), rng.standard_normal((3, 3)).astype(np.float16)
    for method in METHODS:
        got = fastconv.convolve(x, w, method=method)
        assert got.dtype == np.float16
        np.testing.assert_allclose(got, naive.convolve_nd(x, w), rtol=2e-3, atol=2e-2)


def test_nan_stays_where_the_definition_puts_it_with_direct():
    x = np.zeros(20)
    x[10] = np.nan
    out = fastconv.convolve(x, np.ones(3), method="direct")
    assert np.isnan(out[10:13]).all() and not np.isnan(np.delete(out, [10, 11, 12])).any()
    with pytest.warns(RuntimeWarning, match="NAN or inf"):
        fastconv.convolve(np.full(5, np.nan), np.ones(2), method="fft")


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    in1, in2 = rng.standard_normal((30, 20)), rng.standard_normal((5, 4))
    copies = in1.copy(), in2.copy()
    for function in ("convolve", "correlate"):
        for method in METHODS:
            getattr(fastconv, function)(in1, in2, method=method)
    fastconv.fftconvolve(in1, in2)
    fastconv.oaconvolve(in1, in2)
    np.testing.assert_array_equal(in1, copies[0])
    np.testing.assert_array_equal(in2, copies[1])


def test_non_contiguous_inputs():
    rng = np.random.default_rng(8)
    in1 = rng.standard_normal((40, 30))[::2, ::-3]
    in2 = rng.standard_normal((8, 9)).T[::2]
    for method in METHODS:
        np.testing.assert_allclose(fastconv.convolve(in1, in2, method=method),
                                   naive.convolve_nd(in1, in2), rtol=1e-10, atol=1e-10)


# --- method choice ------------------------------------------------------------------------------
def test_choose_conv_method_picks_by_cost_and_guards_large_integers():
    rng = np.random.default_rng(6)
    signal = rng.standard_normal(100_000)
    assert fastconv.choose_conv_method(signal, rng.standard_normal(3)) == "direct"
    assert fastconv.choose_conv_method(signal, rng.standard_normal(4095)) == "fft"
    big = np.array([2 ** 40] * 100, dtype=np.int64)
    assert fastconv.choose_conv_method(big, big) == "direct"  # float64 would round the products


def test_choose_conv_method_measure_times_both_methods():
    rng = np.random.default_rng(9)
    method, times = fastconv.choose_conv_method(rng.standard_normal(2000), rng.standard_normal(50),
                                                measure=True)
    assert set(times) == {"direct", "fft"} and all(t > 0 for t in times.values())
    assert method == min(times, key=times.get)


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("function", ["convolve", "correlate", "fftconvolve", "oaconvolve"])
def test_mismatched_ndim_names_the_shapes(function):
    with pytest.raises(ValueError, match=r"same dimensionality.*\(3,\).*\(2, 2\)"):
        getattr(fastconv, function)(np.ones(3), np.ones((2, 2)))


@pytest.mark.parametrize("function", ["convolve", "correlate", "fftconvolve", "oaconvolve",
                                      "choose_conv_method"])
def test_bad_mode(function):
    with pytest.raises(ValueError, match="(?i)acceptable mode flags.*'spam'"):
        getattr(fastconv, function)(np.ones(3), np.ones(2), mode="spam")


@pytest.mark.parametrize("function", ["convolve", "correlate"])
def test_bad_method(function):
    with pytest.raises(ValueError, match="Acceptable method flags.*'bacon'"):
        getattr(fastconv, function)(np.ones(3), np.ones(2), method="bacon")


@pytest.mark.parametrize("function", ["fftconvolve", "oaconvolve"])
@pytest.mark.parametrize("axes, message", [
    ([], "axes cannot be empty"), ([0.5], "scalar or iterable of integers"),
    ([[0, 1]], "scalar or iterable of integers"), (2, "exceeds dimensionality"),
    (-3, "exceeds dimensionality"), ([1, -1], "must be unique"),
])
def test_bad_axes(function, axes, message):
    with pytest.raises(ValueError, match=message):
        getattr(fastconv, function)(np.ones((4, 5)), np.ones((2, 2)), axes=axes)


@pytest.mark.parametrize("function", ["fftconvolve", "oaconvolve"])
def test_incompatible_broadcast_shapes(function):
    with pytest.raises(ValueError, match=r"incompatible shapes.*\(4, 5\) and \(3, 2\)"):
        getattr(fastconv, function)(np.ones((4, 5)), np.ones((3, 2)), axes=[1])


@pytest.mark.parametrize("function", ["convolve", "correlate", "fftconvolve", "oaconvolve"])
def test_valid_mode_with_neither_input_larger(function):
    with pytest.raises(ValueError, match=r"For 'valid' mode.*\(2, 3\).*\(3, 2\)"):
        getattr(fastconv, function)(np.ones((2, 3)), np.ones((3, 2)), mode="valid")


@pytest.mark.parametrize("function", ["convolve", "correlate", "fftconvolve", "oaconvolve"])
def test_unsupported_dtypes(function):
    with pytest.raises(TypeError, match=r"in1 of dtype object \(shape \(3,\)\)"):
        getattr(fastconv, function)(np.ones(3, dtype=object), np.ones(2))
    with pytest.raises(TypeError, match="in2 of dtype <U1"):
        getattr(fastconv, function)(np.ones(3), np.array(["a", "b"]))
    if np.finfo(np.longdouble).bits > 64:
        with pytest.raises(ValueError, match="extended precision"):
            getattr(fastconv, function)(np.ones(3, dtype=np.longdouble), np.ones(2))


def test_nan_inputs_are_fine():
    x = np.array([1.0, np.nan, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for method in METHODS:
            assert np.isnan(fastconv.correlate(x, np.ones(2), method=method)).any()
        assert np.isnan(fastconv.fftconvolve(x, np.ones(2))).any()


def test_auto_keeps_nan_in_the_windows_that_touch_it():
    rng = np.random.default_rng(12)
    signal = rng.standard_normal(100_000)
    signal[5000] = np.nan
    kernel = rng.standard_normal(4095)
    assert fastconv.choose_conv_method(np.nan_to_num(signal), kernel) == "fft"
    out = fastconv.convolve(signal, kernel)  # auto: the direct sum, no warning
    assert np.isnan(out[5000:5000 + 4095]).all()
    assert np.isfinite(out[:5000]).all() and np.isfinite(out[5000 + 4095:]).all()


def test_huge_problems_are_refused_before_any_allocation():
    big = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(10 ** 7, 10 ** 6), strides=(0, 0))
    with pytest.raises(ValueError, match="physical memory"):
        fastconv.fftconvolve(big, np.ones((3, 3)))
    long_view = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(10 ** 13,), strides=(0,))
    with pytest.raises(ValueError, match="physical memory"):
        fastconv.convolve(long_view, np.ones(3), method="direct")
    with pytest.raises(ValueError, match="physical memory"):
        fastconv.convolve(big, np.ones((3, 3)), method="direct")
