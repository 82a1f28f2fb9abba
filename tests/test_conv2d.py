"""conv2d: every backend against the naive twin, scipy.signal, and the notes' worked example."""
import numpy as np
import pytest
import scipy.signal

import fastconv
from tests import naive
from tests.tolerances import assert_matches

BACKENDS = ["direct", "im2col", "fft"]

# (input shape, weight shape, kwargs): awkward cases on purpose.
CASES = [
    ((2, 3, 9, 11), (4, 3, 3, 3), {}),
    ((1, 1, 7, 7), (1, 1, 1, 1), {}),
    ((2, 4, 8, 8), (6, 4, 1, 1), {}),
    ((1, 2, 8, 9), (3, 2, 3, 3), {"stride": 2}),
    ((1, 2, 10, 10), (3, 2, 3, 3), {"stride": 3, "padding": 1}),
    ((1, 2, 11, 9), (2, 2, 2, 3), {"stride": (3, 2)}),
    ((1, 2, 9, 9), (2, 2, 2, 2), {"stride": 4}),  # stride > kernel
    ((1, 2, 12, 12), (3, 2, 3, 3), {"dilation": 2}),
    ((1, 1, 14, 13), (2, 1, 3, 2), {"dilation": (3, 2), "padding": 2}),
    ((1, 2, 11, 11), (2, 2, 3, 3), {"dilation": 3, "stride": 2, "padding": 3}),
    ((2, 3, 8, 8), (5, 3, 3, 3), {"padding": 1}),
    ((1, 2, 7, 9), (2, 2, 3, 2), {"padding": (2, 0)}),
    ((1, 2, 8, 8), (3, 2, 4, 4), {"padding": "same"}),
    ((1, 2, 9, 8), (3, 2, 2, 3), {"padding": "same", "dilation": 2}),
    ((1, 2, 6, 6), (3, 2, 3, 3), {"padding": "valid"}),
    ((2, 4, 8, 8), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 6, 9, 9), (6, 1, 3, 3), {"groups": 6, "padding": 1}),  # depthwise
    ((1, 4, 9, 9), (8, 1, 3, 3), {"groups": 4, "stride": 2}),  # depthwise multiplier 2
    ((1, 1, 20, 18), (2, 1, 15, 15), {}),  # big kernel
    ((1, 1, 16, 16), (1, 1, 16, 16), {}),  # kernel == input
    ((1, 1, 5, 5), (1, 1, 7, 7), {"padding": 1}),  # kernel larger than input, fits with padding
    ((1, 3, 7, 13), (2, 3, 1, 5), {}),
    ((1, 3, 13, 7), (2, 3, 5, 1), {"padding": (2, 0)}),
    ((3, 2, 8, 8), (2, 2, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((1, 2, 7, 8), (2, 2, 3, 3), {"padding": (1, 3), "padding_mode": "replicate"}),
    ((1, 2, 6, 7), (2, 2, 3, 3), {"padding": (2, 1), "padding_mode": "circular"}),
    ((1, 2, 8, 8), (2, 2, 4, 4), {"padding": "same", "padding_mode": "reflect"}),
    ((1, 2, 8, 8), (2, 2, 3, 3), {"padding": 3, "padding_mode": "circular", "stride": 2}),
]


def _case_id(case):
    shape, wshape, kwargs = case
    extra = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"x{shape}-w{wshape}" + (f"-{extra}" if extra else "")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backend_matches_naive(case, backend, dtype, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algorithm=backend, **kwargs)
    assert got.dtype == dtype and got.flags.c_contiguous
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert got.shape == exact.shape
    assert_matches(got, exact, magnitude, dtype, "fft" if backend == "auto" else backend)


SEPARABLE_CASES = [c for c in CASES if c[2].get("groups", 1) == 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SEPARABLE_CASES, ids=_case_id)
def test_separable_matches_naive_on_rank1_kernels(case, dtype, rng):
    shape, wshape, kwargs = case
    out_channels, channels, kernel_h, kernel_w = wshape
    col = rng.standard_normal((out_channels, channels, kernel_h))
    row = rng.standard_normal((out_channels, channels, kernel_w))
    w = (col[..., :, None] * row[..., None, :]).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    got = fastconv.conv2d(x, w, algorithm="separable", **kwargs)
    exact = naive.conv2d(x, w, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), **kwargs)
    assert_matches(got, exact, magnitude, dtype, "separable")


def test_separable_refuses_full_rank_kernel(rng):
    x = rng.standard_normal((1, 1, 8, 8))
    w = rng.standard_normal((1, 1, 3, 3))
    with pytest.raises(ValueError, match="rank-1"):
        fastconv.conv2d(x, w, algorithm="separable")


@pytest.mark.parametrize("backend", BACKENDS + ["separable"])
def test_worked_example_from_the_notes(backend):
    x = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=np.float64)
    kernel = np.array([[0, 1], [2, 3]], dtype=np.float64)
    if backend == "separable":
        pytest.skip("the example kernel has rank 2")
    got = fastconv.conv2d(x[None, None], kernel[None, None], algorithm=backend)
    np.testing.assert_array_equal(got[0, 0], [[19, 25], [37, 43]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2), (3, 3)])
def test_matches_scipy_correlate2d_channel_by_channel(backend, stride, dilation, rng):
    x = rng.standard_normal((2, 3, 17, 15))
    w = rng.standard_normal((4, 3, 3, 4))
    got = fastconv.conv2d(x, w, stride=stride, dilation=dilation, padding=2, algorithm=backend)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    dilated = np.zeros((4, 3, 2 * dilation + 1, 3 * dilation + 1))
    dilated[:, :, ::dilation, ::dilation] = w
    for n in range(2):
        for k in range(4):
            expected = sum(
                scipy.signal.correlate2d(padded[n, c], dilated[k, c], mode="valid") for c in range(3)
            )[::stride, ::stride]
            np.testing.assert_allclose(got[n, k], expected, rtol=1e-10, atol=1e-10)


def test_unbatched_input_gives_unbatched_output(rng):
    x = rng.standard_normal((3, 8, 8))
    w = rng.standard_normal((5, 3, 3, 3))
    got = fastconv.conv2d(x, w, padding=1)
    assert got.shape == (5, 8, 8)
    np.testing.assert_allclose(got, naive.conv2d(x, w, padding=1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_kernel(backend, rng):
    x = rng.standard_normal((1, 2, 40, 37))
    w = rng.standard_normal((2, 2, 17, 19))
    got = fastconv.conv2d(x, w, padding=3, algorithm=backend)
    np.testing.assert_allclose(got, naive.conv2d(x, w, padding=3), rtol=1e-9, atol=1e-9)


# Shapes with >= 8 input channels per group reach im2col's stride-1 shifted-tap GEMM path.
MANY_CHANNEL_CASES = [
    ((2, 8, 10, 9), (5, 8, 3, 3), {"padding": 1}),
    ((1, 16, 9, 12), (4, 16, 3, 2), {"padding": (2, 0), "dilation": (2, 3)}),
    ((3, 16, 7, 7), (6, 8, 5, 5), {"groups": 2, "padding": "same"}),
    ((1, 12, 6, 6), (3, 12, 6, 6), {}),  # kernel == input: one output pixel
    ((2, 8, 8, 8), (4, 8, 3, 3), {"padding": 1, "padding_mode": "reflect"}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", MANY_CHANNEL_CASES, ids=_case_id)
def test_im2col_shifted_taps_path(case, dtype, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algorithm="im2col", **kwargs)
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert_matches(got, exact, magnitude, dtype, "im2col")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("backend", ["im2col", "fft"])
def test_workspace_cap_chunks_and_stays_correct(backend, stride, rng):
    x = rng.standard_normal((5, 16, 20, 20))
    w = rng.standard_normal((8, 16, 3, 3))
    expected = naive.conv2d(x, w, padding=1, stride=stride)
    previous = fastconv.get_workspace_limit()
    try:
        fastconv.set_workspace_limit(64 * 1024)  # far below one sample's working set
        got = fastconv.conv2d(x, w, padding=1, stride=stride, algorithm=backend)
    finally:
        fastconv.set_workspace_limit(previous)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
