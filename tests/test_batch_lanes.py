"""The direct backend's kernel with the samples in the vector lanes (fastconv.backends.
_direct_batch_lanes): every tile shape on any host against the naive twin, batches that do not
fill the last vector, padding beyond the kernel's reach, the transposition it rests on, and the
rule that sends LeNet's input gradient to it and LeNet's first layer elsewhere."""
import numpy as np
import pytest

from fastconv import _cpu
from fastconv._params import make_conv_params
from fastconv.backends import _direct_batch_lanes as batch_lanes
from fastconv.backends import direct
from fastconv.gradients import conv2d_backward
from tests import naive
from tests.tolerances import assert_gradient_matches, assert_matches

TILE_SHAPES = ["8x3x16", "6x2x32", "6x4x64", "4x3x32", "1x1x16", "5x2x64"]

CASES = [
    ((37, 16, 10, 10), (6, 16, 5, 5), (4, 4, 4, 4)),  # LeNet conv2's input gradient, a ragged batch
    ((20, 3, 9, 7), (5, 3, 3, 3), (1, 1, 1, 1)),
    ((33, 2, 6, 5), (7, 2, 3, 4), (0, 2, 3, 1)),  # uneven padding; 7 channels: a partial block
    ((17, 1, 4, 4), (2, 1, 5, 5), (6, 5, 6, 6)),  # padding past the kernel's reach: zero rows
    ((16, 4, 3, 8), (3, 4, 1, 1), (0, 0, 0, 0)),  # 1x1, unpadded
]


@pytest.fixture(params=TILE_SHAPES)
def tile(request):
    _cpu.set_tile_shape(request.param)
    yield _cpu.tile_shape()
    _cpu.set_tile_shape(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_tile_shape_matches_naive(tile, case, dtype, rng):
    x_shape, w_shape, pads = case
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    before = x.copy(), w.copy()
    padding = ((0, 0), (0, 0), pads[:2], pads[2:])
    exact = naive.conv2d(np.pad(x, padding), w, bias)
    magnitude = naive.conv2d(np.pad(np.abs(x), padding), np.abs(w), np.abs(bias))
    assert_matches(batch_lanes.correlate(x, w, bias, pads), exact, magnitude, dtype, "direct")
    assert_matches(batch_lanes.correlate(x, w, None, pads), exact - bias.reshape(1, -1, 1, 1),
                   magnitude, dtype, "direct")
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])


@pytest.mark.parametrize("vector_bytes", [16, 32, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, columns", [(37, 300), (64, 256), (5, 3), (256, 1600), (1, 40)])
def test_transpose_into_writes_the_transpose_and_nothing_else(vector_bytes, dtype, rows, columns):
    _cpu.set_tile_shape(f"4x2x{vector_bytes}")
    try:
        source = np.arange(rows * columns, dtype=dtype).reshape(rows, columns)
        target = np.full((columns, rows + 3), -1, dtype)  # wider than the transpose
        batch_lanes._transpose_into(source, target)
    finally:
        _cpu.set_tile_shape(None)
    np.testing.assert_array_equal(target[:, :rows], source.T)
    assert (target[:, rows:] == -1).all()


def _params(x_shape, w_shape, padding):
    x = np.zeros(x_shape, np.float32)
    w = np.zeros(w_shape, np.float32)
    return make_conv_params(x, w, None, 1, padding, 1, 1)[0]


def test_lenets_input_gradient_runs_with_samples_in_lanes_and_its_first_layer_does_not(monkeypatch):
    monkeypatch.delenv("FASTCONV_TILE", raising=False)  # the host's tile, whatever a sweep forces
    second = _params((256, 6, 14, 14), (16, 6, 5, 5), 0)
    assert batch_lanes.suits(direct.transposed_params(second))  # 10 x 10 padded by 4
    assert not batch_lanes.suits(second)  # 16 channels: the lane tile's
    assert not batch_lanes.suits(_params((256, 1, 28, 28), (6, 1, 5, 5), 2))
    assert not batch_lanes.suits(_params((2, 16, 10, 10), (6, 16, 5, 5), 4))  # under 2 vectors


def test_input_gradient_through_it_matches_naive(rng):
    x = rng.standard_normal((120, 6, 14, 14)).astype(np.float32)  # 8 samples short of 2 tiles
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    grad = rng.standard_normal((120, 16, 10, 10)).astype(np.float32)
    assert batch_lanes.suits(direct.transposed_params(_params(x.shape, w.shape, 0)))
    grad_input, _, _ = conv2d_backward(grad, x, w, needs=("input",), algorithm="direct")
    exact = naive.conv2d_backward(grad, x, w)[0]
    scale = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w))[0]
    assert_gradient_matches(grad_input, exact, scale, np.float32, "direct", what="grad_input")


@pytest.mark.parametrize("out_size, kernel, pad_before, in_size", [
    (14, 5, 4, 10), (28, 5, 2, 28), (10, 5, 6, 4), (3, 1, 0, 3), (9, 3, 0, 11)])
def test_valid_taps_counts_the_taps_inside_the_input(out_size, kernel, pad_before, in_size):
    """The work the rule prices: per position, the taps whose input index is inside the input
    (none where the window lies wholly in padding)."""
    brute = sum(0 <= position + tap - pad_before < in_size
                for position in range(out_size) for tap in range(kernel))
    assert batch_lanes._valid_taps(out_size, kernel, pad_before, in_size) == brute
