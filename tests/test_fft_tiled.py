"""The FFT backend's overlap-save path (fastconv/backends/_fft_tiled.py) against the naive twin.

Every case forces the tiled path through the public API (``fft.tiling`` is what ``forward`` asks),
with tile sizes from one output per tile (tile == dilated kernel) to tiles larger than the image,
tiles per task odd and even (the mixing pairs tiles, a lone tile takes the other branch), and
output-channel chunks that split groups; plus the planner's choice and the workspace cap.
"""
import numpy as np
import pytest

import fastconv
from fastconv.backends import _fft_tiled as tiled
from fastconv.backends import fft
from fastconv._params import make_conv_params, make_signal_params
from tests import naive
from tests.tolerances import assert_matches


@pytest.fixture
def force_tiles(monkeypatch):
    """force_tiles(tile_h, tile_w, tiles_per_task=None, out_chunk=None): every FFT call runs
    overlap-save with that tile (the planner picks what is not given)."""
    def force(tile_h, tile_w, tiles_per_task=None, out_chunk=None):
        def plan(params, threads=None, limit=None):
            return tiled.plan_tiles(params, tile_h, tile_w, fastconv.get_num_threads(),
                                    fastconv.get_workspace_limit(), tiles_per_task, out_chunk)
        monkeypatch.setattr(fft, "tiling", plan)
    return force


# (input shape, weight shape, conv2d kwargs, tile): awkward on purpose
CASES = [
    ((2, 3, 17, 19), (4, 3, 5, 5), {"padding": 2}, (8, 8)),  # many small tiles, batch 2
    ((1, 1, 20, 18), (2, 1, 15, 15), {}, (15, 15)),  # tile == kernel: one output per tile
    ((1, 1, 20, 18), (2, 1, 15, 15), {}, (16, 27)),  # non-square, odd width
    ((1, 2, 7, 9), (3, 2, 3, 3), {"padding": 1}, (64, 64)),  # image smaller than one tile
    ((1, 1, 40, 37), (1, 1, 7, 9), {"padding": (3, 1)}, (12, 18)),  # one channel
    ((1, 1, 5, 5), (1, 1, 7, 7), {"padding": 1}, (9, 9)),  # kernel larger than the image
    ((2, 8, 16, 16), (12, 2, 5, 5), {"groups": 4, "padding": 2}, (12, 12)),  # 3 outputs per group
    ((1, 8, 16, 16), (16, 4, 3, 3), {"groups": 2, "padding": 1}, (9, 9)),  # blocks of four
    ((1, 4, 16, 13), (12, 2, 3, 3), {"groups": 2}, (8, 8)),  # a block of four and two singles
    ((1, 6, 16, 16), (6, 1, 5, 5), {"groups": 6, "padding": 2}, (16, 16)),  # depthwise
    ((1, 2, 23, 21), (3, 2, 4, 4), {"stride": 2, "padding": 1}, (12, 10)),  # stride
    ((1, 2, 23, 21), (3, 2, 3, 3), {"stride": (3, 2), "dilation": (2, 3), "padding": 2}, (16, 18)),
    ((1, 2, 12, 12), (2, 2, 2, 2), {"stride": 4}, (8, 8)),  # stride > kernel
    ((3, 2, 30, 30), (5, 2, 7, 7), {"padding": "same"}, (16, 16)),  # batch 3
    ((1, 2, 15, 14), (3, 2, 4, 4), {"padding": "same"}, (10, 12)),  # extra bottom/right padding
    ((1, 2, 14, 14), (3, 2, 3, 3), {"padding": 2, "padding_mode": "reflect"}, (8, 8)),
]


def _id(case):
    shape, wshape, kwargs, tile = case
    extra = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"x{shape}-w{wshape}-tile{tile}" + (f"-{extra}" if extra else "")


def _check(x, w, b, kwargs, dtype):
    got = fastconv.conv2d(x, w, b, algorithm="fft", **kwargs)
    assert got.dtype == dtype and got.flags.c_contiguous
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kwargs)
    assert got.shape == exact.shape
    assert_matches(got, exact, magnitude, dtype, "fft")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_tiled_matches_naive(case, dtype, force_tiles, rng):
    shape, wshape, kwargs, tile = case
    force_tiles(*tile)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    _check(x, w, b, kwargs, dtype)


@pytest.mark.parametrize("tiles_per_task,out_chunk", [(1, None), (3, None), (2, 5), (5, 3), (4, 1)])
@pytest.mark.parametrize("groups", [1, 2])
def test_tiles_per_task_and_output_chunks(tiles_per_task, out_chunk, groups, force_tiles, rng):
    """Odd task sizes leave a lone tile; chunks of 5 or 3 of 12 output channels start inside a
    group and inside a block of four."""
    force_tiles(11, 13, tiles_per_task, out_chunk)
    x = rng.standard_normal((2, 4, 25, 23)).astype(np.float32)
    w = rng.standard_normal((12, 4 // groups, 5, 4)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    _check(x, w, b, {"padding": 2, "groups": groups}, np.float32)


@pytest.mark.parametrize("tile", [(8, 8), (24, 24), (40, 30)])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_signal_correlation_on_tiles(tile, dtype, force_tiles, rng):
    """scipy.signal's complex correlate2d / convolve2d (conjugated in2) run full complex
    transforms on the tiles."""
    force_tiles(*tile)
    in1 = (rng.standard_normal((37, 29)) + 1j * rng.standard_normal((37, 29))).astype(dtype)
    in2 = (rng.standard_normal((6, 7)) + 1j * rng.standard_normal((6, 7))).astype(dtype)
    component = np.float32 if dtype == np.complex64 else np.float64
    for function in ("correlate2d", "convolve2d"):
        for mode in ("full", "same", "valid"):
            got = getattr(fastconv, function)(in1, in2, mode, algorithm="fft")
            exact = getattr(naive, function)(in1, in2, mode)
            magnitude = np.abs(getattr(naive, function)(np.abs(in1), np.abs(in2), mode))
            assert got.dtype == dtype
            # complex: a few more roundings per multiply-add, 4x the component's bound
            bound = 4 * {np.float32: 2e-5, np.float64: 1e-12}[component] * magnitude.max()
            assert np.abs(got - exact).max() <= bound, (function, mode)


def test_tile_smaller_than_the_kernel_is_refused(rng):
    x = rng.standard_normal((1, 1, 20, 20))
    w = rng.standard_normal((1, 1, 9, 5))
    params = make_conv_params(x, w, None, 1, 0, 1, 1)[0]
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        fft.forward(x, w, None, params, tiling=(8, 8))
    np.testing.assert_allclose(fft.forward(x, w, None, params, tiling=(9, 8)),
                               naive.conv2d(x, w), rtol=1e-10, atol=1e-10)


def test_full_size_and_tiled_paths_agree(rng):
    x = rng.standard_normal((2, 3, 40, 44))
    w = rng.standard_normal((5, 3, 9, 7))
    params = make_conv_params(x, w, None, 1, 3, 1, 1)[0]
    full = fft.forward(x, w, None, params, tiling="full")
    for tile in ((9, 7), (16, 16), (27, 32), (64, 64)):
        np.testing.assert_allclose(fft.forward(x, w, None, params, tiling=tile), full,
                                   rtol=1e-10, atol=1e-10)


def _params(x_shape, w_shape, padding, dtype=np.float32):
    x = np.zeros(x_shape, dtype)
    w = np.zeros(w_shape, dtype)
    return make_conv_params(x, w, None, 1, padding, 1, 1)[0]


def test_planner_tiles_large_images_and_keeps_small_ones_whole():
    # issue 15's example: 8 -> 8 channels, 512x512, 13x13: tiles of a few kernel extents
    plan = fft.tiling(_params((1, 8, 512, 512), (8, 8, 13, 13), 6), threads=2)
    assert plan is not None
    assert 2 * 13 <= plan.tile_h <= 16 * 13 and 2 * 13 <= plan.tile_w <= 16 * 13
    assert plan.out_chunk == 8  # every output channel reuses each input tile's spectrum
    # an image about the kernel's size: one full-size transform per plane
    assert fft.tiling(_params((1, 1, 16, 16), (1, 1, 13, 13), 6), threads=2) is None
    # the signal API's single planes go through the same choice
    assert fft.tiling(make_signal_params((1024, 1024), (21, 21), (0, 0, 0, 0), np.float64),
                      threads=2) is not None


def test_planner_respects_the_workspace_cap(rng):
    """A cap below the kernel spectra of every output channel chunks the output channels (each
    chunk transforms the input tiles again); the call stays within the cap and correct."""
    x = rng.standard_normal((1, 8, 96, 96)).astype(np.float32)
    w = rng.standard_normal((16, 8, 9, 9)).astype(np.float32)
    params = make_conv_params(x, w, None, 1, 4, 1, 1)[0]
    previous = fastconv.get_workspace_limit()
    try:
        fastconv.set_workspace_limit(1 << 30)
        roomy = fft.tiling(params)
        fastconv.set_workspace_limit(512 << 10)
        tight = fft.tiling(params)
        assert fft.workspace_bytes(params) <= 512 << 10
        got = fastconv.conv2d(x, w, padding=4, algorithm="fft")
    finally:
        fastconv.set_workspace_limit(previous)
    assert roomy is not None and roomy.out_chunk == 16
    assert tight is None or tight.out_chunk < 16 or tight.tile_h * tight.tile_w < roomy.tile_h * roomy.tile_w
    exact = naive.conv2d(x, w, padding=4)
    assert_matches(got, exact, naive.conv2d(np.abs(x), np.abs(w), padding=4), np.float32, "fft")


def test_candidate_tiles_are_fast_lengths_from_the_kernel_up():
    params = _params((1, 1, 300, 100), (1, 1, 13, 5), 0)
    heights, widths = tiled.candidate_sizes(params, fft.transform_shape(params))
    assert heights[0] >= 14 and widths[0] >= 8
    assert heights[-1] == fft.transform_shape(params)[0] and widths[-1] == fft.transform_shape(params)[1]
    for size in heights[:-1] + widths[:-1]:
        while size % 2 == 0:
            size //= 2
        while size % 3 == 0:
            size //= 3
        assert size == 1


def test_cost_features_describe_the_path_taken():
    """The dispatcher's fft features: full-size MACs or tiled mixing, whichever path runs."""
    from fastconv import dispatch

    tiled_params = _params((1, 8, 512, 512), (8, 8, 13, 13), 6)
    small = _params((1, 1, 16, 16), (1, 1, 13, 13), 6)
    names = dispatch.FEATURE_NAMES["fft"]
    on_tiles = dict(zip(names, dispatch.cost_features("fft", tiled_params, 2)))
    whole = dict(zip(names, dispatch.cost_features("fft", small, 2)))
    assert on_tiles["tile_mix_flops"] > 0 and on_tiles["mac_flops"] == 0
    assert whole["tile_mix_flops"] == 0 and whole["mac_flops"] > 0
    # far fewer transform flops than 64 kernel transforms at the image size
    full = fft.cost_work(tiled_params, 2, path="full")
    assert on_tiles["transform_flops"] * 2 < full[0] / 2


# (input shape, weight shape, conv2d kwargs, tile): the input gradient runs on tiles at stride 1
# without dilation (a forward correlation of the padded grad_output with the flipped, transposed
# weights); the other cases keep the full-size backward, whatever the planner says
GRADIENT_CASES = [
    ((2, 3, 17, 19), (4, 3, 5, 5), {"padding": 2}, (8, 8)),
    ((1, 4, 16, 13), (6, 2, 3, 4), {"groups": 2, "padding": (1, 0)}, (8, 9)),
    ((1, 2, 20, 18), (3, 2, 7, 7), {}, (12, 12)),  # valid: grad_output padded by the kernel
    ((1, 2, 9, 9), (3, 2, 3, 3), {"padding": 3}, (8, 8)),  # padding past the kernel's reach
    ((1, 2, 23, 21), (3, 2, 4, 4), {"stride": 2, "padding": 1}, (12, 10)),
    ((1, 2, 23, 21), (3, 2, 3, 3), {"dilation": 2, "padding": 2}, (16, 16)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRADIENT_CASES, ids=_id)
def test_backward_with_tiled_input_gradient(case, dtype, force_tiles, rng):
    from tests.tolerances import assert_gradient_matches

    shape, wshape, kwargs, tile = case
    force_tiles(*tile)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    grad = rng.standard_normal(naive.conv2d(x, w, **kwargs).shape).astype(dtype)
    exact = naive.conv2d_backward(grad, x, w, **kwargs)
    magnitude = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w), **kwargs)
    both = fastconv.conv2d_backward(grad, x, w, algorithm="fft", **kwargs)
    alone = fastconv.conv2d_backward(grad, x, w, algorithm="fft", needs=("input",), **kwargs)
    for name, value, want, scale in zip(("input", "weight"), both, exact, magnitude):
        assert value.dtype == dtype and value.flags.c_contiguous
        assert_gradient_matches(value, want, scale, dtype, "fft", what=f"grad_{name}")
    np.testing.assert_array_equal(alone[0], both[0])


def test_input_gradient_runs_on_tiles_only_where_it_is_a_forward_correlation():
    plain = _params((1, 8, 512, 512), (8, 8, 13, 13), 6)
    transposed = fft.tiled_input_gradient_params(plain, threads=2)
    assert transposed is not None and transposed.in_channels == 8 and transposed.pad_top == 6
    strided = make_conv_params(np.zeros((1, 8, 512, 512), np.float32),
                               np.zeros((8, 8, 13, 13), np.float32), None, 2, 6, 1, 1)[0]
    assert fft.tiled_input_gradient_params(strided, threads=2) is None
