"""Winograd F(4x4, 3x3) / F(2x2, 3x3): against the naive twin, error bound, NaN confinement, dispatch."""
import numpy as np
import pytest

import fastconv
from fastconv import _cpu, dispatch
from fastconv._params import make_conv_params
from fastconv.backends import winograd
from tests import naive
from tests.tolerances import RELATIVE, assert_matches

# (input shape, weight shape, kwargs): awkward on purpose.
CASES = [
    ((1, 1, 6, 6), (1, 1, 3, 3), {}),  # one F4 tile, no padding
    ((1, 1, 3, 3), (1, 1, 3, 3), {}),  # a single output: input smaller than a tile's patch
    ((1, 2, 2, 2), (3, 2, 3, 3), {"padding": 1}),  # input smaller than a tile, padding only
    ((1, 1, 1, 1), (2, 1, 3, 3), {"padding": 1}),  # 1x1 input
    ((2, 3, 9, 11), (4, 3, 3, 3), {}),  # odd sizes, partial edge tiles
    ((2, 3, 13, 7), (5, 3, 3, 3), {"padding": 1}),
    ((1, 4, 10, 17), (2, 4, 3, 3), {"padding": 2}),
    ((1, 2, 8, 9), (3, 2, 3, 3), {"padding": (2, 0)}),
    ((1, 2, 9, 8), (3, 2, 3, 3), {"padding": "same"}),
    ((2, 4, 12, 12), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 6, 9, 10), (6, 1, 3, 3), {"groups": 6, "padding": 1}),  # depthwise
    ((1, 4, 11, 9), (8, 1, 3, 3), {"groups": 4}),  # depthwise, multiplier 2
    ((3, 8, 20, 19), (16, 8, 3, 3), {"padding": 1}),  # K != C, several tile rows per image
    ((2, 2, 7, 7), (3, 2, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((2, 3, 14, 5), (2, 3, 3, 3), {}),  # one tile per tile row (tiles_w 1), partial columns
    ((2, 5, 11, 18), (3, 5, 3, 3), {"padding": 1}),  # last tile row and column both partial
    ((3, 4, 30, 26), (4, 4, 3, 3), {"padding": 1}),  # vectors and runs of tiles span tile rows
    ((2, 20, 9, 13), (5, 20, 3, 3), {"padding": 1}),  # filter transform: vectors + leftover channels
]


def _case_id(case):
    shape, wshape, kwargs = case
    extra = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"x{shape}-w{wshape}" + (f"-{extra}" if extra else "")


def _problem(case, dtype, rng, bias=True):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype) if bias else None
    return x, w, b, kwargs


def _check(got, x, w, b, kwargs, dtype):
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kwargs)
    assert got.shape == exact.shape
    assert_matches(got, exact, magnitude, dtype, "winograd")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_naive(case, dtype, bias, rng):
    x, w, b, kwargs = _problem(case, dtype, rng, bias)
    got = fastconv.conv2d(x, w, b, algorithm="winograd", **kwargs)
    assert got.dtype == dtype and got.flags.c_contiguous
    _check(got, x, w, b, kwargs, dtype)


@pytest.mark.parametrize("tile", sorted(winograd.VARIANTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES[:12:3], ids=_case_id)
def test_every_variant_matches_naive(case, dtype, tile, rng):
    x, w, b, kwargs = _problem(case, dtype, rng)
    if "padding_mode" in kwargs:
        pytest.skip("backend-level call: zero padding only")
    params, xc, wc, bc, _ = make_conv_params(x, w, b, **kwargs)
    got = winograd.forward(xc, wc, bc, params, tile=tile)
    _check(got, x, w, b, kwargs, dtype)


@pytest.mark.parametrize("shape", ["8x3x16", "6x2x32", "5x1x32", "1x1x16", "2x4x64"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_register_tile_shape_serves_the_gemms(shape, dtype, rng):
    """The GEMMs run on the direct backend's register tile, whatever its shape: output channels
    that do not fill the last block, tile positions past the chunk's last tile."""
    _cpu.set_tile_shape(shape)
    try:
        for case in (CASES[4], CASES[9], CASES[-1]):
            x, w, b, kwargs = _problem(case, dtype, rng)
            got = fastconv.conv2d(x, w, b, algorithm="winograd", **kwargs)
            _check(got, x, w, b, kwargs, dtype)
    finally:
        _cpu.set_tile_shape(None)


@pytest.mark.parametrize("tile", sorted(winograd.VARIANTS))
def test_straight_line_formulas_are_the_variant_matrices(tile):
    """The kernels' transforms are formulas; the matrices (which the filter transform's reference,
    wincnn and the paper use) are their definition: apply each formula to unit vectors."""
    variant = winograd.VARIANTS[tile]
    formulas = {4: (winograd._f4_input, winograd._f4_filter, winograd._f4_output),
                2: (winograd._f2_input, winograd._f2_filter, winograd._f2_output)}[tile]
    for formula, matrix in zip(formulas, (variant.input_matrix, variant.filter_matrix,
                                          variant.output_matrix)):
        matrix = np.array(matrix, dtype=np.float64)
        columns = [np.array(formula(*np.eye(matrix.shape[1])[r])) for r in range(matrix.shape[1])]
        np.testing.assert_allclose(np.stack(columns, axis=1), matrix, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunking_over_tile_rows_gives_the_same_result(dtype, rng):
    x, w, b, kwargs = _problem(((3, 5, 23, 18), (7, 5, 3, 3), {"padding": 1}), dtype, rng)
    params, xc, wc, bc, _ = make_conv_params(x, w, b, **kwargs)
    # one tile row per chunk: every chunk boundary, including those between samples, is crossed
    assert winograd.rows_per_chunk(params, limit=1) == 1
    chunked = winograd.forward(xc, wc, bc, params, workspace_limit=1)
    whole = winograd.forward(xc, wc, bc, params)
    np.testing.assert_array_equal(chunked, whole)
    _check(chunked, x, w, b, kwargs, dtype)
    # a few tile rows per chunk: chunks that end inside a sample and inside a run of tiles
    limit = next(limit for limit in range(1 << 12, 1 << 24, 64)
                 if winograd.rows_per_chunk(params, limit=limit) == 3)
    input_size, product_size, _ = winograd._workspace_sizes(params, winograd.DEFAULT_TILE, 3)
    assert (input_size + product_size) * dtype().itemsize <= limit  # V and M keep to the cap
    np.testing.assert_array_equal(winograd.forward(xc, wc, bc, params, workspace_limit=limit), whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [512])
def test_error_bound_holds_for_long_reductions(channels, dtype, rng):
    """C = 512: the GEMM reduction is long; the bound is against max(|x| * |w|)."""
    for scale_channels in (False, True):
        x = rng.standard_normal((2, channels, 11, 13))
        if scale_channels:  # channels of very different magnitude
            x *= rng.uniform(0, 100, (1, channels, 1, 1))
        w = rng.standard_normal((4, channels, 3, 3))
        x, w = x.astype(dtype), w.astype(dtype)
        got = fastconv.conv2d(x, w, padding=1, algorithm="winograd")
        _check(got, x, w, None, {"padding": 1}, dtype)


def test_float32_stays_float32_and_is_less_exact_than_float64(rng):
    x = rng.standard_normal((1, 16, 12, 12))
    w = rng.standard_normal((8, 16, 3, 3))
    exact = naive.conv2d(x, w, padding=1)
    error32 = np.abs(fastconv.conv2d(x.astype(np.float32), w.astype(np.float32), padding=1,
                                     algorithm="winograd") - exact).max()
    error64 = np.abs(fastconv.conv2d(x, w, padding=1, algorithm="winograd") - exact).max()
    assert error64 < 1e-6 * error32  # a float64 transform constant in the float32 path would show here
    assert RELATIVE[("float32", "winograd")] > RELATIVE[("float32", "im2col")]


@pytest.mark.parametrize("kwargs,fragment", [
    ({"stride": 2}, "stride (2, 2)"),
    ({"dilation": 2}, "dilation (2, 2)"),
])
def test_supports_gives_the_reason(kwargs, fragment, rng):
    params, *_ = make_conv_params(rng.standard_normal((1, 2, 12, 12)),
                                  rng.standard_normal((2, 2, 3, 3)), **kwargs)
    reason = winograd.supports(params)
    assert reason.startswith("winograd needs 3x3 kernels, stride 1 and dilation 1") and fragment in reason


def test_supports_refuses_other_kernel_sizes_and_conv2d_says_why(rng):
    x = rng.standard_normal((1, 2, 12, 12))
    w = rng.standard_normal((2, 2, 5, 5))
    params, *_ = make_conv_params(x, w)
    assert "kernel 5x5" in winograd.supports(params)
    with pytest.raises(ValueError, match="winograd needs 3x3 kernels"):
        fastconv.conv2d(x, w, algorithm="winograd")
    assert winograd.supports(make_conv_params(x, w[:, :, :3, :3], groups=1, padding=7)[0]) is None


def test_nan_spreads_only_over_the_tiles_that_read_it(rng):
    """A tile's outputs all mix its whole alpha x alpha patch, so a NaN poisons exactly the outputs
    of the tiles whose patch holds it — a superset of direct's NaN set, confined to those tiles."""
    x = rng.standard_normal((1, 2, 20, 20))
    w = rng.standard_normal((3, 2, 3, 3))
    x[0, 1, 9, 10] = np.nan
    got = fastconv.conv2d(x, w, padding=1, algorithm="winograd")
    direct_nan = np.isnan(naive.conv2d(x, w, padding=1))
    tile, alpha = winograd.DEFAULT_TILE, winograd.DEFAULT_TILE + 2
    expected = np.zeros_like(direct_nan)
    for tile_row in range(5):
        for tile_col in range(5):
            top, left = tile_row * tile - 1, tile_col * tile - 1  # patch corner, padding 1
            if top <= 9 < top + alpha and left <= 10 < left + alpha:
                expected[:, :, tile_row * tile:(tile_row + 1) * tile,
                         tile_col * tile:(tile_col + 1) * tile] = True
    np.testing.assert_array_equal(np.isnan(got), expected)
    assert np.all(expected[direct_nan])
    np.testing.assert_allclose(got[~expected], naive.conv2d(np.nan_to_num(x), w, padding=1)[~expected],
                               rtol=1e-10, atol=1e-10)


def _decision(x, w, **kwargs):
    params, xc, wc, _, _ = make_conv_params(x, w, None, **kwargs)
    return dispatch.choose_forward(params, xc, wc, "auto")


def test_auto_never_picks_winograd_on_non_finite_data(rng, request):
    x = rng.standard_normal((8, 64, 28, 28)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    # make winograd the predicted winner regardless of this machine's calibration
    free = (0.0,) * len(dispatch.FEATURE_NAMES["winograd"])
    dispatch.set_cost_coefficients(dict(dispatch.MODEL.coefficients, winograd=free))
    request.addfinalizer(lambda: dispatch.set_cost_coefficients(None))
    assert _decision(x, w, padding=1).algorithm == "winograd"
    x[3, 7, 5, 5] = np.nan
    assert _decision(x, w, padding=1).algorithm != "winograd"
    x[3, 7, 5, 5] = 0
    w[1, 2, 0, 0] = -np.inf
    assert _decision(x, w, padding=1).algorithm != "winograd"


def test_cost_model_has_a_winograd_entry():
    params, *_ = make_conv_params(np.zeros((8, 64, 56, 56), np.float32),
                                  np.zeros((64, 64, 3, 3), np.float32), padding=1)
    features = dispatch.cost_features("winograd", params, threads=2)
    assert len(features) == len(dispatch.FEATURE_NAMES["winograd"])
    # 36 GEMM multiply-adds per 16 outputs against the direct definition's 144: a quarter, plus
    # the alignment tiles that round each chunk up to whole register tiles (5% with the ISA's
    # default tile; up to a quarter with a forced wider one, FASTCONV_TILE) and the zero channels
    # that round K up to the tile's channels (none with 8-channel tiles)
    filter_row = winograd._gemm_geometry(params, winograd.DEFAULT_TILE)[2]
    quarter = params.flops / 2 / 4
    alignment = 1.05 if _cpu.tile_shape() == _cpu.default_tile_shape() else 1.25
    assert quarter <= features[2] <= alignment * quarter * filter_row / 64
    transform_elements, flops, launches, filter_elements = winograd.work(params)
    assert features[1:] == (transform_elements / 2, flops / 2, launches, filter_elements / 2)
    assert filter_elements == 36 * 64 * filter_row  # alpha^2 per (output, input) channel pair
    chunks = -(-8 * 14 // winograd.rows_per_chunk(params))
    assert launches == 3 * chunks and chunks > 1  # 29 MB of V and M: cache-sized chunks
    assert dispatch.estimate_seconds("winograd", params) > 0
