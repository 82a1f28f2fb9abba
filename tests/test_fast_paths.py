"""The latency path (fastconv._fast_paths): repeated calls give exactly the general path's result,
take the memoised plan only where that is by construction the same computation, and the memo
follows the dispatcher's model."""
import numpy as np
import pytest
import scipy.signal

import fastconv
from fastconv import _config, _fast_paths, dispatch
from fastconv.backends import _direct_blocked
from tests import naive


@pytest.fixture(autouse=True)
def fresh_memo():
    _fast_paths.forget()
    yield
    _fast_paths.forget()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("shapes", [((32, 32), (3, 3)), ((9, 7), (3, 5)), ((40, 33), (7, 2)),
                                    ((5, 5), (5, 5)), ((1, 1), (1, 1))])
def test_repeated_signal_calls_match_scipy(shapes, mode, dtype, rng):
    in_shape, kernel_shape = shapes
    image = rng.standard_normal(in_shape).astype(dtype)
    kernel = rng.standard_normal(kernel_shape).astype(dtype)
    for ours, theirs in ((fastconv.correlate2d, scipy.signal.correlate2d),
                         (fastconv.convolve2d, scipy.signal.convolve2d)):
        expected = theirs(image, kernel, mode)
        for _ in range(2):  # the first call fills the memo, the second runs from it
            got = ours(image, kernel, mode)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 if dtype == np.float32 else 1e-12)
    fast = [plan for plan in _fast_paths._signal_plans.values() if plan is not None]
    assert fast, "no call took the fast path"


def test_fast_signal_call_runs_from_the_plan(rng, monkeypatch):
    image = rng.standard_normal((24, 24)).astype(np.float32)
    kernel = rng.standard_normal((3, 3)).astype(np.float32)
    first = fastconv.correlate2d(image, kernel, "same")
    # the general path must not run again: make it fail
    monkeypatch.setattr(fastconv.signal, "_signal_2d", lambda *a: pytest.fail("general path ran"))
    np.testing.assert_array_equal(fastconv.correlate2d(image, kernel, "same"), first)


def test_what_the_fast_path_refuses_goes_the_general_way(rng):
    image = rng.standard_normal((16, 16))
    kernel = rng.standard_normal((3, 3))
    for args, kwargs in [((image.astype(np.float32), kernel), {}),  # mixed dtypes: promotion
                         ((image, kernel), {"boundary": "wrap"}), ((image, kernel), {"fillvalue": 2}),
                         ((image.T, kernel), {}), ((kernel, image, "valid"), {}),  # scipy's swap
                         ((image.tolist(), kernel), {}), ((image.astype(int), kernel.astype(int)), {})]:
        assert _fast_paths.signal(*(args + ("full",) * (len(args) == 2))[:3],
                                  kwargs.get("boundary", "fill"), kwargs.get("fillvalue", 0),
                                  "auto", False) is None
        got = fastconv.correlate2d(*args, **kwargs)
        np.testing.assert_allclose(got, scipy.signal.correlate2d(*args, **kwargs), rtol=1e-5, atol=1e-5)


def test_bad_mode_still_raises_scipys_error(rng):
    image = rng.standard_normal((8, 8))
    with pytest.raises(ValueError, match="mode"):
        fastconv.correlate2d(image, image[:3, :3], "middle")
    with pytest.raises(ValueError, match="mode"):
        fastconv.correlate2d(image, image[:3, :3], ["same"])


@pytest.mark.parametrize("case", [((1, 1, 32, 32), (1, 1, 3, 3), {}),
                                  ((1, 16, 14, 14), (16, 16, 3, 3), {"padding": 1}),
                                  ((16, 14, 14), (8, 16, 3, 3), {"padding": "same"}),  # unbatched
                                  ((2, 8, 9, 9), (8, 4, 3, 3), {"groups": 2, "stride": 2})])
def test_repeated_conv2d_calls_match_naive(case, rng):
    x_shape, w_shape, kwargs = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    expected = naive.conv2d(x, w, b, **kwargs)
    for _ in range(2):
        got = fastconv.conv2d(x, w, b, **kwargs)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_nan_weights_with_padding_take_the_general_path(rng):
    """The general path materialises padded zeros when the weight holds Inf (0 * inf is NaN, as in
    PyTorch); the memoised plan must not skip that."""
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    fastconv.conv2d(x, w, padding=1)  # fills the memo with a finite weight
    w[0, 0, 0, 0] = np.inf
    got = fastconv.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(naive.conv2d(x, w, padding=1)))
    assert np.isnan(got[0, 0, 0, 0])  # a padded zero times inf


def test_model_changes_drop_the_memo(rng):
    image = rng.standard_normal((16, 16))
    kernel = rng.standard_normal((3, 3))
    fastconv.correlate2d(image, kernel)
    assert _fast_paths._signal_plans
    dispatch.set_cost_coefficients(None)
    assert not _fast_paths._signal_plans
    fastconv.conv2d(image[None, None], kernel[None, None])
    assert _fast_paths._conv_plans
    fastconv.set_autotune(True)
    try:
        assert not _fast_paths._conv_plans
    finally:
        fastconv.set_autotune(False)


@pytest.mark.parametrize("serial_macs", [0, 1 << 40])
def test_serial_and_parallel_kernels_agree(serial_macs, rng, monkeypatch):
    """Each problem below runs once serially and once in parallel, whatever its size."""
    monkeypatch.setattr(_config, "SERIAL_MACS", serial_macs)
    assert _direct_blocked.runs_serially(1000) == (serial_macs > 1000)
    for x_shape, w_shape, kwargs in [((1, 1, 30, 31), (1, 1, 5, 3), {"padding": 2}),
                                     ((2, 6, 12, 12), (13, 6, 3, 3), {"padding": 1}),
                                     ((1, 4, 9, 9), (4, 1, 3, 3), {"groups": 4})]:
        x = rng.standard_normal(x_shape)
        w = rng.standard_normal(w_shape)
        np.testing.assert_allclose(fastconv.conv2d(x, w, algorithm="direct", **kwargs),
                                   naive.conv2d(x, w, **kwargs), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("isa, vector_bytes, expected", [
    ("avx512", 64, 1 << 18), ("avx2", 32, 1 << 18), ("neon", 16, 1 << 17), ("sse", 16, 1 << 17)])
def test_serial_threshold_follows_the_vector_width(isa, vector_bytes, expected):
    from fastconv._cpu import TargetCPU, default_serial_macs

    cpu = TargetCPU("some-cpu", frozenset(), isa, vector_bytes, 32 if isa in ("avx512", "neon") else 16)
    assert default_serial_macs(cpu) == expected


def test_serial_threshold_environment_override(monkeypatch):
    monkeypatch.setenv("FASTCONV_SERIAL_MACS", "123")
    assert _config._serial_macs_from_env() == 123
    monkeypatch.setenv("FASTCONV_SERIAL_MACS", "lots")
    with pytest.raises(ValueError, match="FASTCONV_SERIAL_MACS"):
        _config._serial_macs_from_env()
